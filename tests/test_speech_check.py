"""Only speech gets an emotion: tones, DTMF, noise, hum, square waves and music are reported as
non-speech (label None, speech false, a reason) by the bundled model's stream, real speech keeps
its emotions, any chunking gives the same results, and the check's config keys are validated.

The signals here are written independently of `tools/nonspeech.py` (which trained the check),
with their own frequencies and levels.
"""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import soundfile as sf
from synth import DEMO_AUDIO, DEMO_LABELS

from edge_ser.audio import load_mono_16k
from edge_ser.config import ConfigError, load_config
from edge_ser.console import format_segment, read_references
from edge_ser.events import EmotionChange, SegmentResult, WindowUpdate
from edge_ser.recognizer import Recognizer
from edge_ser.runtime_config import RuntimeConfig, SpeechCheckConfig
from edge_ser.speech_check import DESCRIPTORS, WEIGHTS_PATH, SpeechCheck, describe
from edge_ser_export import cli

RATE_HZ = 16_000


def _t(seconds: float) -> np.ndarray:
    return np.arange(int(seconds * RATE_HZ)) / RATE_HZ


def _dtmf(seconds: float) -> np.ndarray:
    """Digits 1-9-5-0 repeated: 90 ms tones with 70 ms gaps."""
    pairs = ((697, 1209), (852, 1477), (770, 1336), (941, 1336))
    tone_t = _t(0.09)
    gap = np.zeros(int(0.07 * RATE_HZ))
    parts = []
    while sum(p.size for p in parts) < seconds * RATE_HZ:
        for lo, hi in pairs:
            parts += [0.3 * (np.sin(2 * np.pi * lo * tone_t) + np.sin(2 * np.pi * hi * tone_t)),
                      gap]
    return np.concatenate(parts)[:int(seconds * RATE_HZ)]


def _melody(seconds: float) -> np.ndarray:
    """A plucked arpeggio (C-E-G-C, 250 ms notes, 6 harmonics)."""
    note_t = _t(0.25)
    notes = []
    for f0 in (262.0, 330.0, 392.0, 523.0) * int(seconds / 1.0 + 1):
        note = sum(0.6 ** k * np.sin(2 * np.pi * (k + 1) * f0 * note_t) for k in range(6))
        notes.append(0.2 * note * np.exp(-4 * note_t))
    return np.concatenate(notes)[:int(seconds * RATE_HZ)]


SIGNALS = {
    "square wave, full scale": lambda s: np.sign(np.sin(2 * np.pi * 200 * _t(s))),
    "sine 1 kHz": lambda s: 0.5 * np.sin(2 * np.pi * 1000 * _t(s)),
    "white noise": lambda s: 0.2 * np.random.default_rng(3).standard_normal(_t(s).size),
    "mains buzz 50 Hz": lambda s: sum(0.1 / k * np.sin(2 * np.pi * 50 * k * _t(s))
                                      for k in range(1, 40, 2)),
    "dtmf digits": _dtmf,
    "clipped sine": lambda s: np.clip(8 * np.sin(2 * np.pi * 440 * _t(s)), -0.9, 0.9),
    "melody": _melody,
}


@functools.lru_cache(maxsize=1)
def _recognizer() -> Recognizer:
    return Recognizer.from_options()


def _events(recognizer: Recognizer, x: np.ndarray, chunk: int | None = None) -> list:
    stream = recognizer.create_stream(RATE_HZ)
    x = np.asarray(x, dtype=np.float32)
    chunk = chunk or x.size
    events = []
    for pos in range(0, x.size, chunk):
        events += stream.accept_waveform(x[pos:pos + chunk])
    return events + stream.input_finished()


