"""The plain-numpy kernels of the log-mel front end (`features.kernels: numpy`).

The same numbers as `edge_ser.mel_numba` bit for bit, without numba in the process: about
120 MiB less resident memory for 0.2-0.3 ms more CPU per second of audio. Framing is a
strided view times the window, in float64; the FFT is numpy's, as there; the mel sum adds each
filter's bins in ascending order, one bin position at a time, as the numba loop does (a BLAS
matmul could round a row differently with the number of rows, breaking chunking invariance).
"""

from __future__ import annotations

import numpy as np

from edge_ser import features
from edge_ser.contract import HOP_SAMPLES, LOG_FLOOR, N_FFT, N_MELS, WINDOW_SAMPLES


def _padded_supports() -> tuple[np.ndarray, np.ndarray]:
    """(J, N_MELS) bin indices and weights, J the widest filter's bin count: row j holds bin
    first_bin[m] + j of every filter m, and bin 0 with weight 0 where filter m is narrower.

    Adding a zero-weight product leaves a sum unchanged, so summing rows 0..J-1 in order gives
    each filter's sum in the numba kernel's order.
    """
    first, stop = features._FILTER_FIRST_BIN, features._FILTER_STOP_BIN
    width = int((stop - first).max())
    bins = np.zeros((width, N_MELS), dtype=np.intp)
    weights = np.zeros((width, N_MELS))
    for m in range(N_MELS):
        span = np.arange(first[m], stop[m])
        bins[: span.size, m] = span
        weights[: span.size, m] = features._FILTERBANK[span, m]
    bins.setflags(write=False)
    weights.setflags(write=False)
    return bins, weights


_BINS, _WEIGHTS = _padded_supports()


def _block(samples: np.ndarray, count: int, out: np.ndarray) -> None:
    """out[:] = the first `count` (>= 1) frames of contiguous float32 `samples`."""
    needed = (count - 1) * HOP_SAMPLES + WINDOW_SAMPLES
    if samples.size < needed:  # as_strided would read past the end
        raise ValueError(f"{count} frames need {needed} samples, got {samples.size}")
    step = samples.strides[0]
    frames = np.lib.stride_tricks.as_strided(
        samples, (count, WINDOW_SAMPLES), (HOP_SAMPLES * step, step), writeable=False)
    spectra = np.fft.rfft(frames * features._WINDOW, n=N_FFT, axis=-1)
    # Bins as rows and frames contiguous, so each step of the sum below adds one contiguous
    # (N_MELS, count) slice: fast for one frame and for a full block alike.
    power_by_bin = np.ascontiguousarray((spectra.real**2 + spectra.imag**2).T)
    weighted = power_by_bin[_BINS]  # (J, N_MELS, count)
    weighted *= _WEIGHTS[:, :, np.newaxis]
    mel = weighted[0]
    for row in weighted[1:]:
        mel += row
    out[:] = np.log(mel + LOG_FLOOR).T  # rounded to float32 once, here


def log_mel_frames(samples: np.ndarray, n_frames: int) -> np.ndarray:
    """The first `n_frames` frames of `samples` (contiguous float32, frame 0 at sample 0).

    Returns (n_frames, N_MELS) float32, computed `features._BLOCK_FRAMES` frames at a time.
    """
    out = np.empty((n_frames, N_MELS), dtype=np.float32)
    for first in range(0, n_frames, features._BLOCK_FRAMES):
        count = min(features._BLOCK_FRAMES, n_frames - first)
        _block(samples[first * HOP_SAMPLES :], count, out[first : first + count])
    return out
