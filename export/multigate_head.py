"""A multigate model's part after pooling as plain arrays (head.npz), for the shared route.

    stream_weight_<s>, stream_bias_<s>   each branch's projection with its BatchNorm folded in
    gate_weight_<0|1>, gate_bias_<0|1>   the shared gate's MLP
    head_weight_<i>, head_bias_<i>       the shared head's linear layers

`edge_ser.gated_scoring.GatedScorer` runs them in numpy; `head_parity` holds it to the torch
model's shared route (`MultiGateModel.parts` with no languages) on random pooled vectors.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edge_ser.gated_scoring import GatedScorer
from edge_ser_train.multigate.heads import ACTIVATIONS


def _fold(projection: nn.Sequential) -> tuple[np.ndarray, np.ndarray]:
    linear, norm = projection[0], projection[1]
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    weight = linear.weight * scale[:, None]
    bias = (linear.bias - norm.running_mean) * scale + norm.bias
    return weight.numpy().astype(np.float32), bias.numpy().astype(np.float32)


def _activation(head: nn.Sequential) -> str:
    names = {type(m) for m in head if not isinstance(m, (nn.Linear, nn.Dropout))}
    if not names:
        return "linear"
    if len(names) != 1:
        raise ValueError(f"the shared head mixes activations {sorted(n.__name__ for n in names)}")
    kind = names.pop()
    return next(name for name, cls in ACTIVATIONS.items() if cls is kind)


@torch.no_grad()
def head_arrays(model) -> tuple[dict[str, np.ndarray], dict]:
    """(arrays of head.npz, the manifest's `head` fields other than the file) for the shared
    route of `model` (a MultiGateModel)."""
    model.eval()
    arrays: dict[str, np.ndarray] = {}
    streams = []
    for i, name in enumerate(model.stream_names):
        weight, bias = _fold(model.branches[name].projection)
        arrays[f"stream_weight_{i}"], arrays[f"stream_bias_{i}"] = weight, bias
        streams.append({"name": name, "dim": int(weight.shape[1])})
    shared = model.router.shared
    gate = [m for m in model.gates[shared].mlp if isinstance(m, nn.Linear)]
    for i, layer in enumerate(gate):
        arrays[f"gate_weight_{i}"] = layer.weight.numpy().astype(np.float32)
        arrays[f"gate_bias_{i}"] = layer.bias.numpy().astype(np.float32)
    head = model.heads[shared]
    layers = [m for m in head if isinstance(m, nn.Linear)]
    for i, layer in enumerate(layers):
        arrays[f"head_weight_{i}"] = layer.weight.numpy().astype(np.float32)
        arrays[f"head_bias_{i}"] = layer.bias.numpy().astype(np.float32)
    embedding_dim = int(arrays["stream_weight_0"].shape[0])
    spec = {"family": "multigate", "route": "shared", "streams": streams,
            "pooled_dim": sum(s["dim"] for s in streams), "embedding_dim": embedding_dim,
            "gate_hidden": int(arrays["gate_weight_0"].shape[0]), "layers": len(layers),
            "activation": _activation(head),
            "pooling": "per stream, attention over the window's frames: softmax of the "
                       "logits, weighted mean of the vectors"}
    return arrays, spec


@torch.no_grad()
def head_parity(model, arrays: dict[str, np.ndarray], spec: dict, seed: int = 0) -> float:
    """max |numpy - torch| of the shared route's logits and embedding on random pooled
    vectors (one per stream), relative to their largest magnitude when that exceeds 1: a
    stream nearly constant over the clips of its batch-norm statistics (a target segment set
    after `adapt`'s statistics pass) scales random vectors into the hundreds, where float32
    rounding alone passes an absolute limit."""
    model.eval()
    rng = np.random.default_rng(seed)
    pooled = [rng.standard_normal((64, s["dim"])).astype(np.float32) for s in spec["streams"]]
    streams = torch.stack([model.branches[name].projection(torch.from_numpy(p))
                           for name, p in zip(model.stream_names, pooled)], dim=1)
    shared = model.router.shared
    weights = model.gates[shared](streams)
    embedding = (weights.unsqueeze(-1) * streams).sum(dim=1)
    logits = model.heads[shared](embedding)
    n_classes = int(arrays[f"head_weight_{spec['layers'] - 1}"].shape[0])
    centroids = np.eye(n_classes, spec["embedding_dim"], dtype=np.float32)
    scorer = GatedScorer(arrays, spec, centroids, np.arange(n_classes), n_classes, 0.1, 1, 0.0)
    ours_emb = scorer.embed(np.concatenate(pooled, axis=1))
    embedding, logits = embedding.numpy(), logits.numpy()
    scale = max(1.0, float(np.abs(embedding).max()), float(np.abs(logits).max()))
    return float(max(np.abs(ours_emb - embedding).max(),
                     np.abs(scorer.logits(ours_emb) - logits).max())) / scale
