"""Feature streams and the branches that turn each into one vector per clip.

Every stream reads the same log-mel frames (B, T, 64) the rest of the product uses, so the cached
training views serve all of them and each frame is computed once:

    mfcc     DCT-II of the log-mel frames                                  (B, T, n_mfcc)
    prosody  log energy, its causal delta, a pitch proxy, a low-band share,
             the spectral centroid                                           (B, T, 5)

A branch is: per-feature batch norm -> causal conv -> ReLU -> GRU -> attention pooling over the
valid frames -> linear -> batch norm, giving (B, E). Everything before the pooling is causal, so a
branch streams with its conv cache and GRU state like the TCN encoder does.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from edge_ser import contract
from edge_ser_train.encoder import CausalConv1d

PROSODY_FEATURES = 5
PITCH_BAND_HZ = (60.0, 400.0)
"""Mel bands whose centres lie in this range feed the pitch proxy: in voiced speech the strongest
low band sits at or near the fundamental."""


def valid_mask(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """lengths (B,) -> (B, frames) bool, True on the valid (non-padding) frames."""
    return torch.arange(frames, device=lengths.device)[None, :] < lengths[:, None]


def dct_matrix(n_mels: int, n_coeffs: int) -> torch.Tensor:
    """Orthonormal DCT-II basis (n_mels, n_coeffs): mfcc = log_mel @ basis."""
    n = torch.arange(n_mels, dtype=torch.float64)
    k = torch.arange(n_coeffs, dtype=torch.float64)
    basis = torch.cos(math.pi / n_mels * (n[:, None] + 0.5) * k[None, :]) * math.sqrt(2 / n_mels)
    basis[:, 0] /= math.sqrt(2.0)
    return basis.float()


def mel_centres_hz(n_mels: int = contract.N_MELS) -> torch.Tensor:
    """Centre frequencies (n_mels,) of the contract's HTK mel bands, in Hz."""
    def mel(f):
        return 2595.0 * math.log10(1.0 + f / 700.0)

    points = torch.linspace(mel(contract.F_MIN_HZ), mel(contract.F_MAX_HZ), n_mels + 2)[1:-1]
    return 700.0 * (10.0 ** (points / 2595.0) - 1.0)


class MFCC(nn.Module):
    """log-mel (B, T, M) -> MFCC (B, T, n_coeffs): a fixed linear map per frame."""

    def __init__(self, n_mels: int, n_coeffs: int):
        super().__init__()
        self.register_buffer("basis", dct_matrix(n_mels, n_coeffs), persistent=False)
        self.out_dim = n_coeffs

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        return log_mel @ self.basis


class Prosody(nn.Module):
    """log-mel (B, T, M) -> (B, T, 5) contours from the log-mel alone (no second pass over audio):

    0 log energy (log of the summed mel power), 1 its change from the previous frame (0 at the
    first), 2 log of a pitch proxy in Hz (soft arg-max over the 60-400 Hz bands), 3 log share of
    the power below 400 Hz (high in voiced frames), 4 log of the power-weighted mean band centre
    in Hz (spectral centroid). Proxies, not a pitch tracker: see docs/multigate.md.
    """

    def __init__(self, n_mels: int = contract.N_MELS):
        super().__init__()
        centres = mel_centres_hz(n_mels)
        pitch = (centres >= PITCH_BAND_HZ[0]) & (centres <= PITCH_BAND_HZ[1])
        self.register_buffer("log_centres", centres.log(), persistent=False)
        self.register_buffer("pitch_bands", pitch, persistent=False)
        self.out_dim = PROSODY_FEATURES

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        energy = torch.logsumexp(log_mel, dim=-1)
        delta = torch.cat([torch.zeros_like(energy[:, :1]), energy[:, 1:] - energy[:, :-1]], 1)
        low = log_mel[..., self.pitch_bands]
        pitch = (low.softmax(-1) * self.log_centres[self.pitch_bands]).sum(-1)
        low_share = torch.logsumexp(low, dim=-1) - energy
        centroid = (log_mel.softmax(-1) * self.log_centres).sum(-1)
        return torch.stack([energy, delta, pitch, low_share, centroid], dim=-1)


class AttentionPool(nn.Module):
    """frames (B, T, C), valid (B, T) bool -> (B, C): a softmax-weighted mean over valid frames."""

    def __init__(self, channels: int, hidden: int = 64):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(channels, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, frames: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        scores = self.score(frames).squeeze(-1).masked_fill(~valid, float("-inf"))
        return (scores.softmax(dim=1).unsqueeze(-1) * frames).sum(dim=1)


class RecurrentBranch(nn.Module):
    """frame features (B, T, F) -> (B, E): BN -> causal conv (k=5) -> ReLU -> GRU -> pooling."""

    def __init__(self, in_dim: int, channels: int, out_dim: int, dropout: float):
        super().__init__()
        self.norm = nn.BatchNorm1d(in_dim)
        self.conv = CausalConv1d(in_dim, channels, 5)
        self.gru = nn.GRU(channels, channels, batch_first=True)
        self.pool = AttentionPool(channels)
        self.dropout = nn.Dropout(dropout)
        self.projection = nn.Sequential(nn.Linear(channels, out_dim), nn.BatchNorm1d(out_dim))

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv(self.norm(feats.transpose(1, 2))))
        frames, _ = self.gru(self.dropout(x.transpose(1, 2)))
        pooled = self.pool(frames, valid_mask(lengths.clamp_min(1), frames.shape[1]))
        return self.projection(pooled)


class PooledBranch(nn.Module):
    """Frames of an encoder that is already contextual (B, T, C) -> (B, E): pooling, projection."""

    def __init__(self, channels: int, out_dim: int):
        super().__init__()
        self.pool = AttentionPool(channels)
        self.projection = nn.Sequential(nn.Linear(channels, out_dim), nn.BatchNorm1d(out_dim))

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.projection(self.pool(frames, valid_mask(lengths.clamp_min(1),
                                                            frames.shape[1])))
