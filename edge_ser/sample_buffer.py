"""A growing window onto a stream's 16 kHz samples, indexed by absolute sample number.

Samples arrive at the end (`append`) and are dropped from the front once no feature frame can
need them (`trim`), so a stream of any length holds only the audio of the segment being
encoded plus the look-back a segment start can reach (onset and pre-padding). Feature frames
are computed from here on demand, only for the frames a segment feeds to the encoder.
"""

from __future__ import annotations

import numpy as np


class SampleBuffer:
    """Samples [start, end) of one stream, float32."""

    def __init__(self, capacity: int = 65536) -> None:
        self._data = np.zeros(capacity, dtype=np.float32)
        self._offset = 0  # index in _data of sample `start`
        self.start = 0  # absolute index of the oldest sample kept
        self.end = 0  # absolute index one past the newest sample

    def append(self, samples: np.ndarray) -> None:
        """Add (n,) samples after the newest."""
        n = samples.shape[0]
        if n == 0:
            return
        used = self.end - self.start
        if self._offset + used + n > self._data.shape[0]:
            # compact to the front, growing when the kept samples need it
            capacity = max(self._data.shape[0], 2 * (used + n))
            data = np.empty(capacity, dtype=np.float32)
            data[:used] = self._data[self._offset:self._offset + used]
            self._data, self._offset = data, 0
        position = self._offset + used
        self._data[position:position + n] = samples
        self.end += n

    def view(self, first: int, end: int) -> np.ndarray:
        """Samples [first, end) as a contiguous view (not to be written), valid until the next
        append; they must still be held."""
        if first < self.start or end > self.end or first > end:
            raise IndexError(f"samples [{first}, {end}) are not held (held: [{self.start}, "
                             f"{self.end}))")
        position = self._offset + first - self.start
        return self._data[position:position + end - first]

    def trim(self, keep_from: int) -> None:
        """Forget samples before `keep_from` (absolute index)."""
        keep_from = min(max(keep_from, self.start), self.end)
        self._offset += keep_from - self.start
        self.start = keep_from
