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
from edge_ser_train.model import EmotionModel


@torch.no_grad()
def clip_embeddings(model: EmotionModel, feats_list: list[np.ndarray], batch_size: int = 64
                    ) -> np.ndarray:
    """Whole-clip embeddings (n, E) (projection output, not normalised) in clip order."""
    model.eval()
    order = np.argsort([len(f) for f in feats_list])
    out = np.empty((len(feats_list), model.classifier.in_features), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        lengths = torch.tensor([len(feats_list[i]) for i in idx])
        batch = torch.zeros(len(idx), int(lengths.max()), contract.N_MELS)
        for row, i in enumerate(idx):
            batch[row, :len(feats_list[i])] = torch.from_numpy(feats_list[i])
        out[idx] = model.embed(batch, lengths).numpy()
    return out


def normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def spherical_kmeans(x: np.ndarray, k: int, iterations: int, seed: int) -> np.ndarray:
    """k unit centroids of unit rows `x` (n, E), maximising the summed cosine similarity."""
    rng = np.random.default_rng(seed)
    k = min(k, len(x))
    centroids = [x[rng.integers(len(x))]]
    for _ in range(1, k):  # k-means++ on the cosine distance 1 - cos
        dist = np.clip(1.0 - np.max(x @ np.stack(centroids).T, axis=1), 0.0, None)
        p = dist / dist.sum() if dist.sum() > 0 else np.full(len(x), 1.0 / len(x))
        centroids.append(x[rng.choice(len(x), p=p)])
    c = np.stack(centroids)
    for _ in range(iterations):
        assign = np.argmax(x @ c.T, axis=1)
        new = np.stack([x[assign == j].sum(axis=0) if np.any(assign == j) else c[j]
                        for j in range(k)])
        new = normalise(new)
        if np.allclose(new, c):
            break
        c = new
    return c


def class_centroids(units: np.ndarray, targets: np.ndarray, n_classes: int, per_class: int,
                    iterations: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(centroids (m, E), their classes (m,)): `per_class` spherical k-means centroids of each
    class' unit rows of `units` (n, E), class k seeded with seed + k; a class with no row has
    no centroid."""
    centroids, owners = [], []
    for k in range(n_classes):
        members = units[targets == k]
        if len(members):
            c = spherical_kmeans(members, per_class, iterations, seed + k)
            centroids.append(c)
            owners.extend([k] * len(c))
    return normalise(np.concatenate(centroids)), np.asarray(owners)


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
