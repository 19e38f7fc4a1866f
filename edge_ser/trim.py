"""Trim leading and trailing silence from a clip, as the VAD does for a live stream.

Training and clip-level evaluation use this so that the windows the model learns from look like
the speech segments the runtime cuts: mostly speech, with a short padding of what was around it.
Without it, the share of silence in a clip (30% in one corpus, 6% in another) becomes a cue that
the pooled statistics learn and that does not transfer.
"""

from __future__ import annotations

import numpy as np

from edge_ser.contract import HOP_SAMPLES

TRIM_THRESHOLD_DB = 40.0
"""Frames more than this far below the clip's loudest 10 ms frame count as silence."""
TRIM_PAD_MS = 100
"""Kept on each side of the speech, like the VAD's padding."""


def speech_bounds(samples: np.ndarray, threshold_db: float = TRIM_THRESHOLD_DB,
                  pad_ms: int = TRIM_PAD_MS) -> tuple[int, int]:
    """(start, end) sample indices of the span from the first to the last loud 10 ms frame,
    widened by `pad_ms`; the whole clip where nothing stands out."""
    n_frames = len(samples) // HOP_SAMPLES
    if n_frames == 0:
        return 0, len(samples)
    frames = samples[: n_frames * HOP_SAMPLES].reshape(n_frames, HOP_SAMPLES)
    power_db = 10.0 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    loud = np.flatnonzero(power_db > power_db.max() - threshold_db)
    pad = pad_ms * HOP_SAMPLES // 10
    start = max(0, int(loud[0]) * HOP_SAMPLES - pad)
    end = min(len(samples), (int(loud[-1]) + 1) * HOP_SAMPLES + pad)
    return start, end


def trim_silence(samples: np.ndarray) -> np.ndarray:
    """The clip without its leading and trailing silence (see `speech_bounds`)."""
    start, end = speech_bounds(samples)
    return samples[start:end]


def clip_log_mel(path, kernels: str = "numba") -> np.ndarray:
    """The offline front end for a whole clip: decode, mono 16 kHz, trim silence, log-mel.

    Training, clip-level evaluation and export all score clips through this, so a clip looks the
    same to every one of them (`kernels`: either feature kernels, the same numbers bit for bit).
    Returns (frames, N_MELS) float32; raises AudioError."""
    from edge_ser.audio import load_mono_16k
    from edge_ser.features import log_mel

    return log_mel(trim_silence(load_mono_16k(path)), kernels)
