"""Spherical k-means centroids per class: the compact memory that a model package ships
(`edge_ser_export.memory_bank`) and that NNPM labels a target against
(`SourceMemory.centroids`). numpy only.
"""

from __future__ import annotations

import numpy as np


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
