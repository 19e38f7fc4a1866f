"""The numba kernels of the log-mel front end (`features.kernels: numba`, the default).

Compiled loops for the two stages numpy does slowly on short chunks: framing with the window,
and power + fixed-order mel sum + log. The FFT between them is numpy's. The definition and the
constants are `edge_ser.features`'; `features` imports this module only when these kernels are
chosen, because importing numba and loading the compiled kernels costs about 150 MiB of
resident memory.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import types

from edge_ser import features
from edge_ser.contract import HOP_SAMPLES, LOG_FLOOR, N_FFT, N_MELS, WINDOW_SAMPLES

# The kernels take every number as an argument: values baked in at compile time would outlive
# a change to the contract in numba's on-disk cache, which only watches this file. Inputs are
# typed read-only (writable arrays convert), so read-only caller buffers and the frozen
# constants of `features` are accepted; the signatures compile (or load from the cache) at
# import, not on the first audio chunk.


def _array(dtype: types.Type, ndim: int, readonly: bool = False) -> types.Array:
    return types.Array(dtype, ndim, "C", readonly=readonly)


@numba.njit(
    types.void(
        _array(types.float32, 1, readonly=True),
        types.int64,
        _array(types.float64, 1, readonly=True),
        _array(types.float64, 2),
    ),
    cache=True,
    nogil=True,
)
def _frame_and_window(samples, hop_samples, window, frames):
    """frames[t] = samples[t * hop : t * hop + window.size] * window, in float64."""
    for t in range(frames.shape[0]):
        start = t * hop_samples
        for i in range(window.size):
            frames[t, i] = samples[start + i] * window[i]


@numba.njit(
    types.void(
        _array(types.complex128, 2, readonly=True),
        _array(types.float64, 2, readonly=True),
        _array(types.int64, 1, readonly=True),
        _array(types.int64, 1, readonly=True),
        types.float64,
        _array(types.float32, 2),
    ),
    cache=True,
    nogil=True,
)
def _power_mel_log(spectra, filters, first_bin, stop_bin, log_floor, out):
    """out[t, m] = log(sum_b |spectra[t, b]|^2 * filters[m, b] + log_floor) over the bins
    first_bin[m] <= b < stop_bin[m] in ascending order, so a row never depends on other rows."""
    power = np.empty(spectra.shape[1])
    for t in range(spectra.shape[0]):
        for b in range(spectra.shape[1]):
            re = spectra[t, b].real
            im = spectra[t, b].imag
            power[b] = re * re + im * im
        for m in range(filters.shape[0]):
            acc = 0.0
            for b in range(first_bin[m], stop_bin[m]):
                acc += power[b] * filters[m, b]
            out[t, m] = math.log(acc + log_floor)


def log_mel_frames(samples: np.ndarray, n_frames: int) -> np.ndarray:
    """The first `n_frames` frames of `samples` (contiguous float32, frame 0 at sample 0).

    Returns (n_frames, N_MELS) float32, computed `features._BLOCK_FRAMES` frames at a time.
    """
    out = np.empty((n_frames, N_MELS), dtype=np.float32)
    for first in range(0, n_frames, features._BLOCK_FRAMES):
        count = min(features._BLOCK_FRAMES, n_frames - first)
        frames = np.empty((count, WINDOW_SAMPLES), dtype=np.float64)
        # Frame `first` starts at sample first * HOP_SAMPLES; the kernel reads count frames on.
        _frame_and_window(samples[first * HOP_SAMPLES :], HOP_SAMPLES, features._WINDOW, frames)
        spectra = np.fft.rfft(frames, n=N_FFT, axis=-1)  # (count, N_FREQS) complex128
        _power_mel_log(
            spectra,
            features._FILTERS_BY_MEL,
            features._FILTER_FIRST_BIN,
            features._FILTER_STOP_BIN,
            LOG_FLOOR,
            out[first : first + count],
        )
    return out
