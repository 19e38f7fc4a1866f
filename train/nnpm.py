"""NNPM's objective: the memory loss on source, pseudo multilabels and their loss on target.

Notation: f a feature (embedding) of one utterance, m_j the memory slots (unit rows, class y_j),
s_j = cos(f, m_j), tau a temperature, K classes.

- class probabilities from the memory (prior-free: a class' many slots do not outvote a class'
  few; each class scores by the log-mean-exp of its slots' similarities):
      log p_mem(c | f) = log_softmax_c( log mean_{j: y_j = c} exp(s_j / tau) )
- memory loss on a labelled source feature, its own slot left out (it would answer itself):
      L_mem = -log p_mem(y | f)
- pseudo multilabel of a target feature: the k most similar slots (in adaptation: a few
  centroids per class of the slots, or a memory bank's centroids) vote with weights
  softmax(s_j / tau) over those k; q_c is the weight of class c (sum_c q_c = 1). The label is
  the set Y = {c : q_c >= min_share} (always holding the top class), with the confidence
  w = max_c q_c. A single pseudo-label is Y = {argmax q}.
- multilabel loss on target (the set says "one of these"; a one-class set is cross-entropy,
  the set of all classes carries no information and costs nothing), with w rescaled so every
  pseudo class carries the same total weight:
      L_ml = -w log sum_{c in Y} softmax(logits)_c
  on the classifier's logits, and the same on the memory's class probabilities log p_mem(c | f)
  of the target feature (it pulls the feature toward slots of its candidate classes).

Every function takes and returns tensors; nothing here holds state.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from edge_ser_train.memory import SourceMemory


def class_log_probs(sims: torch.Tensor, slot_labels: torch.Tensor, n_classes: int,
                    temperature: float, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """log p_mem(c | f) (B, K) from similarities `sims` (B, N) to slots of class `slot_labels`.

    `exclude` (B,) optional slot index per row that is left out (its own utterance). A class
    with no slot left gets log-probability -inf."""
    logits = sims / temperature
    counts = torch.bincount(slot_labels, minlength=n_classes).to(sims.dtype).expand(
        len(sims), n_classes).clone()
    if exclude is not None:
        rows = torch.arange(len(sims), device=sims.device)
        logits = logits.index_put((rows, exclude), torch.tensor(float("-inf"), dtype=sims.dtype))
        counts[rows, slot_labels[exclude]] -= 1
    top = logits.max(dim=1, keepdim=True).values.detach()
    sums = torch.zeros(len(sims), n_classes, dtype=sims.dtype, device=sims.device)
    sums = sums.index_add(1, slot_labels, torch.exp(logits - top))
    # log-mean-exp per class; an empty class has sum 0 -> -inf
    log_mean = torch.log(sums.clamp_min(1e-30)) - torch.log(counts.clamp_min(1.0)) + top
    log_mean = torch.where(counts > 0, log_mean, torch.full_like(log_mean, float("-inf")))
    return torch.log_softmax(log_mean, dim=1)


def memory_loss(features: torch.Tensor, targets: torch.Tensor, memory: SourceMemory,
                temperature: float, indices: torch.Tensor | None = None) -> torch.Tensor:
    """Mean -log p_mem(y | f) of source `features` (B, E) with classes `targets` (B,).

    `indices` (B,) are the features' own slots, left out of their scores."""
    log_p = class_log_probs(memory.similarities(features), memory.labels, memory.n_classes,
                            temperature, indices)
    return F.nll_loss(log_p, targets)


def knn_class_shares(sims: torch.Tensor, slot_labels: torch.Tensor, n_classes: int, k: int,
                     temperature: float) -> torch.Tensor:
    """q (B, K): each class' share of the similarity-weighted vote of the k nearest slots."""
    k = min(k, sims.shape[1])
    top_sims, top_idx = sims.topk(k, dim=1)
    weights = torch.softmax(top_sims / temperature, dim=1)
    shares = torch.zeros(len(sims), n_classes, dtype=sims.dtype, device=sims.device)
    return shares.scatter_add(1, slot_labels[top_idx], weights)


