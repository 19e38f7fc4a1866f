"""Parity checks between encoder backends: the same chunks, each backend carrying its own state.

A stream of `chunks` consecutive chunks goes through both backends; each keeps the state it
produced itself, so drift that would build up over a long stream shows. The batch check runs
several different streams stacked along the batch axis and compares each row with the same
stream run alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from edge_ser import contract


@dataclass(frozen=True)
class ParityReport:
    chunks: int
    batch: int
    max_abs_frames: float
    """max |candidate - reference| over all output frames."""
    max_abs_state: float
    """max |candidate - reference| over the state after every chunk."""
    rel_rms_frames: float
    """RMS(candidate - reference) / RMS(reference) of the output frames."""
    max_scaled_state: float = 0.0
    """max over state tensors of max |candidate - reference| / max(1, max |reference|): the
    state error relative to its size, for states that grow without bound (an LSTM's cell)."""

    def to_dict(self) -> dict:
        return asdict(self)


def stream_of_chunks(feats_list: list[np.ndarray], chunks: int, chunk_frames: int) -> np.ndarray:
    """(chunks * chunk_frames, N_MELS): real clips end to end, repeated if too short."""
    joined = np.concatenate(feats_list).astype(np.float32)
    needed = chunks * chunk_frames
    reps = -(-needed // len(joined))
    return np.tile(joined, (reps, 1))[:needed]


def stream_parity(reference, candidate, feats: np.ndarray, batch: int = 1) -> ParityReport:
    """Run (T, N_MELS) feats chunk by chunk through both backends; T a multiple of the chunk.

    With batch > 1 the stream is shifted by one chunk per row, so rows differ."""
    chunk = reference.chunk_frames
    n = len(feats) // chunk
    rows = np.stack([np.roll(feats, -r * chunk, axis=0) for r in range(batch)])
    ref_state, cand_state = reference.init_state(batch), candidate.init_state(batch)
    max_frames = max_state = max_scaled = 0.0
    err_sq = ref_sq = 0.0
    for i in range(n):
        piece = rows[:, i * chunk:(i + 1) * chunk]
        ref_out, ref_state = reference.run(piece, ref_state)
        cand_out, cand_state = candidate.run(piece, cand_state)
        diff = cand_out.astype(np.float64) - ref_out
        max_frames = max(max_frames, float(np.abs(diff).max()))
        err_sq += float((diff * diff).sum())
        ref_sq += float((ref_out.astype(np.float64) ** 2).sum())
        for a, b in zip(cand_state, ref_state):
            worst = float(np.abs(a - b).max())
            max_state = max(max_state, worst)
            max_scaled = max(max_scaled, worst / max(1.0, float(np.abs(b).max())))
    return ParityReport(chunks=n, batch=batch, max_abs_frames=max_frames,
                        max_abs_state=max_state,
                        rel_rms_frames=float(np.sqrt(err_sq / max(ref_sq, 1e-30))),
                        max_scaled_state=max_scaled)


def batch_consistency(backend, feats: np.ndarray, batch: int = 3, chunks: int = 20) -> float:
    """max |row r of a batched run - the same stream run alone| over `chunks` chunks."""
    chunk = backend.chunk_frames
    streams = [np.roll(feats, -r * chunk, axis=0)[:chunks * chunk] for r in range(batch)]
    stacked = np.stack(streams)
    state = backend.init_state(batch)
    batched = []
    for i in range(chunks):
        out, state = backend.run(stacked[:, i * chunk:(i + 1) * chunk], state)
        batched.append(out)
    batched = np.concatenate(batched, axis=1)
    worst = 0.0
    for r, stream in enumerate(streams):
        state = backend.init_state(1)
        outs = []
        for i in range(chunks):
            out, state = backend.run(stream[None, i * chunk:(i + 1) * chunk], state)
            outs.append(out)
        worst = max(worst, float(np.abs(np.concatenate(outs, axis=1)[0] - batched[r]).max()))
    return worst


def random_feats(frames: int, seed: int = 0) -> np.ndarray:
    """Speech-like log-mel levels for tests without corpora: (frames, N_MELS) float32."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((frames, contract.N_MELS)) * 3.0 - 6.0).astype(np.float32)
