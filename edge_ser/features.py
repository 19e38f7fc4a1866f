"""Log-mel features for the runtime: offline and frame by frame on demand, no torch.

The definition is the one the training front end (`train.frontend.LogMel`, torchaudio) uses:

    frame t        = samples[t * HOP_SAMPLES : t * HOP_SAMPLES + WINDOW_SAMPLES]   (no padding)
    spectrum       = |rfft(frame * periodic_hann(WINDOW_SAMPLES), n=N_FFT)| ** 2      (201 bins)
    log_mel[t, m]  = log(sum_b spectrum[b] * filterbank[b, m] + LOG_FLOOR)            (HTK mel)

Shapes: samples (num_samples,) float32 -> features (num_frames(num_samples), N_MELS) float32.

Precision: every frame is computed in float64 (window, FFT, power, mel sum, log) and rounded to
float32 once at the end, so the numbers here are the float32 rounding of the exact definition;
the parity test against torchaudio then only measures torchaudio's own float32 rounding.

Random access: `log_mel(x)` and `frames_of` over any span of frames of `x` run the same
per-frame code, and each frame's result depends only on that frame's samples: the FFT
transforms each row on its own, and the mel sum adds each filter's bins in ascending order
(a BLAS matmul is not used because its result for a row can change with the number of rows).
So frames computed in any pieces (as a stream computes a segment's) equal the offline output
bit for bit.

Kernels: this module holds the definition; the per-frame work runs in one of two
implementations, chosen by name (`KERNELS`) and imported only when first chosen:

    "numba"  `edge_ser.mel_numba`: compiled loops, the fastest; importing numba and loading the
             compiled kernels adds about 120 MiB of resident memory (docs/benchmarks.md).
    "numpy"  `edge_ser.mel_numpy`: plain numpy, 0.2-0.3 ms more CPU per second of audio and
             numba never imported.

Both do the same float64 operations in the same order with the same numpy FFT, so they give
the same float32 numbers bit for bit, and a stream may use either.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from edge_ser.contract import (
    F_MAX_HZ,
    F_MIN_HZ,
    HOP_SAMPLES,
    N_FFT,
    N_MELS,
    SAMPLE_RATE_HZ,
    WINDOW_SAMPLES,
    num_frames,
)

N_FREQS = N_FFT // 2 + 1
"""One-sided FFT bins (201): 0 Hz to SAMPLE_RATE_HZ / 2 in steps of SAMPLE_RATE_HZ / N_FFT."""

_BLOCK_FRAMES = 128
"""Frames transformed per block. Each frame's intermediates take about 15 KB (float64 frame,
spectrum, weighted bins), so a block of 128 stays in cache: 1024-frame blocks are 3-4x slower
per frame on both kernels (measured on 10 s of audio) and hold 15 MB at once."""

KERNELS = ("numba", "numpy")
"""The implementations of the per-frame work, by name; see the module docstring."""


def _hz_to_mel(freq_hz: float) -> float:
    """HTK mel scale."""
    return 2595.0 * math.log10(1.0 + freq_hz / 700.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    """Inverse of the HTK mel scale."""
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def _filterbank_f64() -> np.ndarray:
    """Triangular HTK filters, no normalisation, as torchaudio's `melscale_fbanks` builds them.

    Returns (N_FREQS, N_MELS) float64: column m rises linearly from 0 at edge m to 1 at edge m+1
    and falls back to 0 at edge m+2, where the N_MELS + 2 edges are equally spaced in mel
    between F_MIN_HZ and F_MAX_HZ and evaluated on the linear grid of FFT bin frequencies.
    """
    bin_freqs_hz = np.linspace(0.0, SAMPLE_RATE_HZ // 2, N_FREQS)
    edge_mels = np.linspace(_hz_to_mel(F_MIN_HZ), _hz_to_mel(F_MAX_HZ), N_MELS + 2)
    edges_hz = _mel_to_hz(edge_mels)
    edge_gaps_hz = np.diff(edges_hz)  # (N_MELS + 1,)
    slopes = edges_hz[np.newaxis, :] - bin_freqs_hz[:, np.newaxis]  # (N_FREQS, N_MELS + 2)
    rising = -slopes[:, :-2] / edge_gaps_hz[:-1]
    falling = slopes[:, 2:] / edge_gaps_hz[1:]
    return np.maximum(0.0, np.minimum(rising, falling))


def _periodic_hann() -> np.ndarray:
    """(WINDOW_SAMPLES,) float64, equal to torch.hann_window(WINDOW_SAMPLES, periodic=True)."""
    n = np.arange(WINDOW_SAMPLES, dtype=np.float64)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * n / WINDOW_SAMPLES)


def _filter_supports(filterbank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and one-past-last nonzero bin of every filter: the bins its mel sum visits."""
    nonzero = filterbank > 0.0
    if not nonzero.any(axis=0).all():
        empty = np.flatnonzero(~nonzero.any(axis=0)).tolist()
        raise ValueError(f"mel filters {empty} cover no FFT bin; check N_MELS and N_FFT")
    first = nonzero.argmax(axis=0)
    stop = N_FREQS - nonzero[::-1].argmax(axis=0)
    return first.astype(np.int64), stop.astype(np.int64)


