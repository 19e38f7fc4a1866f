"""Log-mel "views" of each clip, computed once and cached on disk.

View 0 is the clean clip, without its leading and trailing silence (`edge_ser.trim`, as the
runtime's VAD cuts speech); views 1..V are augmented copies of it (`train.augment`). Training
draws one view per clip per epoch, so augmentation costs nothing after the first run. A cache
entry is keyed by the clip's path, size and mtime, the augmentation settings, the trimming and
the feature contract, so a change to any of them recomputes it.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np

from edge_ser import contract
from edge_ser.audio import load_mono_16k
from edge_ser.features import log_mel
from edge_ser.trim import TRIM_PAD_MS, TRIM_THRESHOLD_DB, trim_silence
from edge_ser_train.augment import augment
from edge_ser_train.config import AugmentConfig
from edge_ser_train.corpus import Clip

VIEWS_FORMAT = 1


def _cache_key(clip: Clip, views: int, aug: AugmentConfig, max_clip_s: float) -> str:
    stat = clip.path.stat()
    facts = {"path": str(clip.path.resolve()), "size": stat.st_size, "mtime": stat.st_mtime_ns,
             "views": views, "augment": asdict(aug), "max_clip_s": max_clip_s,
             "format": VIEWS_FORMAT, "trim": [TRIM_THRESHOLD_DB, TRIM_PAD_MS],
             "contract": [contract.SAMPLE_RATE_HZ, contract.WINDOW_SAMPLES, contract.HOP_SAMPLES,
                          contract.N_MELS, contract.F_MIN_HZ, contract.F_MAX_HZ]}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:24]


def compute_views(clip: Clip, views: int, aug: AugmentConfig,
                  max_clip_s: float) -> list[np.ndarray]:
    """[clean, augmented 1..views] log-mel arrays, each (frames, N_MELS) float32."""
    audio = trim_silence(load_mono_16k(clip.path))
    audio = audio[: int(max_clip_s * contract.SAMPLE_RATE_HZ)]
    # The seed depends on the clip only, so the views do not change with the order of clips.
    seed = int.from_bytes(hashlib.sha256(str(clip.path.name).encode()).digest()[:8], "little")
    rng = np.random.default_rng(seed)
    out = [log_mel(audio)]
    for _ in range(views):
        out.append(log_mel(augment(audio, aug, rng)))
    return out


def _load_or_compute(args) -> list[np.ndarray]:
    clip, views, aug, max_clip_s, cache_dir = args
    path = Path(cache_dir) / f"{_cache_key(clip, views, aug, max_clip_s)}.npz"
    if path.is_file():
        with np.load(path) as data:
            return [data[f"v{i}"].astype(np.float32) for i in range(views + 1)]
    result = compute_views(clip, views, aug, max_clip_s)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(tmp, **{f"v{i}": v.astype(np.float16) for i, v in enumerate(result)})
    os.replace(tmp, path)
    # Return what a later cached read returns (float16-rounded) so runs agree either way.
    return [v.astype(np.float16).astype(np.float32) for v in result]


def load_views(clips: list[Clip], views: int, aug: AugmentConfig, max_clip_s: float,
               cache_dir: str | os.PathLike, workers: int = 2) -> list[list[np.ndarray]]:
    """Views for every clip, from the cache where present, computing the rest in `workers`."""
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    jobs = [(clip, views, aug, max_clip_s, str(cache_dir)) for clip in clips]
    if workers <= 1:
        return [_load_or_compute(job) for job in jobs]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(_load_or_compute, jobs, chunksize=16))
