"""The leave-one-language-out start models of the adaptation studies (tools/score_adapt_guard.py,
tools/make_adaptation_results.py): the training recipe trained on every labelled clip of the
corpora other than the target, saved once as a checkpoint carrying the memory bank and the source
exemplar set an export would ship (the export's default settings), so that `adapt` can start from
it with source audio or without, as from a package."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from edge_ser_export.adaptation_memory import build_within_limit, checkpoint_entry
from edge_ser_export.config import AdaptationMemoryConfig, MemoryBankConfig
from edge_ser_export.memory_bank import build_memory_bank, clip_embeddings
from edge_ser_train.config import TrainConfig
from edge_ser_train.trainer import load_checkpoint, save_checkpoint, train
from edge_ser_train.views import load_views
from tools.make_results import recipe


def start_checkpoint(cfg: TrainConfig, clips: list, path: Path, log=print) -> Path:
    """`path`, a checkpoint of `cfg` trained on `clips` (labelled) with its memory bank: read
    when it exists (refused when trained with another recipe), else trained and written."""
    if path.is_file():
        _, saved, _ = load_checkpoint(path)
        if recipe(saved) != recipe(cfg):
            raise SystemExit(f"{path}: trained with another recipe; use another --runs")
        return path
    started = time.perf_counter()
    result = train(cfg, clips, lambda _msg: None)
    views = load_views(clips, cfg.augment.views, cfg.augment, cfg.data.max_clip_s,
                       cfg.data.cache_dir, workers=cfg.optim.threads)
    targets = np.array([cfg.data.labels.index(c.label) for c in clips])
    embeddings = clip_embeddings(result.model, [v[0] for v in views])
    bank = build_memory_bank(embeddings, targets, cfg.data.labels, MemoryBankConfig())
    stored = {"centroids": torch.from_numpy(bank["centroids"]),
              "centroid_labels": torch.from_numpy(bank["centroid_labels"].astype(np.int64)),
              "temperature": float(bank["temperature"]), "top_k": int(bank["top_k"])}
    exemplars, _ = build_within_limit(embeddings, targets, [c.corpus for c in clips],
                                      {c.corpus: c.language for c in clips}, cfg.data.labels,
                                      AdaptationMemoryConfig())
    save_checkpoint(result, cfg, path, extra={"memory_bank": stored,
                                              "adaptation_memory": checkpoint_entry(exemplars)})
    log(f"  start model {path.name}: {len(clips)} clips ({time.perf_counter() - started:.0f} s)")
    return path
