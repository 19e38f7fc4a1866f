"""A plain-numpy log-mel front end with the same numbers as `edge_ser.features`' numba kernels,
to show what numba buys.

Framing is a strided view times the window; the mel sum runs over each filter's bins in a fixed
order (a BLAS matmul could round a row differently with the number of rows, breaking chunking
invariance). Same FFT (numpy) as the shipped path.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from edge_ser import features
from edge_ser.contract import HOP_SAMPLES, LOG_FLOOR, N_FFT, N_MELS, WINDOW_SAMPLES


def _padded_supports() -> tuple[np.ndarray, np.ndarray]:
    """(J, N_MELS) bin indices and weights: J = widest filter, shorter filters padded with 0."""
    first, stop = features._FILTER_FIRST_BIN, features._FILTER_STOP_BIN
    width = int((stop - first).max())
    bins = np.zeros((width, N_MELS), dtype=np.intp)
    weights = np.zeros((width, N_MELS))
    for m in range(N_MELS):
        span = np.arange(first[m], stop[m])
        bins[: span.size, m] = span
        weights[: span.size, m] = features._FILTERBANK[span, m]
    return bins, weights


_BINS, _WEIGHTS = _padded_supports()


def log_mel_frames_numpy(samples: np.ndarray, n_frames: int) -> np.ndarray:
    """The first `n_frames` frames of contiguous float32 `samples`: (n_frames, N_MELS) float32."""
    if n_frames == 0:
        return np.zeros((0, N_MELS), dtype=np.float32)
    step = samples.strides[0]
    view = np.lib.stride_tricks.as_strided(
        samples, (n_frames, WINDOW_SAMPLES), (HOP_SAMPLES * step, step), writeable=False)
    spectra = np.fft.rfft(view * features._WINDOW, n=N_FFT, axis=-1)
    power = spectra.real ** 2 + spectra.imag ** 2
    gathered = power[:, _BINS] * _WEIGHTS  # (n_frames, J, N_MELS)
    mel = gathered[:, 0].copy()
    for j in range(1, _BINS.shape[0]):  # fixed order
        mel += gathered[:, j]
    return np.log(mel + LOG_FLOOR).astype(np.float32)


@contextmanager
def numpy_features():
    """Run the streaming front end on the numpy kernels inside the `with` block."""
    shipped = features._log_mel_frames
    features._log_mel_frames = log_mel_frames_numpy
    try:
        yield
    finally:
        features._log_mel_frames = shipped
