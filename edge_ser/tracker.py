"""Emotion tracking: smoothing over windows, the uncertain verdict, changes with hysteresis.

An *observation* is one window of a segment (or, for a segment shorter than a window, the
segment's own result). Within a segment the window probabilities are smoothed with a moving
average (`smoothing` is the weight of the past; it restarts at each segment, since a pause lies
between segments). The tracked emotion persists across segments and changes only when:

- the observation is not uncertain (memory-bank similarity at least `min_similarity`),
- its smoothed best class differs from the tracked one and leads it by `change_margin`,
- and that holds for `change_hold` observations in a row.

The first confident observation sets the tracked emotion at once (there is nothing to hold
against). Probabilities are numpy (K,) float arrays in the order of the package's labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_ser.events import UNCERTAIN
from edge_ser.runtime_config import TrackerConfig


@dataclass
class TrackerState:
    labels: tuple[str, ...]
    current: str | None = None
    candidate: str | None = None
    candidate_count: int = 0
    smoothed: np.ndarray | None = None  # (K,) float64 over the current segment's windows


def init_state(labels: tuple[str, ...]) -> TrackerState:
    """A fresh tracker for a new audio source."""
    return TrackerState(labels=tuple(labels))


def verdict(labels: tuple[str, ...], probs: np.ndarray, similarity: float,
            config: TrackerConfig) -> str:
    """The best class of `probs`, or UNCERTAIN when `similarity` is below the threshold."""
    if similarity < config.min_similarity:
        return UNCERTAIN
    return labels[int(np.argmax(probs))]


def start_segment(state: TrackerState) -> None:
    """A new speech segment: smoothing restarts, the tracked emotion stays."""
    state.smoothed = None


def smooth(state: TrackerState, config: TrackerConfig, probs: np.ndarray) -> np.ndarray:
    """Fold one window's (K,) probabilities into the segment's moving average; returns it."""
    probs = np.asarray(probs, dtype=np.float64)
    if state.smoothed is None:
        state.smoothed = probs.copy()
    else:
        state.smoothed = config.smoothing * state.smoothed + (1.0 - config.smoothing) * probs
    return state.smoothed


def observe(state: TrackerState, config: TrackerConfig, smoothed: np.ndarray,
            similarity: float) -> tuple[str | None, str] | None:
    """Judge one observation; returns (previous, new) when the tracked emotion changes."""
    label = verdict(state.labels, smoothed, similarity, config)
    if label == UNCERTAIN or label == state.current:
        state.candidate, state.candidate_count = None, 0
        return None
    if state.current is None:
        state.current = label
        state.candidate, state.candidate_count = None, 0
        return None, label
    lead = smoothed[state.labels.index(label)] - smoothed[state.labels.index(state.current)]
    if lead < config.change_margin:
        state.candidate, state.candidate_count = None, 0
        return None
    if state.candidate == label:
        state.candidate_count += 1
    else:
        state.candidate, state.candidate_count = label, 1
    if state.candidate_count < config.change_hold:
        return None
    previous = state.current
    state.current = label
    state.candidate, state.candidate_count = None, 0
    return previous, label
