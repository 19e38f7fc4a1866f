"""The closing summary of `stream` and `--mic` counts what the segment lines above it show."""

from __future__ import annotations

from edge_ser.console import Summary
from edge_ser.events import EmotionChange, SegmentResult, WindowUpdate

PROBS = {"angry": 0.1, "happy": 0.1, "neutral": 0.1, "sad": 0.7}


def segment(index: int, label: str) -> SegmentResult:
    return SegmentResult(start_s=2.0 * index, end_s=2.0 * index + 1.5, label=label, probs=PROBS,
                         confidence=0.7, similarity=0.8, channel=0, segment=index, windows=3,
                         split=False)


def test_changes_are_label_changes_between_consecutive_segment_lines():
    summary = Summary()
    labels = ["sad", "neutral", "happy", "happy", "angry", "angry", "sad", "sad", "neutral"]
    for i, label in enumerate(labels):
        # the tracker's own change events (window level, the first included) are not counted
        summary.add([EmotionChange(start_s=2.0 * i, end_s=2.0 * i + 1.0, label=label,
                                   probs=PROBS, confidence=0.7, similarity=0.8, channel=0,
                                   segment=i, previous=None),
                     WindowUpdate(start_s=2.0 * i, end_s=2.0 * i + 1.0, label=label, probs=PROBS,
                                  confidence=0.7, similarity=0.8, channel=0, segment=i,
                                  smoothed=PROBS, tracked=label),
                     segment(i, label)])
    assert summary.changes == 5  # sad>neutral, neutral>happy, happy>angry, angry>sad, sad>neutral
    assert summary.segments == 9 and summary.windows == 9
    assert "; 5 label changes between speech segments" in summary.text(20.0)


def test_one_segment_or_one_label_throughout_is_no_change():
    summary = Summary()
    summary.add([segment(0, "happy")])
    assert summary.changes == 0
    summary.add([segment(1, "happy"), segment(2, "happy")])
    assert summary.changes == 0 and "0 label changes" in summary.text(6.0)
