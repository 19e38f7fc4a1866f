"""The source exemplar set of a model package (`adaptation_memory.npz`): source evidence for
adaptation without source audio. The runtime never scores with it; `adapt` reads it.

    exemplars        (N, E) int8   L2-normalised source embeddings (per corpus and class: spherical
                                   k-means prototypes or a seeded sample of clips), quantised per
                                   row: row ~ exemplars[i] * scales[i]
    scales           (N,)   float32 the per-row scale (max |unit row| / 127)
    exemplar_labels  (N,)   int16  class index into `labels`
    exemplar_groups  (N,)   int16  index into `groups` (the source corpus; one language each)
    labels           (K,)   str    the package's class names
    groups           (G,)   str    source corpus names; `group_languages` (G,) their languages
    group_counts     (G, K) int32  source clips per corpus and class the set was made from
    group_mean       (G, E) float32 per corpus, mean and variance of the source embeddings
    group_var        (G, E) float32 (projection output, before normalisation)

numpy only (the loader checks it; `edge_ser_train.memory.SourceMemory.from_exemplars` reads it).
"""

from __future__ import annotations

import numpy as np

FILE = "adaptation_memory.npz"
KEYS = ("exemplars", "scales", "exemplar_labels", "exemplar_groups", "labels", "groups",
        "group_languages", "group_counts", "group_mean", "group_var")
INT8_MAX = 127


def quantise_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int8 (N, E), float32 scales (N,)) of float rows (N, E), one symmetric scale per row:
    the error of each value is at most half its row's scale."""
    rows = np.asarray(rows, dtype=np.float64)
    peak = np.abs(rows).max(axis=1) if rows.size else np.zeros(len(rows))
    scales = np.where(peak > 0, peak / INT8_MAX, 1.0).astype(np.float32)
    q = np.clip(np.rint(rows / scales[:, None].astype(np.float64)), -INT8_MAX, INT8_MAX)
    return q.astype(np.int8), scales


def dequantise_rows(q: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """float32 rows (N, E) of int8 rows and their scales."""
    return q.astype(np.float32) * np.asarray(scales, dtype=np.float32)[:, None]


def unit_exemplars(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """The exemplars (N, E) dequantised and L2-normalised, float32."""
    rows = dequantise_rows(arrays["exemplars"], arrays["scales"])
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def problems(arrays: dict[str, np.ndarray], labels: tuple[str, ...],
             embedding_dim: int) -> list[str]:
    """What is wrong with the arrays of an exemplar set for a package with `labels` and
    embeddings of `embedding_dim`, as 'key: problem' strings (empty: nothing)."""
    missing = [k for k in KEYS if k not in arrays]
    if missing:
        return [f"file: lacks {', '.join(missing)}"]
    q, scales = arrays["exemplars"], arrays["scales"]
    owners, groups = arrays["exemplar_labels"], arrays["exemplar_groups"]
    n, k, g = len(q), len(labels), len(arrays["groups"])
    found = []
    if q.dtype != np.int8 or q.ndim != 2 or q.shape[1] != embedding_dim or n == 0:
        found.append(f"exemplars: int8 (N, {embedding_dim}) with N > 0 expected, got "
                     f"{q.dtype} {q.shape}")
    elif scales.shape != (n,) or not np.all(np.isfinite(scales)) or not np.all(scales > 0):
        found.append(f"scales: {n} finite positive values expected")
    elif tuple(str(x) for x in arrays["labels"]) != tuple(labels):
        found.append(f"labels: {[str(x) for x in arrays['labels']]}, the package's are "
                     f"{list(labels)}")
    elif owners.shape != (n,) or owners.min() < 0 or owners.max() >= k:
        found.append(f"exemplar_labels: one class index in [0, {k}) per exemplar expected")
    elif groups.shape != (n,) or groups.min() < 0 or groups.max() >= g:
        found.append(f"exemplar_groups: one corpus index in [0, {g}) per exemplar expected")
    elif (arrays["group_mean"].shape != (g, embedding_dim)
          or arrays["group_var"].shape != (g, embedding_dim)
          or arrays["group_counts"].shape != (g, k)):
        found.append(f"group_mean, group_var, group_counts: shapes ({g}, {embedding_dim}) and "
                     f"({g}, {k}) expected")
    return found
