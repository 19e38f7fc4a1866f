"""Sliding-window pooling over a segment's encoder frames, with running sums.

The model pools mean and standard deviation of the encoder frames over whatever frames a window
holds (`train.model.masked_stats_pool`: var = E[x^2] - E[x]^2 clamped at 1e-6). Here each frame
is added once to prefix sums of x and x^2 (float64), so any window [a, b) is pooled from two
rows: sum = P[b] - P[a]. Windows hold `window_frames` encoder frames and start every
`hop_frames`: window k covers [k * hop, k * hop + window). A segment shorter than one window
yields no window; `pool_all` pools the whole segment for its final result.

Only the prefix rows a future window can still need are kept (from the next window's start on),
plus the running totals for `pool_all`, so memory stays bounded for any segment length.

Shapes: frames (n, C) float32 -> pooled (2C,) float32 = concat(mean, std).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VAR_FLOOR = 1e-6
"""The variance clamp of training's stats pooling."""


@dataclass
class WindowState:
    window_frames: int
    hop_frames: int
    prefix: np.ndarray  # (rows, 2C) float64: [sum x, sum x^2] over frames [0, base + i)
    rows: int = 1  # valid rows of `prefix`; row i is the prefix up to frame base + i
    base: int = 0  # frame index of prefix row 0
    count: int = 0  # frames pushed so far
    emitted: int = 0  # windows emitted so far

    @property
    def channels(self) -> int:
        return self.prefix.shape[1] // 2


def init_state(channels: int, window_frames: int, hop_frames: int) -> WindowState:
    """Pooling state for one segment of `channels`-wide encoder frames."""
    if window_frames < 1 or hop_frames < 1:
        raise ValueError(f"window and hop must be at least one frame, got {window_frames}, "
                         f"{hop_frames}")
    prefix = np.zeros((max(2 * window_frames, 64), 2 * channels), dtype=np.float64)
    return WindowState(window_frames=window_frames, hop_frames=hop_frames, prefix=prefix)


def push(state: WindowState, frames: np.ndarray) -> list[tuple[int, int, np.ndarray]]:
    """Add encoder frames (n, C); return the windows they complete as (first, end, pooled).

    `first` and `end` are encoder-frame indices within the segment; pooled is (2C,) float32.
    """
    frames = np.asarray(frames, dtype=np.float64)
    if frames.ndim != 2 or frames.shape[1] != state.channels:
        raise ValueError(f"expected encoder frames (n, {state.channels}), got {frames.shape}")
    n = frames.shape[0]
    if n == 0:
        return []
    _reserve(state, n)
    # Running sums: row r = row r-1 + [x, x^2] of frame base + r - 1, accumulated in order,
    # one row at a time (np.cumsum along axis 0 does the same additions several times slower).
    stacked = np.concatenate((frames, frames * frames), axis=1)
    rows = state.prefix[state.rows - 1:state.rows + n]
    for r in range(n):
        np.add(rows[r], stacked[r], out=rows[r + 1])
    state.rows += n
    state.count += n
    windows = []
    while True:
        first = state.emitted * state.hop_frames
        end = first + state.window_frames
        if end > state.count:
            break
        windows.append((first, end, _pool(state, first, end)))
        state.emitted += 1
    _trim(state)
    return windows


def pool_all(state: WindowState) -> np.ndarray:
    """Pooled (2C,) float32 over every frame pushed; zeros for an empty segment."""
    if state.count == 0:
        return np.zeros(2 * state.channels, dtype=np.float32)
    totals = state.prefix[state.rows - 1]
    return _stats(totals, state.count, state.channels)


def pool_frames(frames: np.ndarray) -> np.ndarray:
    """Pooled (2C,) float32 over encoder frames (n, C), n >= 1, computed as `pool_all` does
    (float64 sums in order); for one part of a segment."""
    x = np.asarray(frames, dtype=np.float64)
    sums = np.concatenate((x.sum(axis=0), (x * x).sum(axis=0)))
    return _stats(sums, x.shape[0], x.shape[1])


def _pool(state: WindowState, first: int, end: int) -> np.ndarray:
    sums = state.prefix[end - state.base] - state.prefix[first - state.base]
    return _stats(sums, end - first, state.channels)


def _stats(sums: np.ndarray, count: int, channels: int) -> np.ndarray:
    mean = sums[:channels] / count
    var = np.maximum(sums[channels:] / count - mean * mean, VAR_FLOOR)
    return np.concatenate((mean, np.sqrt(var))).astype(np.float32)


def _reserve(state: WindowState, n: int) -> None:
    if state.rows + n <= state.prefix.shape[0]:
        return
    grown = np.zeros((max(2 * state.prefix.shape[0], state.rows + n), state.prefix.shape[1]))
    grown[:state.rows] = state.prefix[:state.rows]
    state.prefix = grown


def _trim(state: WindowState) -> None:
    """Drop prefix rows before the next window's first frame (the last row is always kept)."""
    keep_from = min(state.emitted * state.hop_frames, state.count) - state.base
    if keep_from <= 0 or state.rows - keep_from > state.prefix.shape[0] // 2:
        return  # move rows only when it frees at least half the buffer
    state.prefix[:state.rows - keep_from] = state.prefix[keep_from:state.rows]
    state.rows -= keep_from
    state.base += keep_from
