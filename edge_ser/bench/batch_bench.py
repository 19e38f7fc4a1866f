"""`edge-ser bench batch`: throughput and memory of the batch engine on stereo call recordings.

The given recordings (e.g. 8 kHz mu-law stereo calls) are copied round-robin into a scratch
folder until they hold at least `--minutes` of audio, then `edge-ser batch` runs over them as its
own process, once per `--workers` value (each worker: one recognizer, one CPU thread), `--repeats`
times (median). Figures per worker count:

- throughput in recording-seconds per wall-clock second, per worker (the batch's own elapsed
  time, worker start and model loading included) and end to end (the whole command, interpreter
  start and imports as well);
- recording-seconds per CPU-second (every process of the batch together);
- peak resident memory (VmHWM) of the largest worker process, sampled from /proc while it runs.

Beside it, in the same run, the classical peer: openSMILE eGeMAPS v02 functionals over the very
segments the batch found (each channel decoded and resampled to 16 kHz first, not timed), on one
thread of this process.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import soundfile as sf

from edge_ser.batch.outputs import RUN_JSON
from edge_ser.contract import SAMPLE_RATE_HZ

CLI = ("import sys; from edge_ser.commands import run_runtime_command; "
       "sys.exit(run_runtime_command(sys.argv[1], sys.argv[2:]))")
"""`edge-ser batch`, run as its own process."""
POLL_S = 0.05


@dataclass
class BatchBenchOptions:
    recordings: list[Path]
    minutes: float = 10.0
    workers: tuple[int, ...] = (1, 2)
    repeats: int = 3
    model: str | None = None
    backend: str = "onnxruntime"
    precision: str | None = None
    egemaps: bool = True
    command: str = ""
    extra_args: list[str] = field(default_factory=list)
    variants: tuple[Variant, ...] = ()
    """Further settings measured beside the default, interleaved with it."""


@dataclass(frozen=True)
class Variant:
    name: str
    overrides: tuple[str, ...] = ()
    """Runtime `--set` overrides."""
    outputs_in_memory: bool = False
    """Write the batch's outputs to a RAM folder (MEMORY_ROOT) instead of the scratch disk."""


MEMORY_ROOT = Path("/dev/shm")
VARIANTS = (
    Variant("chunk calls (bit-exact)", ("batch.encoder_calls=chunk",)),
    Variant("numba kernels", ("features.kernels=numba",)),
    Variant("outputs in memory", outputs_in_memory=True),
)
"""What `bench batch` measures beside the default configuration: the streaming engine's
fixed encoder chunks (results equal to streaming bit for bit), the numba feature kernels, and
the default with its outputs written to RAM (tmpfs) instead of disk: the storage's share."""


def storage_probe(folder: Path, files: int = 100) -> float:
    """Microseconds to create, write (2 kB) and rename one small file in `folder`: what each
    of the five outputs of a recording costs the storage."""
    probe = folder / "storage-probe"
    shutil.rmtree(probe, ignore_errors=True)
    probe.mkdir(parents=True)
    try:
        start = time.perf_counter()
        for i in range(files):
            tmp = probe / f".f{i}.tmp"
            tmp.write_bytes(b"x" * 2048)
            os.replace(tmp, probe / f"f{i}")
        return (time.perf_counter() - start) / files * 1e6
    finally:
        shutil.rmtree(probe, ignore_errors=True)


