"""`bench batch`: a tiny run through the real batch command, checking the report's fields."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import soundfile as sf
from synth import DEMO_AUDIO

from edge_ser.audio import load_mono_16k, resample
from edge_ser.bench import batch_bench
from edge_ser.bench.batch_bench import BatchBenchOptions, Variant, benchmark, replicate


def _stereo_call(path) -> None:
    x = resample(load_mono_16k(DEMO_AUDIO)[: 8 * 16_000], 16_000, 8_000)
    quiet = np.zeros_like(x)
    left = np.concatenate((x[: x.size // 2], quiet[: x.size - x.size // 2]))
    right = np.concatenate((quiet[: x.size // 2], x[x.size // 2:]))
    sf.write(path, np.stack((left, right), axis=1) * 0.9, 8_000, subtype="ULAW")


def test_replicate_copies_round_robin_up_to_the_asked_length(tmp_path):
    call = tmp_path / "call.wav"
    _stereo_call(call)
    copies, total = replicate([call], 20 / 60, tmp_path / "copies")
    assert len(copies) == 3 and len({c.name for c in copies}) == 3
    assert abs(total - 24.0) < 0.01


def test_bench_batch_reports_throughput_memory_and_the_peer(tmp_path):
    call = tmp_path / "call.wav"
    _stereo_call(call)
    egemaps = importlib.util.find_spec("opensmile") is not None
    variants = (Variant("chunk calls", ("batch.encoder_calls=chunk",)),)
    report, figures = benchmark(BatchBenchOptions(recordings=[call], minutes=0.1, workers=(1,),
                                                  repeats=1, egemaps=egemaps, command="x",
                                                  variants=variants))
    run, chunked = figures["batch"]
    assert (run["variant"], chunked["variant"]) == ("default", "chunk calls")
    for r in (run, chunked):
        assert r["workers"] == 1 and abs(r["audio_s"] - 8.0) < 0.01
        for key in ("x_realtime", "x_realtime_per_worker", "x_realtime_end_to_end",
                    "audio_s_per_cpu_s", "worker_peak_rss_mb"):
            assert r[key] > 0, key
    assert figures["format"] == "8000 Hz, 2 channel(s), ULAW"
    assert "| configuration | workers |" in report
    assert "| default | 1 |" in report and "| chunk calls | 1 |" in report
    if egemaps:
        assert figures["egemaps"]["segments"] >= 1
        assert figures["edge_ser_vs_egemaps"] > 0
        assert "eGeMAPS" in report


def test_the_in_memory_outputs_variant_writes_to_the_memory_folder_and_cleans_up(tmp_path,
                                                                                monkeypatch):
    call = tmp_path / "call.wav"
    _stereo_call(call)
    ram = tmp_path / "ram"  # stands in for /dev/shm
    ram.mkdir()
    monkeypatch.setattr(batch_bench, "MEMORY_ROOT", ram)
    seen: list[Path] = []
    real_run = batch_bench.run_batch_once

    def run_once(inputs, out, *args, **kwargs):
        seen.append(out)
        return real_run(inputs, out, *args, **kwargs)

    monkeypatch.setattr(batch_bench, "run_batch_once", run_once)
    report, figures = benchmark(BatchBenchOptions(
        recordings=[call], minutes=0.1, workers=(1,), repeats=1, egemaps=False, command="x",
        variants=(Variant("outputs in memory", outputs_in_memory=True),)))
    default, in_memory = figures["batch"]
    assert in_memory["variant"] == "outputs in memory" and in_memory["x_realtime"] > 0
    assert ram not in seen[0].parents and ram in seen[1].parents
    assert list(ram.iterdir()) == []  # removed after the run
    assert figures["storage"]["disk_us_per_file"] > 0
    assert figures["storage"]["memory_us_per_file"] > 0
    assert "Storage: creating, writing (2 kB) and renaming one file costs" in report
