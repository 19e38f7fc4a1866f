import numpy as np
import pytest

from edge_ser.metrics import format_scores, score

LABELS = ("angry", "happy", "neutral", "sad")


def test_known_answer():
    ref = np.array([0, 0, 0, 0, 1, 1, 2, 3])
    hyp = np.array([0, 0, 0, 1, 1, 0, 2, 2])
    s = score(ref, hyp, LABELS)
    assert s.wa == pytest.approx(5 / 8)
    assert s.recall == pytest.approx((0.75, 0.5, 1.0, 0.0))
    assert s.ua == pytest.approx((0.75 + 0.5 + 1.0 + 0.0) / 4)
    # F1: angry p=3/4 r=3/4; happy p=1/2 r=1/2; neutral p=1/2 r=1; sad 0
    assert s.macro_f1 == pytest.approx((0.75 + 0.5 + 2 / 3 + 0) / 4)
    assert s.confusion[0] == (3, 1, 0, 0)
    assert sum(map(sum, s.confusion)) == 8
    assert "UA 56.2%" in format_scores(s)


def test_ua_ignores_classes_absent_from_references():
    s = score(np.array([0, 0, 1]), np.array([0, 0, 1]), LABELS)
    assert s.ua == 1.0


def test_ua_is_chance_for_constant_predictions():
    ref = np.repeat(np.arange(4), [50, 10, 10, 30])
    s = score(ref, np.zeros_like(ref), LABELS)
    assert s.ua == pytest.approx(0.25)
    assert s.wa == pytest.approx(0.5)


def test_rejects_mismatched_or_empty():
    with pytest.raises(ValueError):
        score(np.array([0, 1]), np.array([0]), LABELS)
    with pytest.raises(ValueError):
        score(np.array([], dtype=int), np.array([], dtype=int), LABELS)
