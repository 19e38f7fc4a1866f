"""`edge-ser bench stream`: the streaming pipeline's speed, latency and memory, with its peers.

Everything runs on one CPU thread (onnxruntime with one intra-op thread, BLAS limited to one
thread, no numba parallelism), in one process, on the same audio: a real recording looped to
`--minutes`. Figures:

- real-time factor (processing time / audio time) of the whole pipeline fed 100 ms chunks, at
  16 kHz and at 48 kHz (resampler included), of silero-vad streaming the same audio, and of
  openSMILE eGeMAPS functionals over it;
- processing time per 100 ms chunk (median, p99, max) and the split between the stages;
- the same with the numpy feature kernels (`features.kernels: numpy`) instead of numba;
- speech end to final segment result, in audio time, against a labels CSV of the recording;
- resident memory over a long stream, once with each feature kernels choice (a separate
  process each, see `edge_ser.bench.memory`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_ser.bench.report import render
from edge_ser.bench.stream_options import CHUNK_MS, BenchOptions
from edge_ser.contract import SAMPLE_RATE_HZ


@dataclass
class PipelineRun:
    audio_s: float
    total_s: float
    total_cpu_s: float
    chunk_s: np.ndarray  # wall-clock time of every accept_waveform call
    chunk_cpu_s: np.ndarray  # CPU time of this thread in every call (no time preempted)
    stage_s: dict[str, float]
    segments: int

    @property
    def rtf(self) -> float:
        return self.total_s / self.audio_s

    @property
    def rtf_cpu(self) -> float:
        return self.total_cpu_s / self.audio_s


class _Timed:
    """Wraps a backend or scorer, adding the CPU time of its calls to `totals[name]`."""

    def __init__(self, inner, method: str, name: str, totals: dict[str, float]) -> None:
        self._inner, self._method, self._name, self._totals = inner, method, name, totals

    def __getattr__(self, attr):
        value = getattr(self._inner, attr)
        if attr != self._method:
            return value

        def timed(*args, **kwargs):
            start = time.thread_time()
            try:
                return value(*args, **kwargs)
            finally:
                self._totals[self._name] += time.thread_time() - start
        return timed


def single_thread_limits():
    """Limit BLAS/OpenMP pools to one thread where threadpoolctl is installed."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1)


def run_pipeline(recognizer, audio: np.ndarray, rate_hz: int, stages: bool = False
                 ) -> PipelineRun:
    """Stream `audio` (at `rate_hz`) in CHUNK_MS chunks, timing every call."""
    from edge_ser.recognizer import Recognizer

    totals = {"features": 0.0, "vad": 0.0, "encoder": 0.0, "scoring": 0.0}
    if stages:
        recognizer = Recognizer(recognizer.package,
                                _Timed(recognizer.backend, "run", "encoder", totals),
                                recognizer.config,
                                scorer=_Timed(recognizer.scorer, "score_pooled", "scoring",
                                              totals))
    patched = _time_module_functions(totals) if stages else contextlib.nullcontext()
    chunk = rate_hz * CHUNK_MS // 1000
    times, cpu_times = [], []
    segments = 0
    with patched:
        stream = recognizer.create_stream(rate_hz)
        start, cpu_start = time.perf_counter(), time.thread_time()
        for pos in range(0, audio.size, chunk):
            tick, cpu_tick = time.perf_counter(), time.thread_time()
            events = stream.accept_waveform(audio[pos:pos + chunk])
            times.append(time.perf_counter() - tick)
            cpu_times.append(time.thread_time() - cpu_tick)
            segments += sum(e.type == "segment" for e in events)
        segments += sum(e.type == "segment" for e in stream.input_finished())
        total, total_cpu = time.perf_counter() - start, time.thread_time() - cpu_start
    return PipelineRun(audio.size / rate_hz, total, total_cpu, np.asarray(times),
                       np.asarray(cpu_times), totals, segments)


@contextlib.contextmanager
def _time_module_functions(totals: dict[str, float]):
    """CPU-time `features.frames_of` and `vad.accept` as the stream calls them."""
    from edge_ser import stream as stream_module

    originals = {"features": stream_module.features.frames_of, "vad": stream_module.vad.accept}

    def wrap(name, fn):
        def timed(*args, **kwargs):
            start = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[name] += time.thread_time() - start
        return timed

    stream_module.features.frames_of = wrap("features", originals["features"])
    stream_module.vad.accept = wrap("vad", originals["vad"])
    try:
        yield
    finally:
        stream_module.features.frames_of = originals["features"]
        stream_module.vad.accept = originals["vad"]


