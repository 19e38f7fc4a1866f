"""The per-recording summary on hand-made results: shares, negative turns, the longest negative
stretch and the trend."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_ser.batch.paths import safe_name
from edge_ser.batch.summary import RoleChange, RoleSegment, summarize
from edge_ser.events import EmotionChange, SegmentResult

LABELS = ("angry", "happy", "neutral", "sad")


def seg(role: str, start_s: float, end_s: float, label: str, channel: int = 0) -> RoleSegment:
    probs = {name: (0.7 if name == label else 0.1) for name in LABELS}
    return RoleSegment(role, SegmentResult(start_s=start_s, end_s=end_s, label=label,
                                           probs=probs, confidence=0.7, similarity=0.8,
                                           channel=channel, segment=0, windows=1, split=False))


def change(role: str, time_s: float, previous: str | None, label: str) -> RoleChange:
    return RoleChange(role, EmotionChange(start_s=time_s, end_s=time_s + 2, label=label,
                                          probs={}, confidence=0.6, similarity=0.8, channel=1,
                                          segment=0, previous=previous))


def test_shares_stretches_turns_and_a_rising_trend():
    segments = [seg("agent", 0, 10, "neutral"), seg("customer", 10, 20, "neutral", 1),
                seg("customer", 40, 50, "angry", 1), seg("customer", 52, 60, "sad", 1),
                seg("customer", 62, 64, "neutral", 1), seg("customer", 70, 89, "angry", 1)]
    changes = [change("customer", 40, "neutral", "angry"), change("customer", 62, "sad",
                                                                  "neutral"),
               change("customer", 70, "neutral", "angry")]
    summary = summarize(segments, changes, ["agent", "customer"], LABELS, duration_s=90.0)
    customer = summary["per_role"]["customer"]
    assert customer["speech_s"] == 49
    assert customer["share"]["angry"] == pytest.approx(29 / 49, abs=1e-4)
    assert customer["negative_share"] == pytest.approx(37 / 49, abs=1e-4)
    assert sum(customer["share"].values()) == pytest.approx(1.0, abs=1e-3)
    # 40-60 is angry then sad across a pause; the neutral segment at 62 breaks the run
    assert customer["longest_negative"] == {"role": "customer", "start_s": 40, "end_s": 60,
                                            "duration_s": 20}
    assert summary["longest_negative"] == customer["longest_negative"]
    assert [(t["time_s"], t["to"]) for t in summary["negative_turns"]] == [(40, "angry"),
                                                                          (70, "angry")]
    assert summary["per_role"]["agent"]["longest_negative"] is None
    assert customer["trend"]["negative_share_by_part"] == [0.0, 1.0, pytest.approx(19 / 21,
                                                                                   abs=1e-4)]
    assert customer["trend"]["direction"] == "rising"
    assert summary["per_role"]["agent"]["trend"]["direction"] == "unknown"


def test_a_call_that_calms_down_is_falling_and_one_without_speech_is_empty():
    segments = [seg("speaker", 1, 9, "angry"), seg("speaker", 12, 18, "neutral"),
                seg("speaker", 21, 29, "happy")]
    summary = summarize(segments, [], ["speaker"], LABELS, duration_s=30.0)
    assert summary["trend"]["direction"] == "falling"
    empty = summarize([], [], ["agent", "customer"], LABELS, duration_s=30.0)
    assert empty["speech_s"] == 0 and empty["longest_negative"] is None
    assert empty["per_role"]["agent"]["share"]["neutral"] == 0.0
    assert empty["trend"]["negative_share_by_part"] == [None, None, None]


@given(st.text(max_size=300))
def test_safe_names_are_plain_file_names(text):
    name = safe_name(text)
    assert 0 < len(name) <= 80 and name not in (".", "..") and not name.startswith(".")
    assert all(c.isascii() and (c.isalnum() or c in "._-") for c in name)
    assert safe_name(name) == name
