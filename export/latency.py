"""Encoder latency per chunk in onnxruntime on one CPU thread, precisions side by side.

The precisions are timed in one process, interleaved call by call, so a busy machine slows
them alike; the median of `runs` calls is reported (batch 1, one chunk, state carried)."""

from __future__ import annotations

import time

import numpy as np

from edge_ser.backends.onnxruntime_backend import OnnxRuntimeBackend
from edge_ser.package import ModelPackage


def onnxruntime_latency(package: ModelPackage, feats: np.ndarray, runs: int,
                        precisions: tuple[str, ...] = ("fp32", "int8")) -> dict:
    """{precision: {"median_ms", "p90_ms"}} per chunk; `feats` (T, N_MELS) real speech."""
    backends = {p: OnnxRuntimeBackend(package, p, threads=1) for p in precisions}
    chunk = package.chunk_frames
    n_chunks = max(1, len(feats) // chunk)
    states = {p: b.init_state(1) for p, b in backends.items()}
    times: dict[str, list[float]] = {p: [] for p in precisions}
    try:
        for i in range(runs + 20):  # the first 20 calls warm up and are not counted
            piece = feats[None, (i % n_chunks) * chunk:(i % n_chunks + 1) * chunk]
            for p, backend in backends.items():
                start = time.perf_counter()
                _, states[p] = backend.run(piece, states[p])
                if i >= 20:
                    times[p].append(time.perf_counter() - start)
    finally:
        for backend in backends.values():
            backend.close()
    return {p: {"median_ms": round(1000 * float(np.median(t)), 4),
                "p90_ms": round(1000 * float(np.percentile(t, 90)), 4), "runs": runs,
                "threads": 1, "batch": 1}
            for p, t in times.items()}
