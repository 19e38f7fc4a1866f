"""What adaptation does differently for each model family; the loops (`train.adapt`), the
inference passes (`train.inference`) and the guard (`train.adapt_guard`) ask here.

    family     head (frozen by NNPM)      learning rates               source loss
    tcn        `classifier`               one                          cross-entropy
    multigate  every route's head         the GE2E stream at           cross-entropy and the
               (`heads`)                  `ge2e_lr_scale` times the    contrastive term, as in
                                          rate, as in training         training

Every multigate clip, source and target alike, takes the shared route (`languages=None`): the
runtime scores only the shared gate and head, the memory bank holds the shared route's
embeddings, and the target has no route of its own. So the shared gate, the shared head (not
under NNPM) and every stream adapt; the per-language gates and heads are not optimised and
stay as trained.
"""

from __future__ import annotations

import torch
from torch import nn


def is_multigate(model: nn.Module) -> bool:
    return hasattr(model, "stream_names")


def head_modules(model: nn.Module) -> list[nn.Module]:
    """The classifier head(s) that NNPM keeps as trained."""
    return list(model.heads) if is_multigate(model) else [model.classifier]


def n_classes(model: nn.Module) -> int:
    if is_multigate(model):
        return model.heads[-1][-1].out_features
    return model.classifier.out_features


def embedding_dim(model: nn.Module) -> int:
    """E of the embedding (B, E) that `forward` gives beside the logits."""
    if is_multigate(model):
        return model.branches["tcn"].projection[0].out_features
    return model.classifier.in_features


def optimizer_groups(model: nn.Module, extra: list[nn.Parameter] = ()) -> list[dict]:
    """AdamW parameter groups of the model's trainable parameters (`requires_grad`) and `extra`
    (learning at the full rate). A group's `lr_scale` multiplies the scheduled rate. A multigate
    model's per-language gates and heads are left out: no clip takes their routes (they would
    get zero gradients, and weight decay alone would shrink them)."""
    if not is_multigate(model):
        return [{"params": [*(p for p in model.parameters() if p.requires_grad), *extra]}]
    shared = model.router.shared
    kept = {id(p) for route in (*model.gates[:shared], *model.heads[:shared])
            for p in route.parameters()}
    groups = []
    for i, group in enumerate(model.optimizer_groups()):  # the first: the full rate
        params = [p for p in group["params"] if p.requires_grad and id(p) not in kept]
        params += list(extra) if i == 0 else []
        if params:
            groups.append({"params": params, "lr_scale": group["lr_scale"]})
    return groups


def source_aux_terms(model: nn.Module, embedding: torch.Tensor,
                     targets: torch.Tensor) -> dict[str, torch.Tensor]:
    """Loss terms beside cross-entropy on labelled source clips: a multigate model's
    contrastive term ("aux"); none for tcn."""
    if not is_multigate(model) or model.contrastive_weight == 0.0:
        return {}
    return {"aux": model.aux_loss(embedding, targets)}
