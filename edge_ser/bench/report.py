"""The markdown report of `edge-ser bench stream` (written to docs/benchmarks.md)."""

from __future__ import annotations

import statistics

from edge_ser.bench.stream_options import CHUNK_MS, BenchOptions

MEMORY_TARGET_MIB = 200e6 / 2**20
"""The resident memory target, 200 MB, in the MiB that /proc reports (190.7)."""
BATCH_POINTER = ("Batch processing of recorded calls (throughput per core with 1 and 2 workers, "
                 "memory per worker, the eGeMAPS peer side by side) is measured by `python main.py "
                 "bench batch` and reported in [benchmarks_batch.md](benchmarks_batch.md).")
"""The streaming report names the batch report, which has its own command."""


def _yes(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _growth(trace: list) -> tuple[float, float, float]:
    """(first minute, last minute, MiB from the first to the last sample of the trace)."""
    growth = trace[-1][1] - trace[0][1] if len(trace) > 1 else 0.0
    return trace[0][0], trace[-1][0], growth


def _default_mark(kernels: str) -> str:
    """", the default" for the runtime's default feature kernels."""
    from edge_ser.runtime_config import RuntimeConfig

    return ", the default" if RuntimeConfig().features.kernels == kernels else ""


def _memory_targets(memories: dict) -> list[str]:
    """The two memory rows of the targets table for every feature kernels choice measured."""
    rows = []
    for kernels, memory in memories.items():
        first, last, growth = _growth(memory["trace"])
        peak = memory["rss_peak_mb"]
        rows += [
            f"| resident memory, peak over a {memory['audio_s'] / 60:.0f} min stream, "
            f"{kernels} feature kernels | {peak:.0f} MiB | <= 200 MB "
            f"({MEMORY_TARGET_MIB:.1f} MiB) | {_yes(peak <= MEMORY_TARGET_MIB)} |",
            f"| resident memory growth from minute {first:.0f} to {last:.0f}, {kernels} "
            f"feature kernels | {growth:+.1f} MiB | flat | {_yes(abs(growth) <= 2.0)} |",
        ]
    return rows


def _memory_details(kernels: str, memory: dict) -> list[str]:
    """One kernels choice's long stream: resident memory over time and where it comes from."""
    numba = "yes" if memory["numba_imported"] else "no"
    lines = [
        f"### {kernels} feature kernels (`features.kernels: {kernels}`)",
        "",
        f"Streamed in {memory['elapsed_s']:.0f} s (real-time factor {memory['rtf']:.4f}), "
        f"{memory['segments']} segments; numba imported in the process: {numba}.",
        "",
        f"- resident with python and numpy {memory['rss_start_mb']:.0f} MiB, after the "
        f"runtime's imports {memory['rss_imported_mb']:.0f} MiB, after loading the model "
        f"{memory['rss_loaded_mb']:.0f} MiB, at the end {memory['rss_end_mb']:.0f} MiB, peak "
        f"{memory['rss_peak_mb']:.0f} MiB",
        "- resident by audio minute: " + ", ".join(f"{m:.0f}: {r:.0f}" for m, r in
                                                   memory["trace"]),
        "",
        "Where the resident memory comes from (imports in this order, before any audio):",
        "",
        "| after | resident MiB | added MiB |",
        "|---|---|---|",
    ]
    previous = 0.0
    for label, mib in memory["footprint"]:
        lines.append(f"| {label} | {mib:.0f} | {mib - previous:+.0f} |")
        previous = mib
    return lines + [""]


def _numba_mib(memory: dict) -> float:
    """Resident MiB added by the import-table rows that load numba or its kernels."""
    added, previous = 0.0, 0.0
    for label, mib in memory["footprint"]:
        if "numba" in label:
            added += mib - previous
        previous = mib
    return added


def _against_silero(rtf: float, silero_rtf: float) -> str:
    """Met only when clearly below silero-vad: within 5 % is a tie on a noisy machine."""
    if rtf > 0.005:
        return "**no**"
    ratio = rtf / silero_rtf
    if abs(ratio - 1.0) <= 0.05:
        return f"<= 0.005 yes; against silero-vad a tie ({ratio:.2f} x)"
    return "yes" if ratio < 1.0 else f"<= 0.005 yes; **not below silero-vad** ({ratio:.2f} x)"


def render(options: BenchOptions, facts: dict, f: dict) -> str:
    """The markdown report."""
    med, p99, worst = f["chunk_ms"]
    cpu_med, cpu_p99, cpu_worst = f["chunk_cpu_ms"]
    memories = f["memory"]  # feature kernels -> the separate process' figures
    lines = [
        "# Streaming benchmarks",
        "",
        BATCH_POINTER,
        "",
        "Produced by:",
        "",
        "```bash",
        options.command,
        "```",
        "",
        f"- CPU: {facts['cpu']}; load average when the run started: {facts['load']} "
        "(the machine may be shared: figures are wall-clock and include that noise)",
        f"- Python {facts['python']}; {facts['versions']}",
        f"- model: {options.model or 'bundled default package'}, backend {options.backend}, "
        f"precision {options.precision}; one CPU thread (onnxruntime intra-op threads 1, "
        "BLAS limited to 1 thread, numba kernels are single-threaded); numba feature kernels "
        "except where a row names the numpy ones",
        f"- audio: `{options.audio}` looped to {f['audio_s']:.0f} s, fed in {CHUNK_MS} ms "
        f"chunks; medians of {options.repeats} passes",
        "- silero-vad: the ONNX model of its PyPI package run with onnxruntime on one thread, "
        "as the package's own ONNX wrapper runs it (no torch imported); openSMILE: eGeMAPS "
        "v02 functionals over the whole audio",
        "",
        "## Targets",
        "",
        "| figure | measured | target | met |",
        "|---|---|---|---|",
        f"| real-time factor, whole pipeline (16 kHz input), numba kernels, wall clock | "
        f"{f['rtf']:.4f} | <= 0.005 and below silero-vad ({f['silero_rtf']:.4f}) | "
        f"{_against_silero(f['rtf'], f['silero_rtf'])} |",
        f"| real-time factor, whole pipeline (16 kHz input), numba kernels, CPU time | "
        f"{f['rtf_cpu']:.4f} | <= 0.005 and below silero-vad ({f['silero_rtf_cpu']:.4f}) | "
        f"{_against_silero(f['rtf_cpu'], f['silero_rtf_cpu'])} |",
        f"| real-time factor, whole pipeline (16 kHz input), numpy kernels, wall clock | "
        f"{f['numpy_rtf']:.4f} | <= 0.005 and below silero-vad ({f['silero_rtf']:.4f}) | "
        f"{_against_silero(f['numpy_rtf'], f['silero_rtf'])} |",
        f"| real-time factor, whole pipeline (16 kHz input), numpy kernels, CPU time | "
        f"{f['numpy_rtf_cpu']:.4f} | <= 0.005 and below silero-vad "
        f"({f['silero_rtf_cpu']:.4f}) | "
        f"{_against_silero(f['numpy_rtf_cpu'], f['silero_rtf_cpu'])} |",
        f"| processing time per 100 ms chunk, p99, numba kernels (wall clock) | {p99:.2f} ms | "
        f"<= 5 ms | {_yes(p99 <= 5)} |",
        f"| processing time per 100 ms chunk, p99, numba kernels (CPU time of the thread) | "
        f"{cpu_p99:.2f} ms | <= 5 ms | {_yes(cpu_p99 <= 5)} |",
        f"| processing time per 100 ms chunk, p99, numpy kernels (wall clock) | "
        f"{f['numpy_chunk_ms'][1]:.2f} ms | <= 5 ms | {_yes(f['numpy_chunk_ms'][1] <= 5)} |",
    ]
    latency = f.get("latency")
    if latency:
        lat = [r["emitted_s"] - r["known_end_s"] for r in latency if r["known_end_s"] is not None]
        lines.append(f"| speech end to final segment result (audio time), median / max over "
                     f"{len(lat)} turns | {1000 * statistics.median(lat):.0f} / "
                     f"{1000 * max(lat):.0f} ms | <= 300 ms | {_yes(max(lat) <= 0.3)} |")
    lines += _memory_targets(memories)
    lines += [
        "",
        "## Throughput on the same audio",
        "",
        "| pipeline or peer | real-time factor, wall clock | real-time factor, CPU time | "
        "x real time (CPU) |",
        "|---|---|---|---|",
    ]
    rows = [(f"edge-ser stream, 16 kHz input, {options.precision} encoder", "rtf"),
            ("edge-ser stream, 48 kHz input (streaming resampler included)", "rtf_48k"),
            ("edge-ser stream, numpy feature kernels instead of numba", "numpy_rtf"),
            ("silero-vad (ONNX, streaming 512-sample windows)", "silero_rtf"),
            ("openSMILE eGeMAPS v02 functionals", "egemaps_rtf")]
    if "other_precision" in f:
        rows.insert(1, (f"edge-ser stream, 16 kHz input, {f['other_precision']} encoder",
                        "rtf_other"))
    for name, key in rows:
        wall, cpu = f[key], f[key + "_cpu"]
        lines.append(f"| {name} | {wall:.4f} | {cpu:.4f} | {1 / cpu:.0f} |")
    lines += [
        "",
        f"edge-ser against silero-vad, CPU time: {f['rtf_cpu'] / f['silero_rtf_cpu']:.2f} x "
        f"silero-vad's real-time factor (wall clock: {f['rtf'] / f['silero_rtf']:.2f} x).",
        "",
        "silero-vad only detects speech; openSMILE only extracts features; edge-ser does VAD, "
        "features, the encoder, window scoring and tracking within its figure. The edge-ser "
        "and silero-vad passes alternate, so both see the same load; CPU time counts only the "
        "benchmark thread's own work.",
        "",
        f"Per {CHUNK_MS} ms chunk (16 kHz), wall clock: median {med:.3f} ms, p99 {p99:.3f} ms, "
        f"max {worst:.3f} ms; CPU time of the thread: median {cpu_med:.3f} ms, p99 "
        f"{cpu_p99:.3f} ms, max {cpu_worst:.3f} ms. Wall clock includes any time the process "
        "was preempted by other jobs on the machine; CPU time does not.",
        "",
        "## Where the time goes (ms of CPU per second of audio, one instrumented pass)",
        "",
        "| stage | ms per s of audio |",
        "|---|---|",
    ]
    for stage, ms in f["stages_ms_per_s"].items():
        lines.append(f"| {stage} | {ms:.3f} |")
    fm = f["features_ms_per_s"]
    np99 = f["numpy_chunk_ms"][1]
    numba_peak = memories["numba"]["rss_peak_mb"]
    numpy_peak = memories["numpy"]["rss_peak_mb"]
    lines += [
        "",
        "Features and the encoder run only on speech segments and their padding; the VAD runs "
        "on all audio. The rest of the total is the stream's own bookkeeping.",
        "",
        "## What numba buys",
        "",
        "| feature kernels | features, ms per s of audio | pipeline RTF (CPU time) | p99 per "
        "chunk (wall clock) | peak resident memory |",
        "|---|---|---|---|---|",
        f"| numba (`features.kernels: numba`{_default_mark('numba')}) | {fm['numba']:.3f} | "
        f"{f['rtf_cpu']:.4f} | {p99:.3f} ms | {numba_peak:.0f} MiB |",
        f"| plain numpy (`features.kernels: numpy`{_default_mark('numpy')}) | "
        f"{fm['numpy']:.3f} | {f['numpy_rtf_cpu']:.4f} | {np99:.3f} ms | {numpy_peak:.0f} MiB |",
        "",
        "The numpy kernels' features are "
        + ("bit for bit identical to the numba kernels' on this audio."
           if f["numpy_identical"] else "**not** identical to the numba kernels' on this audio.")
        + f" numba saves {fm['numpy'] - fm['numba']:.2f} ms of CPU per second of audio and "
        f"costs {numba_peak - numpy_peak:.0f} MiB of peak resident memory; the import tables "
        "under *Memory over a long stream* show where.",
    ]
    if latency:
        lines += [
            "",
            "## Speech end to final result",
            "",
            "Fed in 10 ms chunks; `emitted` is the audio time at which the segment's final "
            "result came out; `known end` is the labelled end of the turn, `VAD end` the end "
            "the segment reports.",
            "",
            "| known end s | VAD end s | emitted s | after known end ms | after VAD end ms | "
            "label | known |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in latency:
            known = r["known_end_s"]
            after_known = f"{1000 * (r['emitted_s'] - known):.0f}" if known is not None else "-"
            lines.append(f"| {known if known is not None else '-'} | {r['vad_end_s']:.2f} | "
                         f"{r['emitted_s']:.2f} | {after_known} | "
                         f"{1000 * (r['emitted_s'] - r['vad_end_s']):.0f} | {r['label']} | "
                         f"{r['known']} |")
        tail = [r["vad_end_s"] - r["known_end_s"] for r in latency if r["known_end_s"]]
        wait = [r["emitted_s"] - r["vad_end_s"] for r in latency]
        lines += [
            "",
            f"The result comes {1000 * statistics.median(wait):.0f} ms (median) after the end "
            "the VAD reports: `vad.min_silence_ms` of silence must pass before a segment "
            "closes (plus up to one webrtcvad frame). The VAD's end itself lies "
            f"{1000 * statistics.median(tail):.0f} ms (median; max {1000 * max(tail):.0f} ms) "
            "after the labelled end: webrtcvad keeps calling a fading tail and its own hangover "
            "speech. Lowering `vad.min_silence_ms` shortens the wait one for one, at the price "
            "of splitting utterances at shorter pauses.",
        ]
    some = next(iter(memories.values()))
    lines += [
        "",
        "## Memory over a long stream",
        "",
        f"A separate process for each feature kernels choice streams `{options.audio}` looped "
        f"for {some['audio_s'] / 60:.0f} minutes (real speech with pauses) in {CHUNK_MS} ms "
        "chunks; the runs follow one another.",
        "",
    ]
    for kernels, memory in memories.items():
        lines += _memory_details(kernels, memory)
    numba_mib = _numba_mib(memories["numba"])
    numpy_numba = ("never imports numba" if not memories["numpy"]["numba_imported"]
                   else "**imports numba all the same**")
    lines += [
        f"With the numba kernels, numba and the loading of its compiled kernels account for "
        f"{numba_mib:.0f} MiB of the {numba_peak:.0f} MiB peak. With the numpy kernels the "
        f"process {numpy_numba} and peaks at {numpy_peak:.0f} MiB.",
        "",
    ]
    return "\n".join(lines)
