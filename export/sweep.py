"""`export sweep`: how memory bank size, temperature, top-k and fusion weight change held-out
UA, to choose `memory_bank.*` and `fusion.*` of configs/export/*.yaml by measurement.

Embeddings are fp32 (torch, whole clips), the same numbers the runtime's fp32 path gives; the
banks are built from the training speakers exactly as `export package` builds them.
"""

from __future__ import annotations

import dataclasses
import io
import itertools
from pathlib import Path

import numpy as np
import torch

from edge_ser.metrics import score
from edge_ser.scoring import WindowScorer
from edge_ser_export.config import ExportConfig
from edge_ser_export.data import ExportData
from edge_ser_export.head import head_arrays
from edge_ser_export.memory_bank import build_memory_bank, clip_embeddings
from edge_ser_train.model import masked_stats_pool
from edge_ser_train.trainer import load_checkpoint

CENTROIDS = (1, 2, 4, 8, 16)
TEMPERATURES = (0.02, 0.05, 0.1, 0.2)
TOP_K = (1, 2, 4)
WEIGHTS = (0.0, 0.2, 0.3, 0.5, 0.7, 1.0)


@torch.no_grad()
def pooled_whole_clips(model, feats_list: list[np.ndarray]) -> np.ndarray:
    out = []
    for feats in feats_list:
        frames = model.encoder(torch.from_numpy(feats)[None])
        out.append(masked_stats_pool(frames, torch.tensor([frames.shape[1]]))[0].numpy())
    return np.stack(out)


def print_sweep(checkpoint: Path, cfg: ExportConfig, log=print) -> list[dict]:
    model, train_cfg, _ = load_checkpoint(checkpoint)
    data = ExportData.from_config(train_cfg, cfg.gate)
    labels = data.labels
    train_feats, train_clips = data.features(data.train, log)
    test_feats, test_clips = data.features(data.heldout, log)
    embeddings = clip_embeddings(model, train_feats)
    targets = data.targets(train_clips)
    test_targets = data.targets(test_clips)
    pooled = pooled_whole_clips(model, test_feats)
    head = head_arrays(model)
    corpora = sorted({c.corpus for c in test_clips})
    groups = {c: np.array([i for i, x in enumerate(test_clips) if x.corpus == c]) for c in corpora}

    def uas(pred: np.ndarray) -> tuple[float, float]:
        overall = score(test_targets, pred, labels).ua
        per_corpus = np.mean([score(test_targets[g], pred[g], labels).ua
                              for g in groups.values()])
        return overall, float(per_corpus)

    rows = []
    log(f"held-out: {len(test_clips)} clips ({', '.join(corpora)}); speaker-independent: "
        f"{data.heldout_is_unseen}")
    log("cpc  bytes   T     k  w    | UA cls  mem   fused | mean-per-corpus UA fused")
    for cpc in CENTROIDS:
        bank_cfg = dataclasses.replace(cfg.memory_bank, centroids_per_class=cpc)
        bank = build_memory_bank(embeddings, targets, labels, bank_cfg)
        buffer = io.BytesIO()
        np.savez(buffer, **bank)
        for temperature, top_k, weight in itertools.product(TEMPERATURES, TOP_K, WEIGHTS):
            if top_k > cpc:
                continue
            scorer = WindowScorer(head, bank["centroids"], bank["centroid_labels"], len(labels),
                                  temperature, top_k, weight)
            s = scorer.score_pooled(pooled)
            row = {"centroids_per_class": cpc, "bytes": buffer.getbuffer().nbytes,
                   "temperature": temperature, "top_k": top_k, "memory_weight": weight,
                   "classifier": uas(s.classifier_probs.argmax(1)),
                   "memory": uas(s.memory_probs.argmax(1)), "fused": uas(s.probs.argmax(1))}
            rows.append(row)
            log(f"{cpc:3d} {row['bytes']:6d} {temperature:5.2f} {top_k:2d} {weight:4.1f} | "
                f"{row['classifier'][0]:.3f} {row['memory'][0]:.3f} {row['fused'][0]:.3f} | "
                f"{row['fused'][1]:.3f}")
    best = max(rows, key=lambda r: r["fused"][0])
    log(f"best fused UA {best['fused'][0]:.3f}: centroids_per_class "
        f"{best['centroids_per_class']}, temperature {best['temperature']}, top_k "
        f"{best['top_k']}, memory_weight {best['memory_weight']}")
    return rows