@dataclass(frozen=True)
class PseudoLabels:
    """Pseudo multilabels of n target utterances."""

    sets: torch.Tensor
    """(n, K) bool: the candidate classes of each utterance (never empty)."""
    top: torch.Tensor
    """(n,) the class with the largest share."""
    confidence: torch.Tensor
    """(n,) the top class' share of the neighbours' vote, in (0, 1]."""
    shares: torch.Tensor
    """(n, K) the vote shares the sets were read from."""

    def stats(self, labels: tuple[str, ...]) -> dict:
        """Summary for progress lines and the adaptation record."""
        sizes = self.sets.sum(dim=1).float()
        counts = torch.bincount(self.top, minlength=len(labels)).tolist()
        return {"mean_set_size": round(float(sizes.mean()), 3),
                "single_class_share": round(float((sizes == 1).float().mean()), 3),
                "mean_confidence": round(float(self.confidence.mean()), 3),
                "top_class_counts": dict(zip(labels, counts))}


def pseudo_multilabels(shares: torch.Tensor, mode: str = "multi",
                       min_share: float = 0.2) -> PseudoLabels:
    """Candidate sets from vote shares (n, K): multi = classes with share >= min_share plus the
    top class; single = the top class alone."""
    confidence, top = shares.max(dim=1)
    if mode == "single":
        sets = F.one_hot(top, shares.shape[1]).bool()
    elif mode == "multi":
        sets = (shares >= min_share) | F.one_hot(top, shares.shape[1]).bool()
    else:
        raise ValueError(f"pseudo-label mode must be 'multi' or 'single', got {mode!r}")
    return PseudoLabels(sets=sets, top=top, confidence=confidence, shares=shares)


def label_targets(features: torch.Tensor, memory: SourceMemory, k: int, temperature: float,
                  mode: str = "multi", min_share: float = 0.2) -> PseudoLabels:
    """Pseudo multilabels of target `features` (n, E) from their similarities to `memory`."""
    shares = knn_class_shares(memory.similarities(features), memory.labels, memory.n_classes,
                              k, temperature)
    return pseudo_multilabels(shares, mode, min_share)


def class_balanced_weights(pseudo: PseudoLabels) -> torch.Tensor:
    """Per-utterance weights (n,): confidence, rescaled so every pseudo class present carries the
    same total weight and the mean weight equals the mean confidence.

    Without it the class the source-trained model already prefers on the target takes most of
    the loss and the adapted model drifts further toward it."""
    n_classes = pseudo.shares.shape[1]
    confidence = pseudo.confidence
    mass = torch.zeros(n_classes, dtype=confidence.dtype).index_add(0, pseudo.top, confidence)
    present = mass > 0
    per_class = torch.where(present, mass.sum() / (present.sum() * mass.clamp_min(1e-12)),
                            torch.zeros_like(mass))
    return confidence * per_class[pseudo.top]


def multilabel_loss(logits: torch.Tensor, sets: torch.Tensor,
                    weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over the batch of -w log sum_{c in set} softmax(logits)_c; logits (B, K), sets
    (B, K) bool, weights (B,) (default 1)."""
    in_set = torch.logsumexp(logits.masked_fill(~sets, float("-inf")), dim=1)
    per_item = torch.logsumexp(logits, dim=1) - in_set
    if weights is None:
        return per_item.mean()
    return (weights * per_item).mean()



def target_loss_terms(logits: torch.Tensor, embedding: torch.Tensor, sets: torch.Tensor,
                      weights: torch.Tensor, memory: SourceMemory, temperature: float,
                      scale: float) -> dict[str, torch.Tensor]:
    """NNPM's loss terms on a target batch, each times `scale`: the multilabel loss on the
    classifier's `logits` (B, K) ("ml") and on the memory's class log-probabilities of
    `embedding` (B, E) ("ml_mem"); `sets` (B, K) bool and `weights` (B,) are the batch's pseudo
    multilabels and their weights."""
    terms = {"ml": scale * multilabel_loss(logits, sets, weights)}
    log_p = class_log_probs(memory.similarities(embedding), memory.labels, memory.n_classes,
                            temperature)
    terms["ml_mem"] = scale * multilabel_loss(log_p, sets, weights)
    return terms


def ramp(epoch: int, ramp_epochs: int) -> float:
    """The target loss' scale in epoch `epoch` (0-based): rising linearly to 1 over
    `ramp_epochs` epochs, 1 / (ramp_epochs + 1) in the first."""
    return min(1.0, (epoch + 1) / (ramp_epochs + 1))