# Computed once at import; the kernel modules read them and nothing writes them.
_WINDOW = _periodic_hann()
_FILTERBANK = _filterbank_f64()
_FILTERS_BY_MEL = np.ascontiguousarray(_FILTERBANK.T)  # (N_MELS, N_FREQS): rows contiguous
_FILTER_FIRST_BIN, _FILTER_STOP_BIN = _filter_supports(_FILTERBANK)
_WINDOW.setflags(write=False)
_FILTERBANK.setflags(write=False)
_FILTERS_BY_MEL.setflags(write=False)
_FILTER_FIRST_BIN.setflags(write=False)
_FILTER_STOP_BIN.setflags(write=False)


def mel_filterbank() -> np.ndarray:
    """The mel filterbank, (N_FREQS, N_MELS) = (201, 64) float32 (a fresh copy).

    Matches torchaudio.functional.melscale_fbanks(n_freqs=201, f_min=20, f_max=7600, n_mels=64,
    sample_rate=16000, norm=None, mel_scale="htk"); computed here in float64.
    """
    return _FILTERBANK.astype(np.float32)


FramesFunction = Callable[[np.ndarray, int], np.ndarray]
"""(contiguous float32 samples, n_frames) -> the first n_frames frames, (n_frames, N_MELS)
float32, frame 0 at sample 0: what each kernel module provides as `log_mel_frames`."""


def _frames_function(kernels: str) -> FramesFunction:
    """The `log_mel_frames` of the named kernels, importing their module on first use so that
    choosing "numpy" never loads numba."""
    if kernels not in KERNELS:
        raise ValueError(f"unknown feature kernels {kernels!r}; choose one of "
                         f"{', '.join(KERNELS)}")
    return importlib.import_module(f"edge_ser.mel_{kernels}").log_mel_frames


def _as_mono_float32(samples: np.ndarray) -> np.ndarray:
    """A contiguous float32 view or copy of 1-D `samples`; ValueError for any other shape."""
    array = np.ascontiguousarray(samples, dtype=np.float32)
    if array.ndim != 1:
        raise ValueError(
            f"expected mono samples of shape (num_samples,), got shape {array.shape}; "
            "mix or pick a channel first"
        )
    return array


def log_mel(samples: np.ndarray, kernels: str = "numba") -> np.ndarray:
    """Offline log-mel features of a whole signal.

    samples: (num_samples,) mono float32 at SAMPLE_RATE_HZ (other float dtypes are cast).
    kernels: one of KERNELS; the result is the same for each.
    Returns (num_frames(num_samples), N_MELS) float32; trailing samples that do not fill a
    window are ignored, as the streaming path keeps them waiting for more input.
    """
    log_mel_frames = _frames_function(kernels)
    array = _as_mono_float32(samples)
    return log_mel_frames(array, num_frames(array.size))


@dataclass
class FeatureState:
    """The kernels that compute one audio source's frames (see `frames_of`)."""

    kernels: str = "numba"
    """One of KERNELS."""
    frames: FramesFunction = field(init=False, repr=False)
    """The kernels' `log_mel_frames`, resolved once here rather than on every call."""

    def __post_init__(self) -> None:
        self.frames = _frames_function(self.kernels)  # ValueError for an unknown name


def init_state(kernels: str = "numba") -> FeatureState:
    """A fresh state for a new audio source whose frames the named kernels compute.

    The kernels are loaded here (ValueError for a name not in KERNELS), so the first audio
    chunk does not pay for it.
    """
    return FeatureState(kernels=kernels)


def sample_span(first: int, end: int) -> tuple[int, int]:
    """The samples [start, stop) that feature frames [first, end) read (first < end)."""
    return first * HOP_SAMPLES, (end - 1) * HOP_SAMPLES + WINDOW_SAMPLES


def frames_of(state: FeatureState, samples: np.ndarray, count: int) -> np.ndarray:
    """`count` consecutive frames computed by `state.kernels` from `samples`, which start at the
    first frame's first sample and hold at least `sample_span(0, count)[1]` samples.

    Random access for a stream that keeps its samples (`edge_ser.stream`): frame t of a signal
    depends only on its own samples, so these are rows of `log_mel` of the whole signal, bit for
    bit. Returns (count, N_MELS) float32.
    """
    if count <= 0:
        return np.zeros((0, N_MELS), dtype=np.float32)
    return state.frames(_as_mono_float32(samples), count)
