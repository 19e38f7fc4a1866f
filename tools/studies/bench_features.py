"""Time the runtime log-mel front end: cost per call as a stream computes a segment's frames
(1 and 100 frames at a time) and the offline real-time factor.

Compares the runtime's two kernels (`features.kernels`: numba framing + numba power/mel/log,
or plain numpy with a fixed-order mel sum; numpy FFT in both) with a third numpy variant:

- numpy-dense:  strided view * window, rfft, power, BLAS matmul with the dense filterbank, log.
                Fast, but a BLAS matmul may round a row differently depending on how many rows
                it gets, so frames computed in pieces are not guaranteed to equal the offline
                output.

    python -m tools.studies.bench_features [--repeats 7]

Prints medians over repeats, all in one process.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

from edge_ser import features
from edge_ser import mel_numba as numba_kernels
from edge_ser import mel_numpy as numpy_kernels
from edge_ser.contract import (
    HOP_SAMPLES,
    LOG_FLOOR,
    N_FFT,
    N_MELS,
    SAMPLE_RATE_HZ,
    WINDOW_SAMPLES,
    num_frames,
)

FramesFn = Callable[[np.ndarray, int], np.ndarray]
"""(contiguous float32 samples, n_frames) -> (n_frames, N_MELS) float32."""


def _numpy_windowed_frames(samples: np.ndarray, n_frames: int) -> np.ndarray:
    step = samples.strides[0]
    view = np.lib.stride_tricks.as_strided(
        samples, (n_frames, WINDOW_SAMPLES), (HOP_SAMPLES * step, step), writeable=False
    )
    return view * features._WINDOW  # (n_frames, WINDOW_SAMPLES) float64


def _power(samples: np.ndarray, n_frames: int) -> np.ndarray:
    spectra = np.fft.rfft(_numpy_windowed_frames(samples, n_frames), n=N_FFT, axis=-1)
    return spectra.real**2 + spectra.imag**2  # (n_frames, N_FREQS)


def numpy_dense(samples: np.ndarray, n_frames: int) -> np.ndarray:
    mel = _power(samples, n_frames) @ features._FILTERBANK
    return np.log(mel + LOG_FLOOR).astype(np.float32)


def median_call_s(fn: Callable[[], object], calls: int, repeats: int) -> float:
    """Median over repeats of the mean time of `calls` back-to-back calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - start) / calls)
    return statistics.median(times)


def bench_pieces(frames_fn: FramesFn, frames_per_call: int, signal: np.ndarray,
                 repeats: int) -> float:
    """Seconds per call computing the next `frames_per_call` frames of `signal` from only their
    samples, in order: what `features.frames_of` does as a stream's segment grows."""
    span = features.sample_span(0, frames_per_call)[1]
    starts = range(0, signal.size - span, frames_per_call * HOP_SAMPLES)
    pieces = [np.ascontiguousarray(signal[i : i + span]) for i in starts]
    position = [0]

    def one() -> None:
        frames_fn(pieces[position[0] % len(pieces)], frames_per_call)
        position[0] += 1

    one()  # warm up (numba loads its compiled kernels at import; FFT plans are cached)
    calls = max(1, 20 // frames_per_call)  # at least 0.2 s of audio per repeat
    return median_call_s(one, calls, repeats)


VARIANTS: dict[str, FramesFn] = {
    "numba": numba_kernels.log_mel_frames,
    "numpy (runtime)": numpy_kernels.log_mel_frames,
    "numpy-dense": numpy_dense,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="repeats per measurement")
    parser.add_argument("--offline-s", type=float, default=60.0, help="offline signal length")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    signal = (0.1 * rng.standard_normal(int(args.offline_s * SAMPLE_RATE_HZ))).astype(np.float32)
    reference = features.log_mel(signal)

    print(f"{'variant':<14}{'1 frame':>14}{'100 frames':>14}{'offline RTF':>14}  max|diff|")
    for name, frames_fn in VARIANTS.items():
        per_10ms = bench_pieces(frames_fn, 1, signal, args.repeats)
        per_1s = bench_pieces(frames_fn, 100, signal, args.repeats)
        n_frames = num_frames(signal.size)
        offline_s = median_call_s(lambda f=frames_fn, n=n_frames: f(signal, n), 1, args.repeats)
        diff = float(np.abs(frames_fn(signal, n_frames) - reference).max())
        print(
            f"{name:<14}{per_10ms * 1e6:>11.1f} us{per_1s * 1e3:>11.2f} ms"
            f"{offline_s / args.offline_s:>14.2e}  {diff:.1e}"
        )

    print(f"\n{'stage (us per call)':<30}{'1 frame':>10}{'100 frames':>12}")
    for stage, fns in stage_variants().items():
        for name, fn in fns.items():
            cost = [
                median_call_s(lambda f=fn, n=n: f(signal, n), 20, args.repeats) for n in (1, 100)
            ]
            print(f"{stage + ' ' + name:<30}{cost[0] * 1e6:>10.1f}{cost[1] * 1e6:>12.1f}")
    return 0


def stage_variants() -> dict[str, dict[str, FramesFn]]:
    """The two stages numba could take over (the FFT between them is numpy's in every variant)."""

    def frame_numba(samples: np.ndarray, n_frames: int) -> np.ndarray:
        frames = np.empty((n_frames, WINDOW_SAMPLES))
        numba_kernels._frame_and_window(samples, HOP_SAMPLES, features._WINDOW, frames)
        return frames

    spectra = {}

    def spectrum(samples: np.ndarray, n_frames: int) -> np.ndarray:
        if n_frames not in spectra:
            frames = _numpy_windowed_frames(samples, n_frames)
            spectra[n_frames] = np.fft.rfft(frames, n=N_FFT, axis=-1)
        return spectra[n_frames]

    def mel_numba(samples: np.ndarray, n_frames: int) -> np.ndarray:
        out = np.empty((n_frames, N_MELS), dtype=np.float32)
        numba_kernels._power_mel_log(
            spectrum(samples, n_frames),
            features._FILTERS_BY_MEL,
            features._FILTER_FIRST_BIN,
            features._FILTER_STOP_BIN,
            LOG_FLOOR,
            out,
        )
        return out

    def mel_numpy_dense(samples: np.ndarray, n_frames: int) -> np.ndarray:
        spec = spectrum(samples, n_frames)
        mel = (spec.real**2 + spec.imag**2) @ features._FILTERBANK
        return np.log(mel + LOG_FLOOR).astype(np.float32)

    def fft(samples: np.ndarray, n_frames: int) -> np.ndarray:
        return np.fft.rfft(frame_numba(samples, n_frames), n=N_FFT, axis=-1)

    return {
        "frame+window": {"numba": frame_numba, "numpy": _numpy_windowed_frames},
        "rfft": {"numpy": fft},
        "power+mel+log": {"numba": mel_numba, "numpy-dense": mel_numpy_dense},
    }


if __name__ == "__main__":
    sys.exit(main())
