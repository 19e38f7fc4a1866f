"""The GE2E speaker encoder (Wan et al., 2018) as a feature stream, with resemblyzer's weights.

    40-band mel power (B, T, 40) -> LSTM 3 x 256 -> linear 256 -> ReLU -> L2 norm = d-vector

resemblyzer (Apache-2.0) ships the trained weights as `resemblyzer/pretrained.pt`; this module
rebuilds the network in torch and reads that file with `weights_only=True`, so nothing of the
package is imported. Its front end is librosa's mel power spectrogram (not log) over 40 Slaney
bands, 25 ms window, 10 ms hop at 16 kHz. Two ways to get it here:

- `GE2EMel`: from audio, with torchaudio (the same STFT as our log-mel: periodic Hann, n_fft 400,
  no centering, so frame t covers the same samples as our frame t).
- `MelRebin`: from our 64-band log-mel frames, by a fixed least-squares map between the two
  filterbanks. Training reads cached log-mel views, so this is what the model uses; it streams
  frame by frame with no second STFT.

The LSTM is causal: its output at frame t is the d-vector of the audio so far, and its state
(h, c) is all a stream has to carry.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
import torchaudio
from torch import nn
from torch.nn import functional as F

from edge_ser import contract

N_MELS = 40
HIDDEN = 256
LAYERS = 3
EMBEDDING_DIM = 256
WEIGHTS_FILE = "pretrained.pt"
WEIGHTS_SHA256 = "39373b86598fa3da9fcddee6142382efe09777e8d37dc9c0561f41f0070f134e"
"""sha256 of `pretrained.pt` in Resemblyzer 0.1.4, the file these layers were checked against."""
INSTALL_HINT = "pip install --no-deps resemblyzer==0.1.4"


def slaney_filterbank() -> torch.Tensor:
    """librosa's default mel filterbank at 16 kHz, n_fft 400: (201 bins, 40 bands)."""
    return torchaudio.functional.melscale_fbanks(
        contract.N_FFT // 2 + 1, 0.0, contract.SAMPLE_RATE_HZ / 2, N_MELS,
        contract.SAMPLE_RATE_HZ, norm="slaney", mel_scale="slaney")


def contract_filterbank() -> torch.Tensor:
    """Our log-mel filterbank (`edge_ser.contract`): (201 bins, 64 bands)."""
    return torchaudio.functional.melscale_fbanks(
        contract.N_FFT // 2 + 1, contract.F_MIN_HZ, contract.F_MAX_HZ, contract.N_MELS,
        contract.SAMPLE_RATE_HZ, norm=None, mel_scale="htk")


class GE2EMel(nn.Module):
    """waveform (B, samples) float32 at 16 kHz -> GE2E mel power (B, frames, 40)."""

    def __init__(self):
        super().__init__()
        self.spectrogram = torchaudio.transforms.Spectrogram(
            n_fft=contract.N_FFT, win_length=contract.WINDOW_SAMPLES,
            hop_length=contract.HOP_SAMPLES, window_fn=torch.hann_window,
            wkwargs={"periodic": True}, center=False, power=2.0)
        self.register_buffer("filterbank", slaney_filterbank(), persistent=False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        power = self.spectrogram(waveform)  # (B, 201, frames)
        return power.transpose(-1, -2) @ self.filterbank


class MelRebin(nn.Module):
    """Our log-mel (B, T, 64) -> GE2E mel power (B, T, 40), frame by frame.

    W (64, 40) minimises |F64 W - F40| over the FFT bins (F = filterbanks, bins x bands), so
    (power64 @ W) approximates the 40-band power of the same frame. The 7.6-8 kHz bins, which our
    filterbank leaves out, are lost; negative results of the fit are clipped to zero.
    """

    def __init__(self):
        super().__init__()
        ours, theirs = contract_filterbank().double(), slaney_filterbank().double()
        self.register_buffer("weights", (torch.linalg.pinv(ours) @ theirs).float(),
                             persistent=False)

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        power = (log_mel.exp() - contract.LOG_FLOOR).clamp_min(0.0)
        return (power @ self.weights).clamp_min(0.0)


class GE2ENetwork(nn.Module):
    """The speaker encoder; parameter names match resemblyzer's state dict."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(N_MELS, HIDDEN, LAYERS, batch_first=True)
        self.linear = nn.Linear(HIDDEN, EMBEDDING_DIM)
        self.out_dim = EMBEDDING_DIM

    def init_state(self, batch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """(h, c), each (layers, batch, hidden): the state before the first frame."""
        zeros = torch.zeros(LAYERS, batch, HIDDEN, device=self.linear.weight.device)
        return zeros, zeros.clone()

    def forward_frames(self, mel: torch.Tensor, state=None):
        """mel (B, T, 40) -> (running d-vectors (B, T, 256), unit norm, new state (h, c))."""
        out, state = self.lstm(mel, state)
        return F.normalize(F.relu(self.linear(out)), dim=-1, eps=1e-8), state

    def forward(self, mel: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """mel (B, T, 40), lengths (B,) valid frames -> utterance d-vectors (B, 256), unit norm:
        the d-vector at each clip's last valid frame (resemblyzer's forward, on one partial)."""
        frames, _ = self.forward_frames(mel)
        if lengths is None:
            return frames[:, -1]
        last = (lengths.clamp(1, mel.shape[1]) - 1).to(torch.long)
        return frames[torch.arange(len(frames)), last]


def packaged_weights_path() -> Path:
    """`pretrained.pt` inside the installed resemblyzer package (read as data, not imported)."""
    from importlib.util import find_spec

    # find_spec locates the package without running its __init__, which needs librosa.
    spec = find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "model.multigate.ge2e_weights=package: the resemblyzer package is not installed; "
            f"install it with `{INSTALL_HINT}` or set ge2e_weights to a copy of {WEIGHTS_FILE}")
    return Path(spec.submodule_search_locations[0]) / WEIGHTS_FILE


def load_pretrained(network: GE2ENetwork, source: str = "package") -> Path:
    """Load resemblyzer's weights into `network`; `source` is 'package' or a file path.
    Checks the file's sha256 and that every layer is present; returns the path read."""
    path = packaged_weights_path() if source == "package" else Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"model.multigate.ge2e_weights: {path} is not a file "
                                f"(expected resemblyzer's {WEIGHTS_FILE}; {INSTALL_HINT})")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != WEIGHTS_SHA256:
        raise ValueError(f"{path}: sha256 {digest[:12]}... is not that of Resemblyzer 0.1.4's "
                         f"{WEIGHTS_FILE} ({WEIGHTS_SHA256[:12]}...)")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    state = payload.get("model_state") if isinstance(payload, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: no 'model_state' mapping in the checkpoint")
    # similarity_weight/bias belong to GE2E's training loss, not to the encoder.
    wanted = {k: v for k, v in state.items() if k.split(".")[0] in ("lstm", "linear")}
    network.load_state_dict(wanted, strict=True)
    return path
