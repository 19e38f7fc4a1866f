"""`python main.py --mic` end to end, through a real audio stack: PulseAudio (a pipe as the
default source) -> ALSA's pulse plugin -> PortAudio -> sounddevice -> the engine.

The demo conversation is played into the microphone in real time, with silence before and
after; the command runs with --max-seconds and --jsonl, and its segments and labels are checked
against the recording's known labels and against the same audio streamed from a file.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from pulse_mic import PulseMicrophone, missing_requirements
from synth import DEMO_AUDIO, feed, read_labels

from edge_ser.audio import load_mono_16k
from edge_ser.events import read_jsonl

REPO = Path(__file__).resolve().parent.parent
LEAD_S = 0.99  # a whole number of VAD frames, so the file pass below frames identically
TAIL_S = 2.0


@pytest.fixture
def microphone(tmp_path):
    reason = missing_requirements()
    if reason:
        pytest.skip(reason)
    mic = PulseMicrophone(tmp_path / "pulse")
    mic.start()
    try:
        yield mic
    finally:
        mic.stop()


@pytest.fixture(scope="module")
def recognizer():
    from edge_ser.package import DEFAULT_PACKAGE

    if not (DEFAULT_PACKAGE / "model.json").is_file():
        pytest.skip(f"no bundled model package at {DEFAULT_PACKAGE}")
    from edge_ser.recognizer import Recognizer

    return Recognizer.from_options()


def _wait_for_line(stream, text: str, timeout_s: float) -> list[str]:
    """Read lines until one contains `text`; returns the lines read (fails on timeout)."""
    lines: list[str] = []
    found = threading.Event()

    def reader() -> None:
        for line in stream:
            lines.append(line)
            if text in line:
                found.set()
                return

    threading.Thread(target=reader, daemon=True).start()
    if not found.wait(timeout_s):
        pytest.fail(f"no {text!r} line within {timeout_s} s; got: {''.join(lines)[-2000:]}")
    return lines


@pytest.mark.slow
def test_live_tagging_from_a_microphone(microphone, recognizer, tmp_path):
    speech = load_mono_16k(DEMO_AUDIO)
    played = np.concatenate((np.zeros(round(LEAD_S * 16_000), dtype=np.float32), speech,
                             np.zeros(round(TAIL_S * 16_000), dtype=np.float32)))
    jsonl = tmp_path / "live.jsonl"
    max_s = played.size / 16_000 + 3.0
    proc = subprocess.Popen(
        [sys.executable, "main.py", "--mic", "--max-seconds", f"{max_s:.1f}", "--jsonl",
         str(jsonl), "--quiet"],
        cwd=REPO, env=microphone.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        _wait_for_line(proc.stderr, "listening on", timeout_s=120)
        microphone.play(played)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err[-2000:]

    live = [r for r in read_jsonl(jsonl) if r["type"] == "segment"]
    known = read_labels()
    # every turn found, where it was spoken (times from the start of capture)
    assert len(live) == len(known), [(r["start_s"], r["end_s"]) for r in live]
    for segment, turn in zip(live, known):
        assert abs(segment["start_s"] - LEAD_S - float(turn["start_s"])) <= 0.3
        assert abs(segment["end_s"] - LEAD_S - float(turn["end_s"])) <= 0.4
    # one printed line per segment, carrying its label
    printed = [line for line in out.splitlines() if line.strip()]
    assert len(printed) == len(live)
    assert all(r["label"] in line for r, line in zip(live, printed))

    # the labels: as good as the same audio streamed from a file, and mostly right
    offline = [e for e in feed(recognizer.create_stream(16_000), played, [1600])
               if e.type == "segment"]
    assert len(offline) == len(live)
    for a, b in zip(live, offline):  # the microphone delivered the same samples, in order
        assert abs(a["start_s"] - b.start_s) <= 0.05 and abs(a["end_s"] - b.end_s) <= 0.05
    agree_file = sum(a["label"] == b.label for a, b in zip(live, offline))
    assert agree_file >= len(live) - 1
    correct = sum(r["label"] == t["emotion"] for r, t in zip(live, known))
    offline_correct = sum(e.label == t["emotion"] for e, t in zip(offline, known))
    assert correct >= offline_correct - 1
    assert correct >= len(known) // 2
