"""VAD segmentation: hysteresis, padding, minimum speech and silence, maximum length, framing."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from synth import concat, silence, voiced

from edge_ser import vad
from edge_ser.config import ConfigError, load_config
from edge_ser.runtime_config import RuntimeConfig, VadConfig

FRAME_MS = 30
FPV = FRAME_MS // 10  # feature frames per webrtcvad frame


class Scripted:
    """A webrtcvad stand-in answering from a script of voiced (True) / unvoiced frames."""

    def __init__(self, script: str) -> None:
        self.decisions = iter(c == "#" for c in script)

    def is_speech(self, data: bytes, rate_hz: int) -> bool:
        return next(self.decisions)


def run_script(script: str, **overrides) -> list[vad.VadEvent]:
    """Segment a voiced/unvoiced script ('#' / '.', one char per 30 ms frame), then finish."""
    config = dataclasses.replace(VadConfig(frame_ms=FRAME_MS), **overrides)
    state = vad.init_state(config)
    state.detector = Scripted(script)
    events = vad.accept(state, config, np.zeros(len(script) * 480, dtype=np.float32))
    return events + vad.finish(state, config)


def spans(events) -> list[tuple[int, int, int, int]]:
    """(padded start, speech start, speech end, padded end) per segment, in feature frames."""
    out = []
    for opened, closed in zip(events[::2], events[1::2]):
        assert isinstance(opened, vad.SegmentOpen) and isinstance(closed, vad.SegmentClose)
        out.append((opened.start_frame, opened.speech_start_frame, closed.speech_end_frame,
                    closed.end_frame))
    return out


BASE = dict(onset_frames=3, offset_frames=3, pre_pad_ms=60, post_pad_ms=90, min_speech_ms=0,
            min_silence_ms=150)


def test_onset_needs_consecutive_voiced_frames_and_starts_at_the_first():
    script = "." * 10 + "#.#.##." + "." * 20 + "######" + "." * 20
    (seg,) = spans(run_script(script, **BASE))
    start = 10 + 7 + 20  # the first frame of the run of six
    assert seg == ((start - 2) * FPV, start * FPV, (start + 6) * FPV, (start + 6 + 3) * FPV)


def test_short_dropouts_inside_speech_do_not_end_it():
    script = "." * 5 + "####.#####..####" + "." * 20
    (seg,) = spans(run_script(script, **BASE))
    assert seg[1] == 5 * FPV and seg[2] == (5 + 16) * FPV


def test_pause_shorter_than_min_silence_stays_in_one_segment():
    pause = "." * 4  # 120 ms < 150 ms
    script = "." * 5 + "#####" + pause + "#####" + "." * 20
    assert len(spans(run_script(script, **BASE))) == 1


def test_pause_longer_than_min_silence_separates_segments_and_pads_do_not_overlap():
    pause = "." * 6  # 180 ms >= 150 ms
    script = "." * 5 + "#####" + pause + "#####" + "." * 20
    first, second = spans(run_script(script, **{**BASE, "pre_pad_ms": 150}))
    assert first[2] == 10 * FPV and second[1] == 16 * FPV
    assert first[3] == first[2] + 9  # 90 ms post-padding
    assert second[0] == first[3]  # pre-padding clipped at the previous segment's end


def test_speech_shorter_than_min_speech_gives_no_segment():
    script = "." * 5 + "#####" + "." * 20 + "##########" + "." * 20
    segments = spans(run_script(script, **{**BASE, "min_speech_ms": 200}))
    assert [s[1] for s in segments] == [30 * FPV]  # 150 ms dropped, 300 ms kept


def test_long_monologue_is_split_at_the_max_length():
    script = "." * 10 + "#" * 1000 + "." * 20  # 30 s of speech
    segments = spans(run_script(script, **{**BASE, "max_segment_s": 10.0}))
    assert [(s[1], s[2]) for s in segments] == [(30, 1030), (1030, 2030), (2030, 3030)]
    assert segments[0][3] == segments[1][0] == 1030  # contiguous, no padding across a split


def test_open_segment_is_closed_at_the_end_of_input():
    script = "." * 5 + "#" * 30
    (seg,) = spans(run_script(script, **BASE))
    assert seg[2] == 35 * FPV


def test_pending_segment_shorter_than_min_speech_vanishes_at_the_end_of_input():
    assert run_script("." * 5 + "####", **{**BASE, "min_speech_ms": 300}) == []


def test_committed_end_never_passes_the_final_end():
    config = VadConfig(**BASE)
    state = vad.init_state(config)
    script = "." * 5 + "####.##....." + "#" * 8 + "." * 20
    state.detector = Scripted(script)
    committed = []
    for _ in script:
        events = vad.accept(state, config, np.zeros(480, dtype=np.float32))
        if state.phase is vad.Phase.ACTIVE:
            committed.append(vad.committed_end(state, config))
        for event in events:
            if isinstance(event, vad.SegmentClose):
                assert max(committed) <= event.end_frame
                committed = []


@pytest.mark.parametrize("frame_ms", [10, 20, 30])
def test_real_detector_finds_voiced_bursts_in_any_frame_length(frame_ms):
    x = concat(silence(1.0), voiced(1.5), silence(1.0), voiced(1.0, f0_hz=210), silence(1.0))
    config = VadConfig(frame_ms=frame_ms)
    state = vad.init_state(config)
    segments = spans(vad.accept(state, config, x) + vad.finish(state, config))
    assert len(segments) == 2
    true = [(100, 250), (350, 450)]  # feature frames
    for (_, start, end, _), (true_start, true_end) in zip(segments, true):
        assert abs(start - true_start) <= 6  # within 60 ms
        assert true_end - 6 <= end <= true_end + 20  # webrtcvad hangs on up to ~200 ms


@pytest.mark.parametrize("frame_ms", [10, 30])
def test_the_direct_c_call_decides_as_the_webrtcvad_wrapper(frame_ms):
    import webrtcvad

    class Wrapped(webrtcvad.Vad):  # not exactly webrtcvad.Vad: decided through is_speech
        pass

    x = concat(silence(0.7), voiced(1.0), silence(0.4), voiced(0.6, f0_hz=230), silence(0.5))
    pcm = np.clip(np.round(x * 32768.0), -32768, 32767).astype("<i2")
    frame_samples = 16 * frame_ms
    pcm = pcm[:pcm.size // frame_samples * frame_samples]
    direct = vad._decisions(webrtcvad.Vad(2), pcm, frame_samples)
    wrapped = vad._decisions(Wrapped(2), pcm, frame_samples)
    assert direct == wrapped and len(direct) == pcm.size // frame_samples
    assert any(direct) and not all(direct)


def test_silence_gives_no_segment():
    config = VadConfig()
    state = vad.init_state(config)
    x = concat(np.zeros(16000, dtype=np.float32), silence(5.0))
    assert vad.accept(state, config, x) + vad.finish(state, config) == []


def test_reframing_is_independent_of_chunking():
    x = concat(silence(0.5), voiced(1.2), silence(0.8), voiced(0.7), silence(0.5))
    config = VadConfig(frame_ms=20)
    whole = vad.init_state(config)
    expected = vad.accept(whole, config, x) + vad.finish(whole, config)
    rng = np.random.default_rng(3)
    state = vad.init_state(config)
    events, pos = [], 0
    while pos < x.size:
        n = int(rng.choice([1, 7, 159, 481, 3000]))
        events += vad.accept(state, config, x[pos:pos + n])
        pos += n
    assert events + vad.finish(state, config) == expected and len(expected) == 4


@pytest.mark.parametrize("seed", range(5))
def test_the_silence_shortcut_steps_exactly_as_step(seed):
    """accept() skips _step for unvoiced frames between segments; stepping every frame through
    _step must give the same events on the same frames (a late close event is a wrong one),
    and the same state, on scripts with every kind of run."""
    rng = np.random.default_rng(seed)
    script = "".join("".join(rng.choice(["#", "."], size=int(n), p=[q, 1 - q]))
                     for n, q in zip(rng.integers(1, 60, 80), rng.choice([0.1, 0.5, 0.9], 80)))
    config = dataclasses.replace(VadConfig(frame_ms=FRAME_MS), **BASE, max_segment_s=2.0)
    state = vad.init_state(config)
    state.detector = Scripted(script)
    reference = vad.init_state(config)
    got, expected = [], []
    for i, c in enumerate(script):  # one frame per call, so each event's frame is known
        got += [(i, e) for e in vad.accept(state, config, np.zeros(480, dtype=np.float32))]
        stepped: list[vad.VadEvent] = []
        vad._step(reference, config, c == "#", stepped)
        expected += [(i, e) for e in stepped]
    assert got == expected and len(expected) > 4

    def fields(s: vad.VadState) -> dict:
        return {k: v for k, v in vars(s).items() if k not in ("detector", "tail")}

    assert fields(state) == fields(reference)


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="vad.aggressiveness"):
        load_config(RuntimeConfig, overrides=["vad.aggressiveness=4"])
    with pytest.raises(ConfigError, match="vad.frame_ms"):
        load_config(RuntimeConfig, overrides=["vad.frame_ms=25"])
    with pytest.raises(ConfigError, match="max_segment_s"):
        load_config(RuntimeConfig, overrides=["vad.max_segment_s=1", "vad.min_speech_ms=2000"])
    with pytest.raises(ConfigError, match="unknown key 'vad.onset'"):
        load_config(RuntimeConfig, overrides=["vad.onset=3"])
