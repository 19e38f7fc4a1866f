"""Sliding-window attention pooling of encoder rows, with max-shifted exponential sums.

A multigate package's encoder emits one row per encoder frame j holding, for each stream s, an
attention logit m_sj and a frame vector v_sj (`edge_ser_export.multigate_graph`). The model
pools each stream over a window as

    pooled_s = sum_j exp(m_sj) v_sj / sum_j exp(m_sj)

Any run of rows is summarised by (M_s, Z_s, V_s) = (max_j m_sj, sum_j exp(m_sj - M_s),
sum_j exp(m_sj - M_s) v_sj), and two summaries merge exactly: with M = max(M_a, M_b), each side's
Z and V are scaled by exp(M_side - M) and added. Nothing is ever subtracted (a prefix-sum
difference of exponentials would cancel badly when a large logit leaves the window), and every
exponent is <= 0, so nothing overflows.

Windows hold `window_frames` rows and start every `hop_frames` (as `edge_ser.windowing`): rows
are summarised in blocks of g = gcd(window, hop) rows, each window merges its window/g blocks,
and only the blocks a future window can still need are kept. A running summary of the whole
segment gives `pool_all`.

Shapes: rows (n, R) float32 with R = sum_s (1 + D_s) -> pooled (P,) float32, P = sum_s D_s, the
per-stream pooled vectors concatenated in stream order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


class RowLayout:
    """Where each stream's logit and vector sit in a row: per stream, 1 logit column then D_s
    vector columns, streams in order."""

    def __init__(self, dims: tuple[int, ...]):
        if not dims or any(int(d) < 1 for d in dims):
            raise ValueError(f"stream widths must be >= 1, got {list(dims)}")
        self.dims = tuple(int(d) for d in dims)
        starts = np.cumsum([0] + [1 + d for d in self.dims])[:-1]
        self.logit_cols = starts.astype(np.intp)
        self.vector_cols = np.concatenate([np.arange(s + 1, s + 1 + d)
                                           for s, d in zip(starts, self.dims)]).astype(np.intp)
        self.owner = np.repeat(np.arange(len(self.dims)), self.dims).astype(np.intp)
        self.row_width = int(sum(1 + d for d in self.dims))
        self.pooled_dim = int(sum(self.dims))


@dataclass
class Summary:
    peak: np.ndarray  # (S,) max logit per stream
    mass: np.ndarray  # (S,) sum of exp(logit - peak)
    weighted: np.ndarray  # (P,) sum of exp(logit - peak) * vector


def summarise(layout: RowLayout, rows: np.ndarray) -> Summary:
    """Summary of rows (n >= 1, R)."""
    rows = np.asarray(rows, dtype=np.float64)
    logits = rows[:, layout.logit_cols]
    peak = logits.max(axis=0)
    weights = np.exp(logits - peak)
    weighted = (weights[:, layout.owner] * rows[:, layout.vector_cols]).sum(axis=0)
    return Summary(peak, weights.sum(axis=0), weighted)


def merge(layout: RowLayout, parts: list[Summary]) -> Summary:
    """One summary of consecutive (or any) runs of rows."""
    if len(parts) == 1:
        return parts[0]
    peaks = np.stack([p.peak for p in parts])
    peak = peaks.max(axis=0)
    scale = np.exp(peaks - peak)  # (n, S), each <= 1
    mass = (scale * np.stack([p.mass for p in parts])).sum(axis=0)
    weighted = (scale[:, layout.owner] * np.stack([p.weighted for p in parts])).sum(axis=0)
    return Summary(peak, mass, weighted)


def pooled(layout: RowLayout, summary: Summary) -> np.ndarray:
    return (summary.weighted / summary.mass[layout.owner]).astype(np.float32)


@dataclass
class AttentionWindowState:
    layout: RowLayout
    window_frames: int
    hop_frames: int
    block_frames: int
    blocks: list[Summary] = field(default_factory=list)  # complete blocks from `base_block` on
    base_block: int = 0
    partial: Summary | None = None  # the block being filled
    partial_rows: int = 0
    total: Summary | None = None  # every row pushed
    count: int = 0  # rows pushed so far
    emitted: int = 0  # windows emitted so far

    @property
    def channels(self) -> int:
        return self.layout.row_width


def init_state(layout: RowLayout, window_frames: int, hop_frames: int) -> AttentionWindowState:
    """Pooling state for one segment."""
    if window_frames < 1 or hop_frames < 1:
        raise ValueError(f"window and hop must be at least one frame, got {window_frames}, "
                         f"{hop_frames}")
    return AttentionWindowState(layout, window_frames, hop_frames,
                                math.gcd(window_frames, hop_frames))


def push(state: AttentionWindowState, rows: np.ndarray) -> list[tuple[int, int, np.ndarray]]:
    """Add rows (n, R); return the windows they complete as (first, end, pooled (P,))."""
    rows = np.asarray(rows, dtype=np.float32)
    layout = state.layout
    if rows.ndim != 2 or rows.shape[1] != layout.row_width:
        raise ValueError(f"expected encoder rows (n, {layout.row_width}), got {rows.shape}")
    n = rows.shape[0]
    if n == 0:
        return []
    whole = summarise(layout, rows)
    state.total = whole if state.total is None else merge(layout, [state.total, whole])
    g = state.block_frames
    start = 0
    while start < n:
        take = min(g - state.partial_rows, n - start)
        piece = whole if take == n else summarise(layout, rows[start:start + take])
        state.partial = piece if state.partial is None else merge(layout, [state.partial, piece])
        state.partial_rows += take
        start += take
        if state.partial_rows == g:
            state.blocks.append(state.partial)
            state.partial, state.partial_rows = None, 0
    state.count += n
    windows = []
    while True:
        first = state.emitted * state.hop_frames
        end = first + state.window_frames
        if end > state.count:
            break
        picked = state.blocks[first // g - state.base_block:end // g - state.base_block]
        windows.append((first, end, pooled(layout, merge(layout, picked))))
        state.emitted += 1
    drop = state.emitted * state.hop_frames // g - state.base_block
    if drop > 0:
        del state.blocks[:drop]
        state.base_block += drop
    return windows


def pool_all(state: AttentionWindowState) -> np.ndarray:
    """Pooled (P,) over every row pushed; zeros for an empty segment."""
    if state.total is None:
        return np.zeros(state.layout.pooled_dim, dtype=np.float32)
    return pooled(state.layout, state.total)


def pool_frames(layout: RowLayout, rows: np.ndarray) -> np.ndarray:
    """Pooled (P,) over rows (n >= 1, R), for one part of a segment."""
    return pooled(layout, summarise(layout, rows))
