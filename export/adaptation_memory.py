"""The source exemplar set of a package (`edge_ser.adaptation_memory` holds its format).

Per source corpus (one language each) and class, the L2-normalised clip embeddings are reduced
to at most `per_class_per_language` rows (spherical k-means prototypes, or a seeded sample of
the clips), stored INT8 with one scale per row, with their class, corpus, and per corpus the
mean and variance of the raw embeddings. When the file would exceed `max_bytes`, fewer rows per
corpus and class are kept until it fits. NNPM without source audio builds its memory from it
(`edge_ser_train.memory.SourceMemory.from_exemplars`); the runtime never reads it.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from edge_ser import adaptation_memory
from edge_ser.engine_build.errors import ExportError
from edge_ser_export.config import AdaptationMemoryConfig
from edge_ser_train.centroids import normalise, spherical_kmeans


def _cell_rows(units: np.ndarray, count: int, cfg: AdaptationMemoryConfig, seed: int
               ) -> np.ndarray:
    """At most `count` unit rows standing for the unit rows `units` of one corpus and class."""
    if len(units) <= count:
        return units
    if cfg.selection == "sample":
        picks = np.random.default_rng(seed).choice(len(units), size=count, replace=False)
        return units[np.sort(picks)]
    return spherical_kmeans(units, count, cfg.kmeans_iterations, seed)


def build_exemplars(embeddings: np.ndarray, targets: np.ndarray, corpora: list[str],
                    languages: dict[str, str], labels: tuple[str, ...],
                    cfg: AdaptationMemoryConfig, per_cell: int | None = None
                    ) -> dict[str, np.ndarray]:
    """embeddings (n, E) of source clips, their class indices (n,) and corpus names (n,) ->
    the arrays of adaptation_memory.npz with at most `per_cell` (default: the config's) rows
    per corpus and class. `languages`: corpus name -> language (a missing one: the name)."""
    per_cell = cfg.per_class_per_language if per_cell is None else per_cell
    embeddings = np.asarray(embeddings, dtype=np.float64)
    targets = np.asarray(targets)
    groups = sorted(set(corpora))
    group_of = np.array([groups.index(c) for c in corpora])
    units = normalise(embeddings)
    rows, owners, members = [], [], []
    counts = np.zeros((len(groups), len(labels)), dtype=np.int32)
    mean = np.zeros((len(groups), embeddings.shape[1]), dtype=np.float32)
    var = np.zeros_like(mean)
    for g in range(len(groups)):
        mine = group_of == g
        mean[g], var[g] = embeddings[mine].mean(axis=0), embeddings[mine].var(axis=0)
        for k in range(len(labels)):
            cell = units[mine & (targets == k)]
            counts[g, k] = len(cell)
            if not len(cell):
                continue
            chosen = _cell_rows(cell, per_cell, cfg, cfg.seed + 1000 * g + k)
            rows.append(chosen)
            owners.extend([k] * len(chosen))
            members.extend([g] * len(chosen))
    q, scales = adaptation_memory.quantise_rows(normalise(np.concatenate(rows)))
    return {"exemplars": q, "scales": scales,
            "exemplar_labels": np.asarray(owners, dtype=np.int16),
            "exemplar_groups": np.asarray(members, dtype=np.int16),
            "labels": np.asarray(labels), "groups": np.asarray(groups),
            "group_languages": np.asarray([languages.get(c, c) for c in groups]),
            "group_counts": counts, "group_mean": mean, "group_var": var}


def npz_bytes(arrays: dict[str, np.ndarray]) -> int:
    """The size of the file `save` writes for `arrays`."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getbuffer().nbytes


def build_within_limit(embeddings: np.ndarray, targets: np.ndarray, corpora: list[str],
                       languages: dict[str, str], labels: tuple[str, ...],
                       cfg: AdaptationMemoryConfig) -> tuple[dict[str, np.ndarray], int]:
    """(arrays, rows per corpus and class kept): the largest set of at most
    `per_class_per_language` rows per cell whose file fits `max_bytes`."""
    per_cell = cfg.per_class_per_language
    while per_cell >= 1:
        arrays = build_exemplars(embeddings, targets, corpora, languages, labels, cfg, per_cell)
        size = npz_bytes(arrays)
        if size <= cfg.max_bytes:
            return arrays, per_cell
        # rows scale the size: jump near the fitting count, then step down
        per_cell = min(per_cell - 1, int(per_cell * cfg.max_bytes / size))
    raise ExportError(f"adaptation memory: one exemplar per corpus and class does not fit "
                      f"adaptation_memory.max_bytes {cfg.max_bytes}")


def save(path: Path, arrays: dict[str, np.ndarray]) -> None:
    np.savez(path, **arrays)


def manifest_section(arrays: dict[str, np.ndarray], per_cell: int | None,
                     cfg: AdaptationMemoryConfig | None, origin: str) -> dict:
    """The manifest's `adaptation_memory` section (its file is listed under `files`)."""
    return {"file": adaptation_memory.FILE, "exemplars": int(len(arrays["exemplars"])),
            "per_class_per_language": per_cell,
            "selection": cfg.selection if cfg is not None else None,
            "groups": [str(g) for g in arrays["groups"]],
            "languages": [str(g) for g in arrays["group_languages"]],
            "dtype": "int8, one float32 scale per row", "origin": origin,
            "use": "source evidence of `adapt` without --source; the runtime never reads it"}


def checkpoint_entry(arrays: dict[str, np.ndarray]) -> dict:
    """The set as a checkpoint's `extra["adaptation_memory"]` (tensors and lists of names, which
    weights-only loading reads); `adapt` reads it from a start checkpoint as from a package."""
    import torch

    return {k: [str(x) for x in v] if v.dtype.kind == "U" else torch.from_numpy(np.array(v))
            for k, v in arrays.items()}