def replicate(recordings: list[Path], minutes: float, folder: Path) -> tuple[list[Path], float]:
    """Copies of `recordings`, round-robin, until they hold `minutes` of audio: (paths, audio s)."""
    if not recordings:
        raise ValueError("no recordings to benchmark")
    durations = [sf.info(str(p)).duration for p in recordings]
    if not any(d > 0 for d in durations):
        raise ValueError("the recordings hold no audio")
    folder.mkdir(parents=True, exist_ok=True)
    copies, total, i = [], 0.0, 0
    while total < minutes * 60:
        source = recordings[i % len(recordings)]
        target = folder / f"r{i:05d}_{source.stem}{source.suffix}"
        shutil.copyfile(source, target)
        copies.append(target)
        total += durations[i % len(recordings)]
        i += 1
    return copies, total


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _hwm_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class _PeakWatcher(threading.Thread):
    """Samples the peak resident size of a process and of its descendants while it runs."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.main_mb = 0.0
        self.children_mb: dict[int, float] = {}
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.main_mb = max(self.main_mb, _hwm_mb(self.pid) or 0.0)
            for child in _descendants(self.pid):
                mb = _hwm_mb(child)
                if mb is not None:
                    self.children_mb[child] = max(self.children_mb.get(child, 0.0), mb)
            self._stop_event.wait(POLL_S)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


@dataclass
class BatchRun:
    workers: int
    audio_s: float
    processing_s: float
    end_to_end_s: float
    cpu_s: float
    worker_peak_mb: float


def run_batch_once(inputs: Path, out: Path, workers: int, options: BatchBenchOptions,
                   overrides: tuple[str, ...] = ()) -> BatchRun:
    """One `edge-ser batch` process over `inputs` (fresh `out`), with runtime `overrides`."""
    shutil.rmtree(out, ignore_errors=True)
    os.sync()  # the deletion's writes (and discards) land now, not during the timed pass
    cmd = [sys.executable, "-c", CLI, "batch", str(inputs), "--out", str(out), "--workers",
           str(workers), "--quiet", "--backend", options.backend, *options.extra_args]
    for override in overrides:
        cmd += ["--set", override]
    if options.model:
        cmd += ["--model", options.model]
    if options.precision:
        cmd += ["--precision", options.precision]
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               NUMBA_NUM_THREADS="1")
    package_root = str(Path(__file__).resolve().parent.parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    watcher = _PeakWatcher(proc.pid)
    watcher.start()
    stdout, stderr = proc.communicate()
    end_to_end = time.perf_counter() - start
    watcher.stop()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"batch failed (exit {proc.returncode}): {stderr.strip()[-2000:]}")
    totals = json.loads((out / RUN_JSON).read_text())  # the batch's own elapsed time
    processing = max(float(totals["elapsed_s"]), 1e-6)
    audio_s = _audio_seconds(out)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    if workers > 1 and watcher.children_mb:
        peak = max(watcher.children_mb.values())
    else:
        peak = watcher.main_mb
    return BatchRun(workers, audio_s, processing, end_to_end, cpu, peak)


def _audio_seconds(out: Path) -> float:
    total = 0.0
    for summary in (out / "recordings").glob("*/summary.json"):
        total += float(json.loads(summary.read_text(encoding="utf-8"))["duration_s"])
    return total


def egemaps_over_segments(batch_out: Path, recordings: list[Path]) -> dict:
    """openSMILE eGeMAPS v02 functionals of every segment the batch found, one thread."""
    from edge_ser.audio import read_audio, resample
    from edge_ser.batch.paths import recording_dir
    from edge_ser.bench.peers import egemaps_extractor

    smile = egemaps_extractor()
    wall = cpu = audio_s = speech_s = 0.0
    segments = 0
    for path in recordings:
        seg_file = recording_dir(batch_out, path.stem) / "segments.jsonl"
        if not seg_file.is_file():
            continue
        samples, rate = read_audio(path)
        samples = samples.reshape(samples.shape[0], -1)
        audio_s += samples.shape[0] / rate
        channels = [resample(samples[:, c], rate, SAMPLE_RATE_HZ)
                    for c in range(samples.shape[1])]
        with seg_file.open(encoding="utf-8") as fh:
            segs = [json.loads(line) for line in fh if line.strip()]
        for seg in segs:
            x = channels[seg["channel"]]
            piece = x[int(seg["start_s"] * SAMPLE_RATE_HZ):int(seg["end_s"] * SAMPLE_RATE_HZ)]
            if piece.size < SAMPLE_RATE_HZ // 10:
                continue
            t0, c0 = time.perf_counter(), time.thread_time()
            smile.process_signal(piece, SAMPLE_RATE_HZ)
            wall += time.perf_counter() - t0
            cpu += time.thread_time() - c0
            speech_s += piece.size / SAMPLE_RATE_HZ
            segments += 1
    return {"segments": segments, "audio_s": audio_s, "speech_s": speech_s, "wall_s": wall,
            "cpu_s": cpu, "x_realtime": audio_s / wall if wall > 0 else 0.0}


def _summary(runs: list[BatchRun], variant: str) -> dict:
    med = statistics.median
    workers = runs[0].workers
    audio = runs[0].audio_s
    processing = med(r.processing_s for r in runs)
    end_to_end = med(r.end_to_end_s for r in runs)
    cpu = med(r.cpu_s for r in runs)
    return {"variant": variant, "workers": workers, "audio_s": audio, "runs": len(runs),
            "processing_s": processing, "end_to_end_s": end_to_end, "cpu_s": cpu,
            "x_realtime": audio / processing,
            "x_realtime_per_worker": audio / processing / workers,
            "x_realtime_end_to_end": audio / end_to_end,
            "audio_s_per_cpu_s": audio / cpu if cpu > 0 else 0.0,
            "worker_peak_rss_mb": max(r.worker_peak_mb for r in runs)}


def benchmark(options: BatchBenchOptions, log=lambda _m: None) -> tuple[str, dict]:
    """Run the benchmark; returns (markdown report, figures)."""
    with tempfile.TemporaryDirectory(prefix="edge-ser-bench-batch-") as tmp:
        inputs = Path(tmp) / "inputs"
        copies, total = replicate(options.recordings, options.minutes, inputs)
        log(f"{len(copies)} recordings, {total / 60:.1f} min of audio")
        results = []
        variants = [Variant("default"), *options.variants]
        memory = _memory_folder() if any(v.outputs_in_memory for v in variants) else None
        if memory is None and any(v.outputs_in_memory for v in variants):
            log(f"{MEMORY_ROOT} is not a writable folder: no in-memory outputs variant")
            variants = [v for v in variants if not v.outputs_in_memory]
        default_out = Path(tmp) / "out_default"
        try:
            for workers in options.workers:
                runs: dict[str, list[BatchRun]] = {v.name: [] for v in variants}
                for i in range(options.repeats):  # variants interleaved: same load for all
                    for n, v in enumerate(variants):
                        out = (default_out if n == 0 else
                               (memory if v.outputs_in_memory else Path(tmp)) / f"out_{n}")
                        runs[v.name].append(run_batch_once(inputs, out, workers, options,
                                                           v.overrides))
                        log(f"workers {workers}, {v.name}, pass {i + 1}: "
                            f"{runs[v.name][-1].processing_s:.2f} s")
                results += [_summary(runs[v.name], v.name) for v in variants]
            storage = {"disk_us_per_file": storage_probe(Path(tmp))}
            if memory is not None:
                storage["memory_us_per_file"] = storage_probe(memory)
        finally:
            if memory is not None:
                shutil.rmtree(memory, ignore_errors=True)
        peer = None
        if options.egemaps:
            peer = egemaps_over_segments(default_out, copies)
            log(f"eGeMAPS over {peer['segments']} segments: {peer['wall_s']:.2f} s")
    figures = {"command": options.command, "recordings": len(copies),
               "source_recordings": len(options.recordings), "audio_s": total,
               "format": _describe(options.recordings[0]), "batch": results, "egemaps": peer,
               "storage": storage, "machine": _machine()}
    if peer and peer["x_realtime"] > 0:
        default = [r for r in results if r["variant"] == "default"]
        one = next((r for r in default if r["workers"] == 1), default[0])
        figures["edge_ser_vs_egemaps"] = one["x_realtime_per_worker"] / peer["x_realtime"]
    return render(figures), figures


def _memory_folder() -> Path | None:
    """A fresh folder in RAM for the in-memory outputs variant, or None."""
    try:
        return Path(tempfile.mkdtemp(prefix="edge-ser-bench-batch-", dir=MEMORY_ROOT))
    except OSError:
        return None


def _describe(path: Path) -> str:
    info = sf.info(str(path))
    return f"{info.samplerate} Hz, {info.channels} channel(s), {info.subtype}"


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}"


def render(f: dict) -> str:
    lines = ["# Batch benchmark", "",
             f"Command: `{f['command']}`", "",
             "The calls are made from the shared corpora with `python tools/make_calls.py "
             "--data ../shared/data --out DIR --calls 10 --turns 8 --seed 0`, DIR being the "
             "folder given to the command (two speakers on two channels, telephone band, 8 kHz "
             "mu-law, line noise).", "",
             f"Machine: {f['machine']}.", "",
             f"Audio: {f['recordings']} recordings ({f['source_recordings']} distinct, copied "
             f"round-robin), {f['audio_s'] / 60:.1f} min in total, {f['format']}.", "",
             "Throughput is recording-seconds per wall-clock second (x real time). *Processing* "
             "is the batch's own elapsed time (starting the workers and loading their models "
             "included); *end to end* is the whole command (interpreter and imports as "
             "well). Each worker runs one "
             "recognizer on one CPU thread. Memory: peak resident size (VmHWM) of the largest "
             "worker process.", "",
             "*default* is the default configuration: one encoder call per speech segment "
             "(results equal to streaming up to float rounding) and the numpy feature kernels. "
             "The other rows change one setting each and ran interleaved with it: *chunk calls* "
             "feed the encoder the streaming engine's fixed chunks (`--set "
             "batch.encoder_calls=chunk`, results equal to streaming bit for bit); *numba "
             "kernels* compute the features with numba (`--set features.kernels=numba`); "
             "*outputs in memory* is the default writing its outputs to a RAM folder (tmpfs) "
             "instead of the disk the inputs are on, so the difference is what the storage "
             "costs.", "",
             "| configuration | workers | x real time (processing) | per worker | end to end "
             "| audio-s per CPU-s | peak RSS per worker |",
             "|---|---|---|---|---|---|---|"]
    for r in f["batch"]:
        lines.append(f"| {r.get('variant', 'default')} | {r['workers']} | "
                     f"{r['x_realtime']:.0f}x | "
                     f"{r['x_realtime_per_worker']:.0f}x | {r['x_realtime_end_to_end']:.0f}x | "
                     f"{r['audio_s_per_cpu_s']:.0f} | {r['worker_peak_rss_mb']:.0f} MiB |")
    for variant in dict.fromkeys(r.get("variant", "default") for r in f["batch"]):
        rows = [r for r in f["batch"] if r.get("variant", "default") == variant]
        one = [r for r in rows if r["workers"] == 1]
        for r in (r for r in rows if r["workers"] > 1 and one):
            lines += ["", f"Scaling of {variant}, {r['workers']} workers vs 1: "
                      f"{r['x_realtime'] / one[0]['x_realtime']:.2f}x the throughput."]
    storage = f.get("storage") or {}
    if "disk_us_per_file" in storage:
        line = (f"Storage: creating, writing (2 kB) and renaming one file costs "
                f"{storage['disk_us_per_file']:.0f} us on the scratch disk")
        if "memory_us_per_file" in storage:
            line += f" and {storage['memory_us_per_file']:.0f} us in RAM"
        lines += ["", line + "; a recording writes five files and a folder."]
    peer = f.get("egemaps")
    if peer:
        lines += ["", "## Peer: openSMILE eGeMAPS v02 functionals", "",
                  f"Over the same {peer['segments']} segments the batch found "
                  f"({peer['speech_s'] / 60:.1f} min of speech in "
                  f"{peer['audio_s'] / 60:.1f} min of recordings), one thread, the audio "
                  f"already decoded and at 16 kHz: {peer['wall_s']:.2f} s, "
                  f"{peer['x_realtime']:.0f}x real time in recording-seconds.", ""]
        if "edge_ser_vs_egemaps" in f:
            lines.append(f"edge-ser (the whole pipeline per worker: decoding, resampling, "
                         f"VAD, features, encoder, tracker) is "
                         f"{f['edge_ser_vs_egemaps']:.1f}x the throughput of eGeMAPS "
                         "feature extraction alone.")
    return "\n".join(lines) + "\n"
