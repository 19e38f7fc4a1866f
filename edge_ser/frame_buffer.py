"""A growing window onto a stream's feature frames, indexed by absolute frame number.

Frames arrive at the end (`append`) and are dropped from the front once nothing can need them
(`trim`), so a stream of any length holds only the frames of the segment being encoded plus the
look-back a segment start can reach (onset and pre-padding).
"""

from __future__ import annotations

import numpy as np


class FrameBuffer:
    """Frames [start, end) of one stream, float32 (end - start, width)."""

    def __init__(self, width: int, capacity: int = 512) -> None:
        self._data = np.zeros((capacity, width), dtype=np.float32)
        self._offset = 0  # row of frame `start` in _data
        self.start = 0  # absolute index of the oldest frame kept
        self.end = 0  # absolute index one past the newest frame

    def append(self, frames: np.ndarray) -> None:
        """Add frames (n, width) after the newest."""
        n = frames.shape[0]
        if n == 0:
            return
        used = self.end - self.start
        if self._offset + used + n > self._data.shape[0]:
            # compact to the front, growing when the kept frames need it
            capacity = max(self._data.shape[0], 2 * (used + n))
            data = np.zeros((capacity, self._data.shape[1]), dtype=np.float32)
            data[:used] = self._data[self._offset:self._offset + used]
            self._data, self._offset = data, 0
        row = self._offset + used
        self._data[row:row + n] = frames
        self.end += n

    def get(self, first: int, end: int) -> np.ndarray:
        """Frames [first, end) as a (end - first, width) copy; they must still be held."""
        if first < self.start or end > self.end or first > end:
            raise IndexError(f"frames [{first}, {end}) are not held (held: [{self.start}, "
                             f"{self.end}))")
        row = self._offset + first - self.start
        return self._data[row:row + end - first].copy()

    def trim(self, keep_from: int) -> None:
        """Forget frames before `keep_from` (absolute index)."""
        keep_from = min(max(keep_from, self.start), self.end)
        self._offset += keep_from - self.start
        self.start = keep_from
