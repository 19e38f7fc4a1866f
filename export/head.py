"""The head as plain arrays: projection with its BatchNorm folded in, then the classifier.

    embedding = pooled @ projection_weight.T + projection_bias        (B, E)
    logits    = relu(embedding) @ classifier_weight.T + classifier_bias   (B, K)

equals `EmotionModel.head(pooled)` in eval mode; stored as head.npz (float32, no pickles).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edge_ser_train.model import EmotionModel


@torch.no_grad()
def head_arrays(model: EmotionModel) -> dict[str, np.ndarray]:
    linear, norm = model.projection[0], model.projection[1]
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)  # (E,)
    weight = linear.weight * scale[:, None]
    bias = (linear.bias - norm.running_mean) * scale + norm.bias
    return {"projection_weight": weight.numpy().astype(np.float32),
            "projection_bias": bias.numpy().astype(np.float32),
            "classifier_weight": model.classifier.weight.numpy().astype(np.float32),
            "classifier_bias": model.classifier.bias.numpy().astype(np.float32)}


@torch.no_grad()
def head_parity(model: EmotionModel, arrays: dict[str, np.ndarray], seed: int = 0) -> float:
    """max |numpy head - torch head| of the logits on random pooled vectors."""
    model.eval()
    pooled_dim = arrays["projection_weight"].shape[1]
    pooled = torch.from_numpy(np.random.default_rng(seed).standard_normal(
        (64, pooled_dim)).astype(np.float32)).abs()
    logits, _ = model.head(pooled)
    emb = pooled.numpy() @ arrays["projection_weight"].T + arrays["projection_bias"]
    ours = np.maximum(emb, 0) @ arrays["classifier_weight"].T + arrays["classifier_bias"]
    return float(np.abs(ours - logits.numpy()).max())


def save_head(path: Path, arrays: dict[str, np.ndarray]) -> None:
    np.savez(path, **arrays)
