"""The benchmark's building blocks: the numpy front end, the looped stream, the silero peer."""

from __future__ import annotations

import numpy as np
import pytest
from synth import DEMO_AUDIO, concat, silence

from edge_ser import features
from edge_ser.audio import load_mono_16k
from edge_ser.bench.memory import looped_chunks
from edge_ser.bench.numpy_frontend import log_mel_frames_numpy, numpy_features
from edge_ser.contract import num_frames


def test_numpy_front_end_gives_the_shipped_features_bit_for_bit():
    x = load_mono_16k(DEMO_AUDIO)[: 5 * 16_000]
    assert np.array_equal(log_mel_frames_numpy(x, num_frames(x.size)), features.log_mel(x))
    state = features.init_state()
    with numpy_features():
        streamed = np.concatenate([features.accept(state, x[i:i + 1234])
                                   for i in range(0, x.size, 1234)])
    assert features._log_mel_frames is not log_mel_frames_numpy  # restored
    assert np.array_equal(streamed, features.log_mel(x))


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
                    "## Speech end to final result", "## Memory over a long stream"):
        assert heading in report
    assert "silero-vad" in report and "eGeMAPS" in report
