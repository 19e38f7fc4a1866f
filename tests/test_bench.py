"""The benchmark's building blocks: the feature kernels variants, the looped stream, the memory
import table, the report, the silero peer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fakes import fake_recognizer
from synth import DEMO_AUDIO, concat, silence

from edge_ser.audio import load_mono_16k
from edge_ser.bench.memory import import_footprint, looped_chunks
from edge_ser.bench.stream_bench import BenchOptions, numpy_kernels_identical, with_kernels


def test_numpy_kernels_give_the_numba_features_bit_for_bit():
    assert numpy_kernels_identical(load_mono_16k(DEMO_AUDIO)[: 5 * 16_000])


def test_with_kernels_shares_the_model_and_changes_only_the_kernels():
    recognizer = with_kernels(fake_recognizer(), "numba")
    on_numpy = with_kernels(recognizer, "numpy")
    assert on_numpy.backend is recognizer.backend and on_numpy.scorer is recognizer.scorer
    assert on_numpy.config.features.kernels == "numpy"
    assert on_numpy.config.vad == recognizer.config.vad
    assert recognizer.config.features.kernels == "numba"
    assert recognizer.create_stream()._features.kernels == "numba"
    assert on_numpy.create_stream()._features.kernels == "numpy"


def test_import_table_has_numba_only_for_the_numba_kernels():
    labels = {kernels: [label for label, _ in import_footprint(kernels)]
              for kernels in ("numpy", "numba")}
    assert not any("numba" in label for label in labels["numpy"])
    assert "numba" in labels["numba"]
    assert "edge_ser.features (numba kernels loaded)" in labels["numba"]
    assert "edge_ser.features (numpy kernels loaded)" in labels["numpy"]


def _memory_figures(peak_mib: float, kernels: str) -> dict:
    footprint = [["python + numpy", 30.0], ["onnxruntime", 60.0]]
    if kernels == "numba":
        footprint.append(["numba", 150.0])
    footprint += [[f"edge_ser.features ({kernels} kernels loaded)", peak_mib - 20],
                  ["rest of the runtime", peak_mib - 10], ["model package loaded", peak_mib - 5]]
    return {"kernels": kernels, "footprint": footprint, "rss_start_mb": 30.0,
            "rss_imported_mb": peak_mib - 10, "rss_loaded_mb": peak_mib - 5,
            "trace": [[5.0, peak_mib - 1], [60.0, peak_mib - 0.5]], "rss_end_mb": peak_mib - 1,
            "rss_peak_mb": peak_mib, "audio_s": 3600.0, "elapsed_s": 12.0, "segments": 900,
            "rtf": 0.0033, "numba_imported": kernels == "numba"}


def test_report_states_the_memory_target_for_each_kernels_choice():
    from edge_ser.bench.report import render

    options = BenchOptions(audio=Path("demo.flac"), labels=None, model=None,
                           backend="onnxruntime", precision="int8", minutes=10.0,
                           memory_minutes=60.0, repeats=3, command="edge-ser bench stream")
    facts = {"cpu": "cpu", "load": "0.00", "python": "3.x", "versions": "numpy x"}
    rtf = {key: 0.003 for key in ("rtf", "rtf_48k", "numpy_rtf", "silero_rtf", "egemaps_rtf")}
    figures = {
        "audio_s": 600.0, **rtf, **{key + "_cpu": value for key, value in rtf.items()},
        "chunk_ms": (0.2, 1.0, 2.0), "chunk_cpu_ms": (0.2, 0.9, 1.5),
        "numpy_chunk_ms": (0.3, 1.1, 2.1), "segments_per_pass": 100,
        "stages_ms_per_s": {"features": 1.0, "total": 3.0},
        "features_ms_per_s": {"numba": 1.0, "numpy": 1.4}, "numpy_identical": True,
        "memory": {"numba": _memory_figures(280.0, "numba"),
                   "numpy": _memory_figures(130.0, "numpy")},
    }
    report = render(options, facts, figures)
    assert ("| resident memory, peak over a 60 min stream, numba feature kernels | 280 MiB | "
            "<= 200 MB (190.7 MiB) | **no** |") in report
    assert ("| resident memory, peak over a 60 min stream, numpy feature kernels | 130 MiB | "
            "<= 200 MB (190.7 MiB) | yes |") in report
    assert "| resident memory growth from minute 5 to 60, numba feature kernels | +0.5 MiB" \
        in report
    assert "| resident memory growth from minute 5 to 60, numpy feature kernels | +0.5 MiB" \
        in report
    assert "### numba feature kernels" in report and "### numpy feature kernels" in report
    assert "costs 150 MiB of peak resident memory" in report
    assert "the process never imports numba and peaks at 130 MiB" in report


def test_looped_chunks_repeat_the_recording_without_holding_it_all():
    audio = np.arange(10, dtype=np.float32)
    chunks = list(looped_chunks(audio, 25, 4))
    assert [c.size for c in chunks] == [4, 4, 4, 4, 4, 4, 1]
    assert np.array_equal(np.concatenate(chunks), np.resize(audio, 25))


def test_silero_peer_hears_speech_not_silence():
    pytest.importorskip("silero_vad")
    from edge_ser.bench.peers import SileroVad

    vad = SileroVad()
    x = concat(silence(1.0), load_mono_16k(DEMO_AUDIO)[12_000:40_000], silence(1.0))
    probs = []
    for pos in range(0, x.size, 1000):  # chunks that are not multiples of its window
        probs += vad.accept(x[pos:pos + 1000])
    assert len(probs) == x.size // 512
    assert max(probs[:25]) < 0.5 and max(probs[35:80]) > 0.8


@pytest.mark.slow
def test_bench_stream_writes_a_report(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from edge_ser.package import DEFAULT_PACKAGE

    if not (DEFAULT_PACKAGE / "model.json").is_file():
        pytest.skip(f"no bundled model package at {DEFAULT_PACKAGE}")
    pytest.importorskip("silero_vad")
    pytest.importorskip("opensmile")
    out = tmp_path / "bench.md"
    done = subprocess.run(
        [sys.executable, "main.py", "bench", "stream", "--minutes", "0.2", "--memory-minutes",
         "0.5", "--repeats", "1", "--out", str(out)],
        cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = out.read_text()
    for heading in ("## Targets", "## Throughput on the same audio", "## What numba buys",
                    "## Speech end to final result", "## Memory over a long stream",
                    "### numba feature kernels", "### numpy feature kernels"):
        assert heading in report
    assert "silero-vad" in report and "eGeMAPS" in report
