"""Sliding-window pooling with running sums: equal to direct stats pooling, bounded memory."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_ser import windowing


def stats_pool(frames: np.ndarray) -> np.ndarray:
    """The training pooling: mean and std (variance clamped at 1e-6) over the frames."""
    frames = frames.astype(np.float64)
    mean = frames.mean(axis=0)
    var = np.maximum((frames * frames).mean(axis=0) - mean * mean, 1e-6)
    return np.concatenate((mean, np.sqrt(var)))


def push_all(frames, window, hop, pieces):
    state = windowing.init_state(frames.shape[1], window, hop)
    out, pos = [], 0
    for n in pieces:
        out += windowing.push(state, frames[pos:pos + n])
        pos += n
    out += windowing.push(state, frames[pos:])
    return state, out


def test_windows_equal_direct_pooling_at_the_right_positions():
    rng = np.random.default_rng(0)
    frames = rng.standard_normal((237, 8)).astype(np.float32)
    _, windows = push_all(frames, window=100, hop=12, pieces=[5, 40, 1, 100])
    assert [(a, b) for a, b, _ in windows] == [(k * 12, k * 12 + 100) for k in range(12)]
    for first, end, pooled in windows:
        np.testing.assert_allclose(pooled, stats_pool(frames[first:end]), rtol=1e-5, atol=1e-6)
        assert pooled.dtype == np.float32 and pooled.shape == (16,)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 60), max_size=12))
def test_windows_do_not_depend_on_how_frames_arrive(pieces):
    frames = np.random.default_rng(1).standard_normal((300, 4)).astype(np.float32)
    _, expected = push_all(frames, 50, 7, [])
    _, got = push_all(frames, 50, 7, pieces)
    assert len(got) == len(expected) == 36
    for (a, b, p), (c, d, q) in zip(got, expected):
        assert (a, b) == (c, d) and np.array_equal(p, q)


def test_segment_shorter_than_a_window_gives_no_window_and_pools_everything():
    frames = np.random.default_rng(2).standard_normal((30, 4)).astype(np.float32)
    state, windows = push_all(frames, 50, 10, [7])
    assert windows == []
    np.testing.assert_allclose(windowing.pool_all(state), stats_pool(frames), rtol=1e-5,
                               atol=1e-6)


def test_constant_frames_hit_the_variance_floor():
    state, _ = push_all(np.ones((20, 3), dtype=np.float32), 10, 5, [])
    np.testing.assert_allclose(windowing.pool_all(state), [1, 1, 1, 1e-3, 1e-3, 1e-3], rtol=1e-6)


def test_memory_stays_bounded_over_a_long_segment():
    state = windowing.init_state(4, 100, 12)
    frames = np.random.default_rng(3).standard_normal((50, 4)).astype(np.float32)
    for _ in range(2000):  # 100k frames, about half an hour at 50 frames/s
        windowing.push(state, frames)
    assert state.prefix.shape[0] <= 256
    whole = np.tile(frames, (2000, 1))
    np.testing.assert_allclose(windowing.pool_all(state), stats_pool(whole), rtol=1e-4)
