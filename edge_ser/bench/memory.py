"""Resident memory over one long stream: real speech with pauses, looped for as long as asked.

Runs in its own process (`python -m edge_ser.bench.memory --minutes 60 --kernels numpy`) so
nothing else the benchmark loads (peers, other recordings, the other feature kernels) counts;
prints one JSON object: the resident set size (VmRSS) after each import the runtime needs, after
loading the model and every `--every-min` minutes of audio, plus the peak (VmHWM), the time
taken, and whether numba ended up imported.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np


def rss_mb(field: str = "VmRSS") -> float:
    """This process' resident set size (or another /proc/self/status field) in MiB."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def looped_chunks(audio: np.ndarray, total_samples: int, chunk_samples: int
                  ) -> Iterator[np.ndarray]:
    """`total_samples` of `audio` repeated end to end, in chunks; never holds more than one."""
    pos = 0
    while pos < total_samples:
        n = min(chunk_samples, total_samples - pos)
        start = pos % audio.size
        chunk = audio[start:start + n]
        if chunk.size < n:  # wrap around the end of the recording
            chunk = np.concatenate((chunk, audio[:n - chunk.size]))
        yield chunk
        pos += n


def import_footprint(kernels: str) -> list[list]:
    """[label, resident MiB] after each import, in the order the runtime needs them, with the
    feature kernels `kernels`; numba gets a row of its own only when those kernels need it."""
    import importlib

    def imports(*modules: str):
        return lambda: [importlib.import_module(module) for module in modules]

    def load_kernels() -> None:
        from edge_ser import features

        features.init_state(kernels)  # imports the kernels' module

    steps = [("onnxruntime", imports("onnxruntime")),
             ("webrtcvad, soxr, soundfile", imports("webrtcvad", "soxr", "soundfile"))]
    if kernels == "numba":
        steps.append(("numba", imports("numba")))
    steps += [(f"edge_ser.features ({kernels} kernels loaded)", load_kernels),
              ("rest of the runtime", imports("edge_ser.recognizer", "edge_ser.backends",
                                              "edge_ser.scoring"))]
    footprint = [["python + numpy", rss_mb()]]
    for label, load in steps:
        load()
        footprint.append([label, rss_mb()])
    return footprint


def measure(audio_path: Path, model: str | None, backend: str, precision: str, minutes: float,
            every_min: float, chunk_ms: int, kernels: str = "numba", config=None) -> dict:
    """`config`: the runtime config (None: the built-in defaults), with `kernels` set."""
    footprint = import_footprint(kernels)

    import dataclasses

    from edge_ser.audio import load_mono_16k
    from edge_ser.contract import SAMPLE_RATE_HZ
    from edge_ser.recognizer import Recognizer
    from edge_ser.runtime_config import FeaturesConfig, RuntimeConfig

    report = {"kernels": kernels, "rss_start_mb": footprint[0][1], "rss_imported_mb": rss_mb()}
    config = dataclasses.replace(config if config is not None else RuntimeConfig(),
                                 features=FeaturesConfig(kernels=kernels))
    recognizer = Recognizer.from_options(model, backend=backend, precision=precision,
                                         config=config)
    footprint.append(["model package loaded", rss_mb()])
    report["footprint"] = footprint
    audio = load_mono_16k(audio_path)
    report["rss_loaded_mb"] = rss_mb()
    stream = recognizer.create_stream(SAMPLE_RATE_HZ)
    chunk = SAMPLE_RATE_HZ * chunk_ms // 1000
    every = round(every_min * 60 * SAMPLE_RATE_HZ)
    total = round(minutes * 60 * SAMPLE_RATE_HZ)
    samples_fed, segments = 0, 0
    trace = []
    started = time.perf_counter()
    for piece in looped_chunks(audio, total, chunk):
        segments += sum(e.type == "segment" for e in stream.accept_waveform(piece))
        samples_fed += piece.size
        if samples_fed % every < piece.size:
            trace.append([round(samples_fed / SAMPLE_RATE_HZ / 60, 2), round(rss_mb(), 1)])
    segments += sum(e.type == "segment" for e in stream.input_finished())
    elapsed = time.perf_counter() - started
    report.update(trace=trace, rss_end_mb=rss_mb(), rss_peak_mb=rss_mb("VmHWM"),
                  audio_s=samples_fed / SAMPLE_RATE_HZ, elapsed_s=elapsed,
                  segments=segments, rtf=elapsed / (samples_fed / SAMPLE_RATE_HZ),
                  numba_imported="numba" in sys.modules)
    recognizer.close()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--audio", type=Path, required=True, help="speech recording to loop")
    parser.add_argument("--model", default=None)
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--every-min", type=float, default=5.0)
    parser.add_argument("--chunk-ms", type=int, default=100)
    parser.add_argument("--kernels", default="numba",
                        help="feature kernels, one of edge_ser.features.KERNELS")
    parser.add_argument("--config", type=Path, default=None, help="runtime YAML")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)
    from edge_ser.config import load_config
    from edge_ser.runtime_config import RuntimeConfig

    config = load_config(RuntimeConfig, args.config, args.overrides)
    report = measure(args.audio, args.model, args.backend, args.precision, args.minutes,
                     args.every_min, args.chunk_ms, args.kernels, config)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
