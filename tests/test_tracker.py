"""Tracking: smoothing, the uncertain verdict, emotion changes with hysteresis."""

from __future__ import annotations

import numpy as np

from edge_ser import tracker
from edge_ser.events import UNCERTAIN
from edge_ser.runtime_config import TrackerConfig

LABELS = ("angry", "happy", "neutral", "sad")
ANGRY = np.array([0.7, 0.1, 0.1, 0.1])
SAD = np.array([0.1, 0.1, 0.1, 0.7])


def run(observations, config=TrackerConfig(smoothing=0.0, change_margin=0.1, change_hold=2)):
    """Feed (probs, similarity) observations in one segment; return the changes."""
    state = tracker.init_state(LABELS)
    changes = []
    for probs, similarity in observations:
        smoothed = tracker.smooth(state, config, probs)
        changes.append(tracker.observe(state, config, smoothed, similarity))
    return state, changes


def test_smoothing_is_a_moving_average_that_restarts_per_segment():
    config = TrackerConfig(smoothing=0.75)
    state = tracker.init_state(LABELS)
    tracker.smooth(state, config, ANGRY)
    np.testing.assert_allclose(tracker.smooth(state, config, SAD), 0.75 * ANGRY + 0.25 * SAD)
    tracker.start_segment(state)
    np.testing.assert_allclose(tracker.smooth(state, config, SAD), SAD)


def test_smoothed_probabilities_still_sum_to_one():
    state = tracker.init_state(LABELS)
    rng = np.random.default_rng(0)
    for _ in range(50):
        p = rng.dirichlet(np.ones(4))
        total = tracker.smooth(state, TrackerConfig(smoothing=0.6), p).sum()
        assert abs(total - 1.0) < 1e-12


def test_low_similarity_is_uncertain_rather_than_a_label():
    config = TrackerConfig(min_similarity=0.4)
    assert tracker.verdict(LABELS, ANGRY, 0.39, config) == UNCERTAIN
    assert tracker.verdict(LABELS, ANGRY, 0.41, config) == "angry"


def test_first_confident_observation_sets_the_emotion_at_once():
    state, changes = run([(ANGRY, 0.9)])
    assert changes == [(None, "angry")] and state.current == "angry"


def test_a_change_needs_the_hold_count_in_a_row():
    _, changes = run([(ANGRY, 0.9), (SAD, 0.9), (ANGRY, 0.9), (SAD, 0.9), (SAD, 0.9)])
    assert changes == [(None, "angry"), None, None, None, ("angry", "sad")]


def test_a_small_lead_is_not_a_change():
    close = np.array([0.3, 0.1, 0.25, 0.35])  # sad leads angry by 0.05 < margin 0.1
    state, changes = run([(ANGRY, 0.9)] + [(close, 0.9)] * 5)
    assert changes[1:] == [None] * 5 and state.current == "angry"


def test_uncertain_observations_never_change_the_emotion():
    config = TrackerConfig(smoothing=0.0, min_similarity=0.5, change_hold=1)
    state, changes = run([(ANGRY, 0.9), (SAD, 0.1), (SAD, 0.2)], config)
    assert changes == [(None, "angry"), None, None] and state.current == "angry"


def test_tracked_emotion_persists_across_segments():
    config = TrackerConfig(smoothing=0.0, change_hold=2)
    state = tracker.init_state(LABELS)
    tracker.observe(state, config, tracker.smooth(state, config, ANGRY), 0.9)
    tracker.start_segment(state)
    assert tracker.observe(state, config, tracker.smooth(state, config, SAD), 0.9) is None
    tracker.start_segment(state)
    change = tracker.observe(state, config, tracker.smooth(state, config, SAD), 0.9)
    assert change == ("angry", "sad")
