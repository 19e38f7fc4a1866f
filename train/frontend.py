"""The training front end: log-mel features in torch, the same numbers as `edge_ser.features`.

Every parameter comes from `edge_ser.contract`; a parity test holds this module and the numpy
runtime front end together.
"""

from __future__ import annotations

import torch
import torchaudio

from edge_ser.contract import (
    F_MAX_HZ,
    F_MIN_HZ,
    HOP_SAMPLES,
    LOG_FLOOR,
    N_FFT,
    N_MELS,
    SAMPLE_RATE_HZ,
    WINDOW_SAMPLES,
    num_frames,
)


class LogMel(torch.nn.Module):
    """Log-mel filterbank: periodic Hann, |rfft|^2, HTK mel (no normalisation), log(x + floor).

    Frame t covers samples [t * HOP_SAMPLES, t * HOP_SAMPLES + WINDOW_SAMPLES); there is no
    centering or padding, so a signal gives `contract.num_frames(num_samples)` frames.
    Window and filterbank are buffers, so `.to(device)` moves them with the module.
    """

    def __init__(self) -> None:
        super().__init__()
        self.melspec = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE_HZ,
            n_fft=N_FFT,
            win_length=WINDOW_SAMPLES,
            hop_length=HOP_SAMPLES,
            f_min=F_MIN_HZ,
            f_max=F_MAX_HZ,
            n_mels=N_MELS,
            window_fn=torch.hann_window,
            wkwargs={"periodic": True},
            center=False,
            power=2.0,
            mel_scale="htk",
            norm=None,
        )

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """waveform: (batch, samples) or (samples,) float32 at SAMPLE_RATE_HZ.

        Returns (batch, frames, N_MELS) or (frames, N_MELS) float32, time before mels.
        """
        if waveform.dim() not in (1, 2):
            raise ValueError(
                f"expected waveform of shape (samples,) or (batch, samples), "
                f"got {tuple(waveform.shape)}"
            )
        if waveform.dtype != torch.float32:
            raise TypeError(f"expected float32 samples, got {waveform.dtype}")
        if num_frames(waveform.shape[-1]) == 0:
            # torch.stft refuses input shorter than one window; the contract says zero frames.
            return waveform.new_zeros((*waveform.shape[:-1], 0, N_MELS))
        mel_power = self.melspec(waveform)  # (..., N_MELS, frames)
        return torch.log(mel_power + LOG_FLOOR).transpose(-1, -2)
