"""The peers the streaming pipeline is measured against, on the same 16 kHz audio.

- silero-vad: the ONNX model its PyPI package ships (`silero_vad/data/silero_vad.onnx`), run
  with onnxruntime on one thread exactly as the package's own `OnnxWrapper` does (512-sample
  windows with 64 samples of context and the recurrent state carried), in numpy, so torch is
  never imported (pip still installs it: the silero-vad wheel declares it as a dependency).
- openSMILE eGeMAPS v02: functionals over the whole signal (the LLD extraction is the work).

Both come from the `bench` extra; a missing one raises PeerUnavailable naming what to install.
"""

from __future__ import annotations

import time

import numpy as np

from edge_ser.contract import SAMPLE_RATE_HZ

SILERO_WINDOW_SAMPLES = 512
SILERO_CONTEXT_SAMPLES = 64


class PeerUnavailable(RuntimeError):
    """A peer library is not installed."""


def silero_model_path() -> str:
    try:
        import importlib.resources

        import silero_vad  # noqa: F401 - only to locate the packaged model
    except ImportError as exc:
        raise PeerUnavailable(f"silero-vad is not installed ({exc}); pip install "
                              "'edge-ser[bench]'") from None
    return str(importlib.resources.files("silero_vad") / "data" / "silero_vad.onnx")


class SileroVad:
    """silero-vad's streaming loop on onnxruntime: speech probability per 32 ms window."""

    def __init__(self) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(silero_model_path(), options,
                                             providers=["CPUExecutionProvider"])
        self._sr = np.array(SAMPLE_RATE_HZ, dtype=np.int64)
        self.reset()

    def reset(self) -> None:
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros((1, SILERO_CONTEXT_SAMPLES), dtype=np.float32)
        self._tail = np.zeros(0, dtype=np.float32)

    def accept(self, samples: np.ndarray) -> list[float]:
        """Speech probabilities of the 512-sample windows that `samples` completes."""
        buffer = np.concatenate((self._tail, samples)) if self._tail.size else samples
        n = buffer.size // SILERO_WINDOW_SAMPLES
        probs = []
        for i in range(n):
            window = buffer[i * SILERO_WINDOW_SAMPLES:(i + 1) * SILERO_WINDOW_SAMPLES]
            x = np.concatenate((self._context, window[np.newaxis]), axis=1)
            out, self._state = self._session.run(
                None, {"input": x, "state": self._state, "sr": self._sr})
            self._context = x[:, -SILERO_CONTEXT_SAMPLES:]
            probs.append(float(out[0, 0]))
        self._tail = buffer[n * SILERO_WINDOW_SAMPLES:].copy()
        return probs


def time_silero(audio: np.ndarray, chunk_samples: int) -> tuple[float, float]:
    """(wall-clock s, CPU s of this thread) silero-vad takes to stream `audio` in chunks."""
    vad = SileroVad()
    vad.accept(np.zeros(SILERO_WINDOW_SAMPLES, dtype=np.float32))  # warm up
    vad.reset()
    start, cpu_start = time.perf_counter(), time.thread_time()
    for pos in range(0, audio.size, chunk_samples):
        vad.accept(audio[pos:pos + chunk_samples])
    return time.perf_counter() - start, time.thread_time() - cpu_start


def egemaps_extractor():
    """openSMILE's eGeMAPS v02 functionals extractor, warmed up; PeerUnavailable with the
    install hint when openSMILE is missing."""
    try:
        import opensmile
    except ImportError as exc:
        raise PeerUnavailable(f"opensmile is not installed ({exc}); pip install "
                              "'edge-ser[bench]'") from None
    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                            feature_level=opensmile.FeatureLevel.Functionals)
    smile.process_signal(np.zeros(SAMPLE_RATE_HZ, dtype=np.float32), SAMPLE_RATE_HZ)
    return smile


def time_egemaps(audio: np.ndarray) -> tuple[float, float]:
    """(wall-clock s, CPU s of this thread) for openSMILE's eGeMAPS v02 functionals of
    `audio` (after a warm-up)."""
    smile = egemaps_extractor()
    start, cpu_start = time.perf_counter(), time.thread_time()
    smile.process_signal(audio, SAMPLE_RATE_HZ)
    return time.perf_counter() - start, time.thread_time() - cpu_start
