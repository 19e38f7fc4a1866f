"""The emotion model: a streamable frame encoder, window pooling, an embedding and a classifier.

    log-mel (B, T, 64) -> encoder -> frames (B, T, C) -> masked mean+std pooling (B, 2C)
        -> projection (B, E) = the embedding -> classifier logits (B, K)

The pooling is over whatever frames a window holds, so the runtime can pool a sliding window of
encoder outputs with running sums. The L2-normalised embedding is what the memory bank scores.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from edge_ser_train.config import ModelConfig
from edge_ser_train.encoder import GRUEncoder, TCNEncoder
from edge_ser_train.multigate.model import MultiGateModel


def build_encoder(cfg: ModelConfig, n_mels: int) -> nn.Module:
    if cfg.arch == "tcn":
        return TCNEncoder(n_mels, cfg.channels, cfg.kernel, cfg.dilations, cfg.dropout,
                          cfg.stride, round(cfg.norm_window_s * 100))
    return GRUEncoder(n_mels, cfg.channels, cfg.gru_layers, cfg.dropout)


def masked_stats_pool(frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """frames (B, T, C), lengths (B,) valid frames per row -> (B, 2C) mean and std."""
    mask = (torch.arange(frames.shape[1], device=frames.device)[None, :] < lengths[:, None])
    mask = mask.unsqueeze(-1).to(frames.dtype)
    count = mask.sum(dim=1).clamp_min(1.0)
    mean = (frames * mask).sum(dim=1) / count
    var = ((frames * frames) * mask).sum(dim=1) / count - mean * mean
    return torch.cat([mean, var.clamp_min(1e-6).sqrt()], dim=1)


class EmotionModel(nn.Module):
    def __init__(self, cfg: ModelConfig, n_mels: int, n_classes: int):
        super().__init__()
        self.encoder = build_encoder(cfg, n_mels)
        self.projection = nn.Sequential(
            nn.Linear(2 * self.encoder.out_dim, cfg.embedding_dim),
            nn.BatchNorm1d(cfg.embedding_dim))
        self.dropout = nn.Dropout(cfg.dropout)
        self.classifier = nn.Linear(cfg.embedding_dim, n_classes)

    def embed(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """feats (B, T, mels), lengths (B,) valid frames -> embedding (B, E), not normalised."""
        frames = self.encoder(feats)
        valid = torch.div(lengths, self.encoder.stride, rounding_mode="floor").clamp_min(1)
        return self.projection(masked_stats_pool(frames, valid))

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor, languages=None):
        """Returns (logits (B, K), embedding (B, E)); one head serves every language, so
        `languages` (per clip, as the multigate family takes them) is not used."""
        emb = self.embed(feats, lengths)
        return self.classifier(self.dropout(F.relu(emb))), emb

    def head(self, pooled: torch.Tensor):
        """pooled (B, 2C) -> (logits, embedding): the part after pooling, for the runtime."""
        emb = self.projection(pooled)
        return self.classifier(F.relu(emb)), emb


def build_model(cfg: ModelConfig, n_mels: int, n_classes: int, languages: tuple[str, ...] = (),
                pretrained: bool = False) -> nn.Module:
    """The model of `cfg.family`; `languages` (multigate) get their own gates and heads, and
    `pretrained` loads the multigate model's pretrained streams (not when restoring a checkpoint).
    """
    if cfg.family == "tcn":
        return EmotionModel(cfg, n_mels, n_classes)
    model = MultiGateModel(cfg, n_mels, n_classes, languages)
    if pretrained:
        model.load_pretrained(cfg.multigate.ge2e_weights)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