def numpy_kernels_identical(audio: np.ndarray) -> bool:
    """Whether the numpy feature kernels give the numba kernels' features bit for bit."""
    from edge_ser import features

    by_numpy = features.log_mel(audio, kernels="numpy")
    by_numba = features.log_mel(audio, kernels="numba")
    return bool(np.array_equal(by_numpy.view(np.uint32), by_numba.view(np.uint32)))


def kernels_config(kernels: str, config=None):
    """`config` (default: the defaults) with its feature kernels set to `kernels`."""
    from edge_ser.runtime_config import FeaturesConfig, RuntimeConfig

    config = config if config is not None else RuntimeConfig()
    return dataclasses.replace(config, features=FeaturesConfig(kernels=kernels))


def with_kernels(recognizer, kernels: str):
    """A recognizer sharing `recognizer`'s package, backend and scorer, whose streams compute
    features with `kernels`; close only the original (it owns the backend)."""
    from edge_ser.recognizer import Recognizer

    return Recognizer(recognizer.package, recognizer.backend,
                      kernels_config(kernels, recognizer.config), scorer=recognizer.scorer)


def median_run(recognizer, audio, rate_hz, repeats) -> PipelineRun:
    runs = sorted((run_pipeline(recognizer, audio, rate_hz) for _ in range(repeats)),
                  key=lambda r: r.total_s)
    return runs[len(runs) // 2]


def segment_latency(recognizer, audio: np.ndarray, labels_csv: Path) -> list[dict]:
    """For every labelled turn: audio time at which its SegmentResult came out (10 ms chunks)
    minus the turn's labelled end, and minus the VAD's speech end."""
    from edge_ser.console import best_reference, read_references

    references = read_references(labels_csv)
    stream = recognizer.create_stream(SAMPLE_RATE_HZ)
    step = SAMPLE_RATE_HZ // 100
    rows = []
    for pos in range(0, audio.size + step, step):
        events = (stream.accept_waveform(audio[pos:pos + step]) if pos < audio.size
                  else stream.input_finished())
        for event in events:
            if event.type != "segment":
                continue
            ref = best_reference(event, references)
            rows.append({"known_end_s": ref.end_s if ref else None, "vad_end_s": event.end_s,
                         "emitted_s": stream.time_s, "label": event.label,
                         "known": ref.emotion if ref else None})
    return rows


def memory_run(audio_path: Path, model, backend: str, precision: str, minutes: float,
               kernels: str, config_args: tuple[str, ...] = ()) -> dict:
    """The long-stream memory measurement with the given feature kernels, in a fresh process
    (`config_args`: the runtime config as `--config` / `--set` arguments)."""
    command = [sys.executable, "-m", "edge_ser.bench.memory", "--audio", str(audio_path),
               "--backend", backend, "--precision", precision, "--minutes", str(minutes),
               "--every-min", str(minutes / 12), "--kernels", kernels, *config_args]
    if model is not None:
        command += ["--model", str(model)]
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"memory run failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def looped(audio: np.ndarray, seconds: float) -> np.ndarray:
    n = round(seconds * SAMPLE_RATE_HZ)
    return np.resize(audio, n).astype(np.float32)


def system_facts() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            names = [line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")]
        if names:
            cpu = f"{names[0]} ({len(names)} logical CPUs)"
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    versions = {}
    for name in ("numpy", "numba", "onnxruntime", "soxr", "webrtcvad", "opensmile",
                 "silero_vad"):
        try:
            from importlib.metadata import version

            dist = {"webrtcvad": "webrtcvad-wheels", "silero_vad": "silero-vad"}.get(name, name)
            versions[name] = version(dist)
        except Exception:  # noqa: BLE001 - a missing peer is reported as such
            versions[name] = "not installed"
    return {"cpu": cpu, "load": load, "python": platform.python_version(),
            "versions": ", ".join(f"{k} {v}" for k, v in versions.items())}


def percentiles_ms(times_s: np.ndarray) -> tuple[float, float, float]:
    ms = 1000 * times_s
    return float(np.median(ms)), float(np.percentile(ms, 99)), float(ms.max())


def timed_median(fn, repeats: int, audio_s: float) -> tuple[float, float]:
    """Median real-time factors (wall clock, CPU time) of `fn` -> (wall_s, cpu_s)."""
    runs = [fn() for _ in range(repeats)]
    return (statistics.median(r[0] for r in runs) / audio_s,
            statistics.median(r[1] for r in runs) / audio_s)


def benchmark(options: BenchOptions, log=print) -> tuple[str, dict]:
    """Run every measurement; returns (the markdown report, the figures as a dict).

    The pipeline and silero-vad passes alternate, so both see the same machine load.
    """
    from edge_ser.audio import load_mono_16k
    from edge_ser.bench.peers import time_egemaps, time_silero
    from edge_ser.features import KERNELS
    from edge_ser.recognizer import Recognizer

    facts = system_facts()
    recording = load_mono_16k(options.audio)
    audio = looped(recording, options.minutes * 60)
    audio_s = audio.size / SAMPLE_RATE_HZ
    figures: dict = {"audio_s": audio_s}
    with single_thread_limits():
        recognizer = Recognizer.from_options(options.model, backend=options.backend,
                                             precision=options.precision, threads=1,
                                             config=kernels_config("numba", options.config))
        log(f"pipeline and silero-vad, alternating: {audio_s:.0f} s of audio x "
            f"{options.repeats}")
        run_pipeline(recognizer, audio[: 10 * SAMPLE_RATE_HZ], SAMPLE_RATE_HZ)  # warm up
        runs, silero = [], []
        for _ in range(options.repeats):
            runs.append(run_pipeline(recognizer, audio, SAMPLE_RATE_HZ))
            silero.append(time_silero(audio, SAMPLE_RATE_HZ * CHUNK_MS // 1000))
        main = sorted(runs, key=lambda r: r.total_s)[len(runs) // 2]
        figures["rtf"] = main.rtf
        figures["rtf_cpu"] = statistics.median(r.rtf_cpu for r in runs)
        figures["chunk_ms"] = percentiles_ms(main.chunk_s)
        figures["chunk_cpu_ms"] = percentiles_ms(main.chunk_cpu_s)
        figures["silero_rtf"] = statistics.median(w for w, _ in silero) / audio_s
        figures["silero_rtf_cpu"] = statistics.median(c for _, c in silero) / audio_s
        figures["segments_per_pass"] = main.segments
        _variants(options, recognizer, recording, audio, figures, log)
        log("openSMILE eGeMAPS")
        figures["egemaps_rtf"], figures["egemaps_rtf_cpu"] = timed_median(
            lambda: time_egemaps(audio), options.repeats, audio_s)
        if options.labels is not None:
            log("latency")
            figures["latency"] = segment_latency(recognizer, recording, options.labels)
        recognizer.close()
    figures["memory"] = {}
    for kernels in KERNELS:  # one after the other, so neither run disturbs the other
        log(f"memory: {options.memory_minutes:.0f} min stream in a separate process, "
            f"{kernels} feature kernels")
        figures["memory"][kernels] = memory_run(options.audio, options.model, options.backend,
                                                options.precision, options.memory_minutes,
                                                kernels, options.config_args)
    return render(options, facts, figures), figures


def _variants(options: BenchOptions, recognizer, recording: np.ndarray, audio: np.ndarray,
              figures: dict, log) -> None:
    """48 kHz input, the other precision, the stage split, and the numpy feature kernels."""
    from edge_ser.audio import resample
    from edge_ser.recognizer import Recognizer

    audio_s = audio.size / SAMPLE_RATE_HZ
    log("48 kHz input")
    run_48k = median_run(recognizer, resample(audio, SAMPLE_RATE_HZ, 48_000), 48_000,
                         options.repeats)
    figures["rtf_48k"], figures["rtf_48k_cpu"] = run_48k.rtf, run_48k.rtf_cpu
    if options.backend == "onnxruntime":
        other = "fp32" if options.precision == "int8" else "int8"
        log(f"{other} encoder")
        with Recognizer.from_options(options.model, backend=options.backend, precision=other,
                                     threads=1, config=recognizer.config) as alternative:
            run_other = median_run(alternative, audio, SAMPLE_RATE_HZ, options.repeats)
        figures["other_precision"] = other
        figures["rtf_other"], figures["rtf_other_cpu"] = run_other.rtf, run_other.rtf_cpu
    staged = run_pipeline(recognizer, audio, SAMPLE_RATE_HZ, stages=True)
    figures["stages_ms_per_s"] = {k: 1000 * v / audio_s for k, v in staged.stage_s.items()}
    figures["stages_ms_per_s"]["total"] = 1000 * staged.total_cpu_s / audio_s
    log("numpy feature kernels")
    on_numpy = with_kernels(recognizer, "numpy")
    numpy_run = median_run(on_numpy, audio, SAMPLE_RATE_HZ, options.repeats)
    numpy_staged = run_pipeline(on_numpy, audio, SAMPLE_RATE_HZ, stages=True)
    figures["numpy_rtf"], figures["numpy_rtf_cpu"] = numpy_run.rtf, numpy_run.rtf_cpu
    figures["numpy_identical"] = numpy_kernels_identical(recording)
    figures["numpy_chunk_ms"] = percentiles_ms(numpy_run.chunk_s)
    figures["features_ms_per_s"] = {
        "numba": 1000 * staged.stage_s["features"] / audio_s,
        "numpy": 1000 * numpy_staged.stage_s["features"] / audio_s}
