"""The one narrow interface every encoder backend implements, and the checks they share.

A backend runs the streamable encoder on one chunk: `run(feats, state) -> (frames, new_state)`.
It holds no per-stream state: the state goes in and comes out, so one backend serves any number
of streams (each Stream keeps its own state list).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from edge_ser import contract
from edge_ser.package import ModelPackage, batch_axis, state_shape


class BackendUnavailable(ValueError):
    """The backend cannot run here (library not installed, no engine for this device)."""


class EncoderBackend(Protocol):
    chunk_frames: int
    stride: int
    out_channels: int

    def init_state(self, batch: int = 1) -> list[np.ndarray]:
        """The state before the first chunk of `batch` streams."""
        ...

    def run(self, feats: np.ndarray, state: list[np.ndarray]
            ) -> tuple[np.ndarray, list[np.ndarray]]:
        """feats (B, chunk_frames, N_MELS) float32 -> (frames (B, chunk_frames // stride, C),
        new state)."""
        ...

    runs_segments: bool
    """Whether `run_segment` is available (onnxruntime: the whole-segment graph derived from
    the package's encoder passed its check; see `segment_graph`)."""

    def run_segment(self, feats: np.ndarray, state: list[np.ndarray]) -> np.ndarray:
        """feats (1, T, N_MELS) float32, T a multiple of stride, from `state` (init_state(1))
        -> frames (1, T // stride, C): a whole segment in one call (files, not live streams)."""
        ...

    def close(self) -> None:
        """Release what the backend holds (sessions, engines, device memory)."""
        ...


def check_feats(feats: np.ndarray, chunk_frames: int | None, stride: int) -> np.ndarray:
    """`feats` as contiguous float32 (batch, frames, N_MELS): frames == chunk_frames, or with
    chunk_frames None (a whole segment) any positive multiple of `stride`; ValueError else."""
    feats = np.ascontiguousarray(feats, dtype=np.float32)
    if chunk_frames is None:
        if (feats.ndim != 3 or feats.shape[2] != contract.N_MELS or feats.shape[1] < 1
                or feats.shape[1] % stride):
            raise ValueError(f"feats must be (batch, frames, {contract.N_MELS}) float32 with "
                             f"frames a positive multiple of {stride}, got shape {feats.shape}")
    elif feats.ndim != 3 or feats.shape[1:] != (chunk_frames, contract.N_MELS):
        raise ValueError(f"feats must be (batch, {chunk_frames}, {contract.N_MELS}) float32, "
                         f"got shape {feats.shape}")
    return feats


class StateLayout:
    """Shapes of the state tensors of a package, with the batch axis filled in on demand."""

    def __init__(self, package: ModelPackage):
        specs = package.state_specs()
        self.input_names = [s["input"] for s in specs]
        self.output_names = [s["output"] for s in specs]
        self.shapes = [s["shape"] for s in specs]
        self.batch_axes = [batch_axis(s) for s in self.shapes]
        self.chunk_frames = package.chunk_frames
        self.stride = package.stride
        self.out_channels = package.embedding_channels
        self._initial = package.initial_state()  # batch 1, read once
        self._expected: dict[int, list[tuple[int, ...]]] = {}  # batch -> state shapes

    def _shapes(self, batch: int) -> list[tuple[int, ...]]:
        """The state tensors' shapes for `batch` streams (worked out once per batch size: every
        encoder call checks them)."""
        if batch not in self._expected:
            self._expected[batch] = [state_shape(shape, batch) for shape in self.shapes]
        return self._expected[batch]

    def init_state(self, batch: int) -> list[np.ndarray]:
        """The package's initial state repeated along each tensor's batch axis."""
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        if batch == 1:  # every segment starts here: a copy is cheaper than np.repeat
            return [first.copy() for first in self._initial]
        return [np.repeat(first, batch, axis=axis)
                for first, axis in zip(self._initial, self.batch_axes)]

    def check(self, feats: np.ndarray, state: list[np.ndarray], whole_segment: bool = False
              ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Validated contiguous float32 copies/views of one call's inputs: a chunk of
        chunk_frames or, with `whole_segment`, any positive multiple of the stride."""
        feats = check_feats(feats, None if whole_segment else self.chunk_frames, self.stride)
        batch = feats.shape[0]
        if len(state) != len(self.shapes):
            raise ValueError(f"state must hold {len(self.shapes)} tensors (from init_state), "
                             f"got {len(state)}")
        checked = []
        for i, (tensor, expected) in enumerate(zip(state, self._shapes(batch))):
            tensor = np.ascontiguousarray(tensor, dtype=np.float32)
            if tensor.shape != expected:
                raise ValueError(f"state[{i}] has shape {tensor.shape}, expected {expected} "
                                 f"for a batch of {batch}")
            checked.append(tensor)
        return feats, checked
