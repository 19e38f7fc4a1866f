"""The multigate family's part after pooling, in numpy: stream projections, the shared gate and
the shared head, then the memory bank and fusion as for every family (`edge_ser.scoring`).

    pooled (B, P) = per-stream attention-pooled vectors p_s, concatenated in stream order
    stream vector  u_s = W_s p_s + b_s              (projection, BatchNorm folded in)  (B, S, E)
    gate           w = softmax(G_1 relu(G_0 [u_1 .. u_S] + g_0) + g_1)                  (B, S)
    embedding      e = sum_s w_s u_s                                                    (B, E)
    logits         the shared head: DEPTH x (linear, activation), then linear            (B, K)

The runtime does not know the speaker's language, so it takes the shared route: the gate and
head trained for languages the model has no pair for (`edge_ser_train.multigate`).

head.npz (float32, no pickles): stream_weight_<s> (E, D_s), stream_bias_<s> (E,),
gate_weight_0 (H, S*E), gate_bias_0 (H,), gate_weight_1 (S, H), gate_bias_1 (S,),
head_weight_<i>, head_bias_<i> for i = 0..depth (the last maps to the K classes). The manifest's
`head` section names the streams, their widths and the head's activation.
"""

from __future__ import annotations

import math

import numpy as np

from edge_ser.scoring import WindowScorer, _softmax, read_head_and_bank

ACTIVATIONS = ("relu", "gelu", "tanh", "silu", "linear")
_erf = np.frompyfunc(math.erf, 1, 1)


def activate(name: str, x: np.ndarray) -> np.ndarray:
    """The activations a multigate head may use, as torch computes them (GELU: exact erf)."""
    if name == "relu":
        return np.maximum(x, 0.0)
    if name == "gelu":
        return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(x.dtype))
    if name == "tanh":
        return np.tanh(x)
    if name == "silu":
        return x / (1.0 + np.exp(-x))
    if name == "linear":
        return x
    raise ValueError(f"head activation {name!r} is unknown; choose one of {', '.join(ACTIVATIONS)}")


def head_problems(head: dict[str, np.ndarray], spec: dict, n_classes: int) -> tuple[list, int]:
    """What is wrong with a multigate head.npz against its manifest section; and E."""
    streams = spec.get("streams") or []
    problems = []
    if not streams:
        return ["head.streams: no stream listed"], 0
    if spec.get("activation") not in ACTIVATIONS:
        problems.append(f"head.activation: {spec.get('activation')!r} is not one of "
                        f"{', '.join(ACTIVATIONS)}")
    embedding_dim = spec.get("embedding_dim")
    for i, stream in enumerate(streams):
        w, b = head.get(f"stream_weight_{i}"), head.get(f"stream_bias_{i}")
        if w is None or b is None or w.shape != (embedding_dim, stream.get("dim")) \
                or b.shape != (embedding_dim,):
            problems.append(f"head.streams[{i}] ({stream.get('name')}): stream_weight_{i} must be "
                            f"({embedding_dim}, {stream.get('dim')}) with its bias")
    hidden = head.get("gate_weight_0")
    n = len(streams)
    if hidden is None or hidden.shape[1:] != (n * embedding_dim,) \
            or head.get("gate_weight_1", np.zeros(0)).shape != (n, hidden.shape[0]):
        problems.append(f"head.file: gate_weight_0 must be (H, {n * embedding_dim}) and "
                        f"gate_weight_1 ({n}, H)")
    layers = spec.get("layers")
    last = head.get(f"head_weight_{(layers or 0) - 1}")
    if not isinstance(layers, int) or layers < 1 or last is None:
        problems.append(f"head.layers: {layers!r} does not match head_weight_<i> in the file")
    elif last.shape[0] != n_classes:
        problems.append(f"labels: {n_classes} labels, but the shared head's last layer has shape "
                        f"{last.shape}")
    return problems, int(embedding_dim or 0)


class GatedScorer(WindowScorer):
    """Projections, shared gate and shared head of a multigate package, with the memory bank
    and fusion of `WindowScorer`. Immutable and thread-safe."""

    def __init__(self, head: dict[str, np.ndarray], spec: dict, centroids: np.ndarray,
                 centroid_labels: np.ndarray, n_classes: int, temperature: float, top_k: int,
                 memory_weight: float):
        dims = [int(s["dim"]) for s in spec["streams"]]
        self._splits = np.cumsum(dims)[:-1]
        self._stream_w = [np.ascontiguousarray(head[f"stream_weight_{i}"], dtype=np.float32)
                          for i in range(len(dims))]
        self._stream_b = [np.asarray(head[f"stream_bias_{i}"], dtype=np.float32)
                          for i in range(len(dims))]
        self._gate = [(np.ascontiguousarray(head[f"gate_weight_{i}"], dtype=np.float32),
                       np.asarray(head[f"gate_bias_{i}"], dtype=np.float32)) for i in (0, 1)]
        self._head = [(np.ascontiguousarray(head[f"head_weight_{i}"], dtype=np.float32),
                       np.asarray(head[f"head_bias_{i}"], dtype=np.float32))
                      for i in range(int(spec["layers"]))]
        self._activation = spec["activation"]
        self._init_memory(centroids, centroid_labels, n_classes, temperature, top_k,
                          memory_weight)
        self.pooled_dim = int(sum(dims))

    @classmethod
    def from_package(cls, package) -> GatedScorer:
        manifest = package.manifest
        head, (centroids, owners, temperature, top_k) = read_head_and_bank(package)
        return cls(head, manifest["head"], centroids, owners, len(package.labels), temperature,
                   top_k, manifest["fusion"]["memory_weight"])

    def stream_vectors(self, pooled: np.ndarray) -> np.ndarray:
        """pooled (B, P) -> (B, S, E)."""
        parts = np.split(pooled, self._splits, axis=1)
        return np.stack([p @ w.T + b for p, w, b in zip(parts, self._stream_w, self._stream_b)],
                        axis=1)

    def gate_weights(self, streams: np.ndarray) -> np.ndarray:
        """(B, S, E) -> the shared gate's weights (B, S), rows sum to 1."""
        (w0, b0), (w1, b1) = self._gate
        hidden = np.maximum(streams.reshape(len(streams), -1) @ w0.T + b0, 0.0)
        return _softmax(hidden @ w1.T + b1)

    def embed(self, pooled: np.ndarray) -> np.ndarray:
        streams = self.stream_vectors(pooled)
        return (self.gate_weights(streams)[:, :, None] * streams).sum(axis=1)

    def logits(self, embedding: np.ndarray) -> np.ndarray:
        x = embedding
        for w, b in self._head[:-1]:
            x = activate(self._activation, x @ w.T + b)
        w, b = self._head[-1]
        return x @ w.T + b
