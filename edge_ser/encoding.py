"""Running the encoder over one speech segment: fixed chunks, state carried, each frame once.

The backend takes exactly `chunk_frames` feature frames per call (batch 1) and returns
`chunk_frames // stride` encoder frames plus its new state. Frames wait here until a chunk is
full; the segment's last, partial chunk is padded on the right and only the outputs whose input
frames are all real are kept (the encoder is causal, so padding never changes earlier outputs).
As training does, a segment yields `frames // stride` encoder frames, at least one.

The encoder starts from `backend.init_state()` at every segment: the model was trained on clips
that start from a fresh state. Which calls happen depends only on the segment's frames, never
on how the audio was chunked, so the outputs are the same for any chunking.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_ser.contract import N_MELS

PAD_VALUE = 0.0
"""Log-mel value of the right padding of a segment's last chunk (its outputs are discarded)."""


@dataclass
class EncoderState:
    backend_state: list[np.ndarray]
    pending: np.ndarray  # (k, N_MELS) float32, k < chunk_frames: frames waiting for a full chunk
    frames_in: int = 0  # feature frames accepted
    frames_out: int = 0  # encoder frames returned


def init_state(backend) -> EncoderState:
    """A fresh encoder state for a new segment."""
    return EncoderState(backend_state=list(backend.init_state(1)),
                        pending=np.zeros((0, N_MELS), dtype=np.float32))


def feed(state: EncoderState, backend, feats: np.ndarray) -> np.ndarray:
    """Accept feature frames (n, N_MELS); return the encoder frames of every full chunk.

    Returns (m, C) float32 with m a multiple of chunk_frames // stride.
    """
    feats = np.asarray(feats, dtype=np.float32)
    state.frames_in += feats.shape[0]
    buffer = np.concatenate((state.pending, feats)) if state.pending.size else feats
    chunk = backend.chunk_frames
    n_chunks = buffer.shape[0] // chunk
    outputs = []
    for i in range(n_chunks):
        outputs.append(_run(state, backend, buffer[i * chunk:(i + 1) * chunk]))
    state.pending = buffer[n_chunks * chunk:].copy()
    return _concat(outputs, backend.out_channels)


def finish(state: EncoderState, backend) -> np.ndarray:
    """End of the segment: run the padded last chunk; return its valid encoder frames (m, C)."""
    wanted = max(state.frames_in // backend.stride, 1) - state.frames_out
    if wanted <= 0 or state.frames_in == 0:
        return np.zeros((0, backend.out_channels), dtype=np.float32)
    chunk = np.full((backend.chunk_frames, N_MELS), PAD_VALUE, dtype=np.float32)
    chunk[:state.pending.shape[0]] = state.pending
    state.pending = state.pending[:0]
    out = _run(state, backend, chunk)
    state.frames_out -= out.shape[0] - wanted  # _run counted the whole chunk
    return out[:wanted]


def encode_segment(backend, feats: np.ndarray) -> np.ndarray:
    """All encoder frames of a whole segment's feature frames (n, N_MELS) in one call, for
    backends with a whole-segment encoder (`backend.runs_segments`).

    Returns (max(n // stride, 1), C) float32: the frames `feed` then `finish` give, up to float
    rounding (`backends.segment_graph`). The segment is padded on the right to a multiple of the
    stride (at least one stride); as in `finish`, padded outputs are dropped.
    """
    feats = np.asarray(feats, dtype=np.float32)
    n = feats.shape[0]
    if n == 0:
        return np.zeros((0, backend.out_channels), dtype=np.float32)
    wanted = max(n // backend.stride, 1)
    padded_frames = max(-(-n // backend.stride), 1) * backend.stride
    padded = np.full((1, padded_frames, N_MELS), PAD_VALUE, dtype=np.float32)
    padded[0, :n] = feats
    out = backend.run_segment(padded, backend.init_state(1))
    return np.asarray(out[0, :wanted], dtype=np.float32)


def _run(state: EncoderState, backend, chunk: np.ndarray) -> np.ndarray:
    out, new_state = backend.run(chunk[np.newaxis], state.backend_state)
    state.backend_state = list(new_state)
    frames = np.asarray(out[0], dtype=np.float32)
    state.frames_out += frames.shape[0]
    return frames


def _concat(outputs: list[np.ndarray], channels: int) -> np.ndarray:
    if not outputs:
        return np.zeros((0, channels), dtype=np.float32)
    return outputs[0] if len(outputs) == 1 else np.concatenate(outputs)
