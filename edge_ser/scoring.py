"""From encoder frames to class probabilities, in numpy: pooling, the head and the memory bank.

    frames (T, C) --stats_pool--> pooled (2C,) = [mean, std]
    pooled --projection (BatchNorm folded in)--> embedding e (E,)
    classifier:   p_cls = softmax(W_c relu(e) + b_c)
    memory bank:  s_m   = cos(e, centroid m) for the M centroids (a few per class, fp16 on disk)
                  score_k = mean of the top_k highest s_m among the centroids of class k
                  p_mem = softmax(score / temperature)
    fused:        p = softmax((1 - w) log p_cls + w log p_mem)      (w = fusion.memory_weight)
    similarity:   max_m s_m, the out-of-domain signal (low: unlike anything the model learnt from)

The same maths as `train.model.EmotionModel.head` plus the memory bank; no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_ser.package import ModelPackage

_VAR_FLOOR = 1e-6
"""Variance floor of the std half of the pooled vector (as in train.model.masked_stats_pool)."""
_LOG_FLOOR = 1e-12


def stats_pool(frames: np.ndarray) -> np.ndarray:
    """frames (T, C) -> (2C,) float32: mean and std over time, var clamped at 1e-6 before sqrt.

    Also accepts (B, T, C) -> (B, 2C). Sums run in float64: in float32, E[x^2] - mean^2 of
    near-constant frames is mostly rounding error."""
    frames = np.asarray(frames)
    if frames.ndim not in (2, 3) or frames.shape[-2] == 0:
        raise ValueError(f"stats_pool needs (T, C) or (B, T, C) frames with T >= 1, got shape "
                         f"{frames.shape}")
    x = frames.astype(np.float64)
    mean = x.mean(axis=-2)
    var = (x * x).mean(axis=-2) - mean * mean
    std = np.sqrt(np.maximum(var, _VAR_FLOOR))
    return np.concatenate([mean, std], axis=-1).astype(np.float32)


def encode_clip(backend, feats: np.ndarray) -> np.ndarray:
    """(T, N_MELS) log-mel of a whole clip -> (T // stride, C) encoder frames.

    The clip runs chunk by chunk with the state carried, exactly as a stream would. A trailing
    partial chunk is zero-padded only to fill the chunk; the outputs of padded frames are
    dropped, and since the encoder is causal they do not touch the frames before them."""
    feats = np.asarray(feats, dtype=np.float32)
    chunk, stride = backend.chunk_frames, backend.stride
    state = backend.init_state(1)
    outs = []
    for start in range(0, len(feats), chunk):
        piece = feats[start:start + chunk]
        valid = len(piece) // stride  # outputs whose whole stride group is real input
        if len(piece) < chunk:
            piece = np.concatenate([piece, np.zeros((chunk - len(piece), feats.shape[1]),
                                                    dtype=np.float32)])
        out, state = backend.run(piece[None], state)
        outs.append(out[0, :valid])
    if not outs:
        return np.zeros((0, backend.out_channels), dtype=np.float32)
    return np.concatenate(outs)


def read_head_and_bank(package: ModelPackage) -> tuple[dict, tuple]:
    """The package's head arrays, and its memory bank as (centroids, owners, temperature,
    top_k)."""
    manifest = package.manifest
    with np.load(package.path(manifest["head"]["file"]), allow_pickle=False) as data:
        head = {k: data[k] for k in data.files}
    with np.load(package.path(manifest["memory_bank"]["file"]), allow_pickle=False) as data:
        bank = (data["centroids"], data["centroid_labels"], float(data["temperature"]),
                int(data["top_k"]))
    return head, bank


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class WindowScores:
    probs: np.ndarray
    """(B, K) fused class probabilities, rows sum to 1."""
    classifier_probs: np.ndarray
    """(B, K) from the classifier head alone."""
    memory_probs: np.ndarray
    """(B, K) from the memory bank alone."""
    similarity: np.ndarray
    """(B,) highest cosine similarity to any memory centroid: the out-of-domain signal."""


class WindowScorer:
    """The head and the memory bank of a package, fused. Immutable and thread-safe."""

    def __init__(self, head: dict[str, np.ndarray], centroids: np.ndarray,
                 centroid_labels: np.ndarray, n_classes: int, temperature: float, top_k: int,
                 memory_weight: float):
        self._proj_w = np.ascontiguousarray(head["projection_weight"], dtype=np.float32)
        self._proj_b = np.asarray(head["projection_bias"], dtype=np.float32)
        self._cls_w = np.ascontiguousarray(head["classifier_weight"], dtype=np.float32)
        self._cls_b = np.asarray(head["classifier_bias"], dtype=np.float32)
        self._init_memory(centroids, centroid_labels, n_classes, temperature, top_k,
                          memory_weight)
        self.pooled_dim = self._proj_w.shape[1]

    def _init_memory(self, centroids: np.ndarray, centroid_labels: np.ndarray, n_classes: int,
                     temperature: float, top_k: int, memory_weight: float) -> None:
        """The memory bank and the fusion weight (shared by every model family's scorer)."""
        self._centroids = np.ascontiguousarray(centroids, dtype=np.float32)  # (M, E), unit norm
        self._members = tuple(np.flatnonzero(centroid_labels == k) for k in range(n_classes))
        if any(len(m) == 0 for m in self._members):
            raise ValueError("every class needs at least one memory centroid")
        # (K, m) centroid indices when every class has m centroids (as packages ship them):
        # then one sort ranks all classes at once, the same numbers as the per-class loop
        sizes = {len(m) for m in self._members}
        self._member_grid = np.stack(self._members) if len(sizes) == 1 else None
        self.temperature = float(temperature)
        self.top_k = int(top_k)
        self.memory_weight = float(memory_weight)

    @classmethod
    def from_package(cls, package: ModelPackage) -> WindowScorer:
        head, (centroids, owners, temperature, top_k) = read_head_and_bank(package)
        return cls(head, centroids, owners, len(package.labels), temperature, top_k,
                   package.manifest["fusion"]["memory_weight"])

    def embed(self, pooled: np.ndarray) -> np.ndarray:
        """pooled (B, 2C) -> embedding (B, E) (projection with BatchNorm folded in)."""
        return pooled @ self._proj_w.T + self._proj_b

    def logits(self, embedding: np.ndarray) -> np.ndarray:
        """embedding (B, E) -> classifier logits (B, K)."""
        return np.maximum(embedding, 0.0) @ self._cls_w.T + self._cls_b

    def memory_scores(self, embedding: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """embedding (B, E) -> (per-class top-k mean cosine (B, K), highest cosine (B,))."""
        norm = np.linalg.norm(embedding, axis=1, keepdims=True)
        sims = (embedding / np.maximum(norm, _LOG_FLOOR)) @ self._centroids.T  # (B, M)
        if self._member_grid is not None:
            width = min(self.top_k, self._member_grid.shape[1])
            top = np.sort(sims[:, self._member_grid], axis=2)[:, :, -width:]
            return top.mean(axis=2), sims.max(axis=1)
        per_class = np.empty((len(sims), len(self._members)), dtype=np.float32)
        for k, members in enumerate(self._members):
            top = np.sort(sims[:, members], axis=1)[:, -min(self.top_k, len(members)):]
            per_class[:, k] = top.mean(axis=1)
        return per_class, sims.max(axis=1)

    def score_pooled(self, pooled: np.ndarray) -> WindowScores:
        """pooled (B, 2C) = [mean, std] of encoder frames -> WindowScores (B rows)."""
        pooled = np.asarray(pooled, dtype=np.float32)
        if pooled.ndim == 1:
            pooled = pooled[None]
        if pooled.ndim != 2 or pooled.shape[1] != self.pooled_dim:
            raise ValueError(f"pooled must be (B, {self.pooled_dim}), got {pooled.shape}")
        emb = self.embed(pooled)
        classifier_probs = _softmax(self.logits(emb))
        per_class, similarity = self.memory_scores(emb)
        memory_probs = _softmax(per_class / self.temperature)
        w = self.memory_weight
        fused = _softmax((1.0 - w) * np.log(np.maximum(classifier_probs, _LOG_FLOOR))
                         + w * np.log(np.maximum(memory_probs, _LOG_FLOOR)))
        return WindowScores(probs=fused.astype(np.float32),
                            classifier_probs=classifier_probs.astype(np.float32),
                            memory_probs=memory_probs.astype(np.float32),
                            similarity=similarity.astype(np.float32))
