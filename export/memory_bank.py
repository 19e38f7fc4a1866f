"""Stage 3: the compact memory bank, a few centroids per class of the source embeddings.

The full source memory is the L2-normalised embedding of every training clip. Per class,
spherical k-means (cosine k-means, k-means++ seeding) reduces it to `centroids_per_class` unit
vectors, stored in float16 with the temperature and top-k that score them (`.npz`, no pickles).
The runtime scores an embedding by cosine similarity against the centroids: per class the mean
of the `top_k` highest, softmax over classes at `temperature` (see edge_ser/scoring.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edge_ser import contract
from edge_ser_export.config import MemoryBankConfig
from edge_ser_train.centroids import class_centroids, normalise
from edge_ser_train.model import EmotionModel


@torch.no_grad()
def clip_embeddings(model: EmotionModel, feats_list: list[np.ndarray], batch_size: int = 64
                    ) -> np.ndarray:
    """Whole-clip embeddings (n, E) (projection output, not normalised) in clip order; a
    multigate model's are those of the shared route (languages unknown, as at run time)."""
    model.eval()
    order = np.argsort([len(f) for f in feats_list])
    out = None
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        lengths = torch.tensor([len(feats_list[i]) for i in idx])
        batch = torch.zeros(len(idx), int(lengths.max()), contract.N_MELS)
        for row, i in enumerate(idx):
            batch[row, :len(feats_list[i])] = torch.from_numpy(feats_list[i])
        emb = model.embed(batch, lengths).numpy()
        if out is None:
            out = np.empty((len(feats_list), emb.shape[1]), dtype=np.float32)
        out[idx] = emb
    return out


def build_memory_bank(embeddings: np.ndarray, targets: np.ndarray, labels: tuple[str, ...],
                      cfg: MemoryBankConfig) -> dict[str, np.ndarray]:
    """embeddings (n, E), targets (n,) class indices -> the arrays of memory_bank.npz."""
    missing = [name for k, name in enumerate(labels) if not np.any(targets == k)]
    if missing:
        raise ValueError(f"no training clip of class {missing[0]!r}: the memory bank needs "
                         "every class")
    centroids, owners = class_centroids(normalise(embeddings.astype(np.float64)), targets,
                                        len(labels), cfg.centroids_per_class,
                                        cfg.kmeans_iterations, cfg.seed)
    return {"centroids": centroids.astype(np.float16),
            "centroid_labels": owners.astype(np.int16),
            "temperature": np.asarray(cfg.temperature, dtype=np.float32),
            "top_k": np.asarray(cfg.top_k, dtype=np.int32),
            "labels": np.asarray(labels)}


def save_memory_bank(path: Path, bank: dict[str, np.ndarray]) -> None:
    np.savez(path, **bank)