@pytest.mark.parametrize("name", list(SIGNALS))
def test_non_speech_gets_no_emotion(name):
    events = _events(_recognizer(), SIGNALS[name](8.0))
    segments = [e for e in events if isinstance(e, SegmentResult)]
    windows = [e for e in events if isinstance(e, WindowUpdate)]
    # webrtcvad calls these speech, so the stream does open segments on them
    assert segments or name == "white noise", "the VAD found nothing to judge"
    for e in segments + windows:
        assert e.label is None and e.speech is False, (name, e.start_s, e.speech_score)
        assert e.reason and e.speech_score < 0.5
    assert not [e for e in events if isinstance(e, EmotionChange)]


def test_without_the_check_a_square_wave_gets_an_emotion():
    """What the check fixes: switched off, the full-scale square wave is tagged."""
    config = RuntimeConfig(speech_check=SpeechCheckConfig(enabled=False))
    recognizer = Recognizer.from_options(config=config)
    assert recognizer.speech_check is None
    segments = [e for e in _events(recognizer, SIGNALS["square wave, full scale"](8.0))
                if isinstance(e, SegmentResult)]
    assert segments and all(s.label in recognizer.labels for s in segments)


def test_real_speech_keeps_its_emotions():
    references = read_references(DEMO_LABELS)
    results = [e for e in _recognizer().process_file(DEMO_AUDIO) if e.type == "segment"]
    assert len(results) == len(references)
    for result in results:
        assert result.speech and result.label in _recognizer().labels and result.reason is None
    # the check passes every turn, so each keeps the label it gets with the check off
    unchecked = Recognizer.from_options(config=RuntimeConfig(
        speech_check=SpeechCheckConfig(enabled=False)))
    plain = [e for e in unchecked.process_file(DEMO_AUDIO) if e.type == "segment"]
    assert [r.label for r in results] == [r.label for r in plain]
    hits = sum(r.label == ref.emotion for r, ref in zip(results, references))
    assert hits >= 9, f"{hits}/12 demo turns tagged with their known emotion (chance: 3)"


def _demo_with_tones() -> np.ndarray:
    """The demo's first three turns, a melody and DTMF spliced into its pauses."""
    demo = load_mono_16k(DEMO_AUDIO)
    cut1, cut2 = int(3.2 * RATE_HZ), int(6.0 * RATE_HZ)
    return np.concatenate((demo[:cut1], _melody(3.0), demo[cut1:cut2], _dtmf(3.0),
                           demo[cut2:int(9.0 * RATE_HZ)])).astype(np.float32)


def test_any_chunking_gives_the_same_results_with_the_check_on():
    x = _demo_with_tones()
    recognizer = _recognizer()
    offline = [e.to_dict() for e in _events(recognizer, x)]
    segments = [e for e in offline if e["type"] == "segment"]
    assert {s["speech"] for s in segments} == {True, False}  # both kinds are in the test
    for chunk in (160, 1_601, 7_777):
        assert [e.to_dict() for e in _events(recognizer, x, chunk)] == offline, chunk


def test_non_speech_json_and_console_line():
    events = _events(_recognizer(), SIGNALS["square wave, full scale"](4.0))
    segment = next(e for e in events if isinstance(e, SegmentResult))
    record = json.loads(segment.to_json())
    assert record["version"] == 2 and record["label"] is None and record["speech"] is False
    assert record["reason"] == segment.reason and 0 <= record["speech_score"] < 0.5
    line = format_segment(segment)
    assert "non-speech" in line and segment.reason in line and "sad" not in line


