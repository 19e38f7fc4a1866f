"""Whole utterances through a model: embeddings, logits, and a domain's batch-norm statistics.

Utterances are batched by length (less padding in every statistic). Inference uses the model's
running batch-norm statistics; `reestimate_bn_statistics` replaces them by a domain's own, and
`embed_domain` embeds a domain normalised by its own statistics, as a model used on that domain
normalises. Any model family: a multigate model's clips take the shared route.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from edge_ser import contract
from edge_ser_train import adapt_family
from edge_ser_train.model import EmotionModel

STATISTICS_BATCH = 64
"""Utterances per batch of a batch-norm statistics pass."""


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def padded(feats_list: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """(feats (B, T, N_MELS) zero-padded to the longest, lengths (B,))."""
    lengths = torch.tensor([len(f) for f in feats_list])
    batch = torch.zeros(len(feats_list), int(lengths.max()), contract.N_MELS)
    for row, f in enumerate(feats_list):
        batch[row, :len(f)] = torch.from_numpy(f)
    return batch, lengths


def by_length(feats_list: list[np.ndarray], batch_size: int, min_batch: int = 1
              ) -> Iterator[np.ndarray]:
    """Index batches of at most `batch_size` utterances of similar lengths, in length order.

    With `min_batch` 2 no batch holds a single utterance (batch norm in training mode cannot
    normalise one value per channel): a last batch of one joins the batch before it."""
    order = np.argsort([len(f) for f in feats_list], kind="stable")
    starts = list(range(0, len(order), batch_size))
    if min_batch > 1 and len(starts) > 1 and len(order) - starts[-1] < min_batch:
        starts.pop()
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(order)
        yield order[start:end]


@torch.no_grad()
def embed_all(model: EmotionModel, feats_list: list[np.ndarray], batch_size: int = 64
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(embeddings (n, E), logits (n, K)) of whole utterances, in input order, with the model's
    running batch-norm statistics (`embed_domain` normalises by a domain's own)."""
    embeddings = torch.empty(len(feats_list), adapt_family.embedding_dim(model))
    logits = torch.empty(len(feats_list), adapt_family.n_classes(model))
    model.eval()
    for idx in by_length(feats_list, batch_size):
        out, emb = model(*padded([feats_list[i] for i in idx]))
        embeddings[idx], logits[idx] = emb, out
    return embeddings, logits


@torch.no_grad()
def reestimate_bn_statistics(model: EmotionModel, feats_list: list[np.ndarray],
                             batch_size: int = STATISTICS_BATCH) -> None:
    """Replace every batch-norm layer's running statistics by their average over `feats_list`
    (whole utterances, at least 2): the model then normalises as a model trained on that domain
    would. Every batch holds at least 2 utterances, whatever their number."""
    if len(feats_list) < 2:
        raise ValueError(f"batch-norm statistics need at least 2 utterances, got "
                         f"{len(feats_list)}")
    layers = batchnorm_layers(model)
    momenta = [m.momentum for m in layers]
    model.eval()
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches
        m.train()
    try:
        for idx in by_length(feats_list, batch_size, min_batch=2):
            model(*padded([feats_list[i] for i in idx]))
    finally:
        for m, momentum in zip(layers, momenta):
            m.momentum = momentum
        model.eval()


@torch.no_grad()
def embed_domain(model: EmotionModel, feats_list: list[np.ndarray], own_statistics: bool
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(embeddings, logits) of whole utterances of one domain, in input order.

    own_statistics: batch norm normalises with this domain's statistics, averaged over all of
    `feats_list` (on a copy of the model), as a model used on that domain does; else with the
    model's running statistics. Statistics of single inference batches would differ from batch
    to batch (`embed_all` groups utterances by length, and length goes with emotion)."""
    if own_statistics:
        model = copy.deepcopy(model)
        reestimate_bn_statistics(model, feats_list)
    return embed_all(model, feats_list)


def predict(model: EmotionModel, feats_list: list[np.ndarray]) -> np.ndarray:
    """Class indices (n,) of whole utterances with the model's running statistics."""
    _, logits = embed_all(model, feats_list)
    return logits.argmax(1).numpy()