def test_batch_writes_non_speech_segments_without_an_emotion(tmp_path):
    demo = load_mono_16k(DEMO_AUDIO)[:int(5.5 * RATE_HZ)]
    x = np.concatenate((demo, SIGNALS["square wave, full scale"](4.0) * 0.5,
                        np.zeros(RATE_HZ))).astype(np.float32)
    sf.write(tmp_path / "call.wav", x, RATE_HZ)
    out = tmp_path / "out"
    assert cli.main(["batch", str(tmp_path / "call.wav"), "--out", str(out), "--quiet"]) == 0
    folder = out / "recordings" / "call"
    records = [json.loads(line) for line in (folder / "segments.jsonl").read_text().splitlines()]
    assert [r["speech"] for r in records] == [True, True, False]
    assert records[-1]["label"] is None and records[0]["label"] is not None
    rows = (folder / "segments.csv").read_text().splitlines()
    assert rows[0].endswith(",speech,reason") and rows[-1].split(",")[5] == ""
    assert (folder / "segments.rttm").read_text().splitlines()[-1].split()[6] == "non-speech"
    summary = json.loads((folder / "summary.json").read_text())
    square = records[-1]["end_s"] - records[-1]["start_s"]
    assert summary["non_speech_s"] == pytest.approx(square, abs=1e-3)
    assert summary["speech_s"] == pytest.approx(
        sum(r["end_s"] - r["start_s"] for r in records[:2]), abs=1e-3)


def test_config_keys_are_validated():
    config = load_config(RuntimeConfig, None, ["speech_check.min_score=0.8",
                                               "speech_check.enabled=false"])
    assert config.speech_check == SpeechCheckConfig(enabled=False, min_score=0.8)
    for override, words in (("speech_check.min_score=1.5", "out of range"),
                            ("speech_check.min_score=-0.1", "out of range"),
                            ("speech_check.enabled=maybe", "true or false"),
                            ("speech_check.threshold=0.5", "unknown key")):
        with pytest.raises(ConfigError, match=words) as info:
            load_config(RuntimeConfig, None, [override])
        assert override.split("=")[0] in str(info.value)


def test_the_shipped_check_loads_without_pickle_and_names_its_provenance(tmp_path):
    check = SpeechCheck.load()
    assert check.weights.shape == (2 * len(DESCRIPTORS),)
    assert check.provenance["trained_by"] == "tools/train_speech_check.py"
    assert "emodb:09" in check.provenance["speech"]["held_out_speakers"]
    with np.load(WEIGHTS_PATH, allow_pickle=False) as data:
        np.savez(tmp_path / "other.npz", **{k: data[k] for k in data.files if k != "mean"},
                 mean=np.zeros(3))
    with pytest.raises(ValueError, match="other.npz: 'mean' has shape"):
        SpeechCheck.load(tmp_path / "other.npz")


def test_descriptors_need_two_frames_and_judging_fewer_is_speech():
    with pytest.raises(ValueError, match="at least 2 frames"):
        describe(np.zeros((1, 64), dtype=np.float32))
    verdict = SpeechCheck.load().judge(np.zeros((1, 64), dtype=np.float32), 0.5)
    assert verdict.speech and verdict.reason is None


def test_a_turn_with_a_melody_after_it_is_told_apart_in_two_parts():
    from edge_ser import speech_spans
    from edge_ser.features import log_mel

    turn = load_mono_16k(DEMO_AUDIO)[int(0.74 * RATE_HZ):int(2.6 * RATE_HZ)]
    frames = log_mel(np.concatenate((turn, _melody(3.0))).astype(np.float32))
    check = SpeechCheck.load()
    state = speech_spans.init_state(0)
    for end in range(7, frames.shape[0] + 7, 7):  # frames arrive a few at a time
        speech_spans.advance(state, check, frames[:end])
    found = speech_spans.segment_parts(state, check, frames, frames.shape[0], 0.5)
    assert len(found) == 2 and found[0][0] == 0 and found[-1][1] == frames.shape[0]
    assert found[0][1] == found[1][0]
    assert abs(found[1][0] - turn.size / 160) <= 50  # within one 0.5 s block of the join
    assert found[0][2].speech and not found[1][2].speech and found[1][2].reason
    # a window inside the melody is non-speech, one on the turn is speech
    assert not speech_spans.window(state, check, frames, 250, 450, 0.5).speech
    assert speech_spans.window(state, check, frames, 0, 180, 0.5).speech
