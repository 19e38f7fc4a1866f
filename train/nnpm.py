"""NNPM's objective: the memory loss on source, pseudo multilabels and their loss on target.

Notation: f a feature (embedding) of one utterance, m_j the memory slots (unit rows, class y_j),
s_j = cos(f, m_j), tau a temperature, K classes.

- class probabilities from the memory (prior-free: a class' many slots do not outvote a class'
  few; each class scores by the log-mean-exp of its slots' similarities):
      log p_mem(c | f) = log_softmax_c( log mean_{j: y_j = c} exp(s_j / tau) )
- memory loss on a labelled source feature, its own slot left out (it would answer itself):
      L_mem = -log p_mem(y | f)
- pseudo multilabel of a target feature: the k most similar slots vote with weights
  softmax(s_j / tau) over those k; q_c is the weight of class c (sum_c q_c = 1). The label is
  the set Y = {c : q_c >= min_share} (always holding the top class), with the confidence
  w = max_c q_c. A single pseudo-label is Y = {argmax q}.
- multilabel loss on target (the set says "one of these"; a one-class set is cross-entropy,
  the set of all classes carries no information and costs nothing):
      L_ml = -w log sum_{c in Y} softmax(logits)_c

Every function takes and returns tensors; nothing here holds state.
"""

from __future__ import annotations

import math
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


def class_balanced_weights(pseudo: PseudoLabels, keep: torch.Tensor | None = None
                           ) -> torch.Tensor:
    """Per-utterance weights (n,): confidence, rescaled so every pseudo class present carries the
    same total weight and the mean weight equals the mean confidence.

    `keep` (n,) bool, optional: only these utterances are weighted (the others get 0, and the
    totals and the mean are over the kept ones).

    Without it the class the source-trained model already prefers on the target takes most of
    the loss and the adapted model drifts further toward it."""
    n_classes = pseudo.shares.shape[1]
    confidence = pseudo.confidence if keep is None else pseudo.confidence * keep
    mass = torch.zeros(n_classes, dtype=confidence.dtype).index_add(0, pseudo.top, confidence)
    present = mass > 0
    per_class = torch.where(present, mass.sum() / (present.sum() * mass.clamp_min(1e-12)),
                            torch.zeros_like(mass))
    return confidence * per_class[pseudo.top]


def select_confident(pseudo: PseudoLabels, share: float,
                     eligible: torch.Tensor | None = None) -> torch.Tensor:
    """(n,) bool: per pseudo class (the top class), its `share` most confident utterances.

    Class-balanced selection (Zou et al., 2018): every class keeps the same share of the
    utterances it was given, at least one, so a class the source model rarely predicts on the
    target is not crowded out by the confident majority class, and the least certain labels
    of every class wait until the model has improved. share 1 keeps everything.

    `eligible` (n,) bool, optional: only these utterances can be kept, and a class' share is of
    its eligible ones (a class with none keeps none)."""
    if not 0.0 < share <= 1.0:
        raise ValueError(f"the selected share must be in (0, 1], got {share}")
    if eligible is None:
        eligible = torch.ones(len(pseudo.top), dtype=torch.bool)
    keep = torch.zeros(len(pseudo.top), dtype=torch.bool)
    if share >= 1.0:
        return keep | eligible
    for c in torch.unique(pseudo.top[eligible]).tolist():
        members = torch.nonzero((pseudo.top == c) & eligible).flatten()
        n_keep = max(1, math.ceil(share * len(members) - 1e-9))
        order = torch.argsort(pseudo.confidence[members], descending=True, stable=True)
        keep[members[order[:n_keep]]] = True
    return keep


def anchored_shares(shares: torch.Tensor, first: torch.Tensor | None, anchor: float
                    ) -> torch.Tensor:
    """Vote shares (n, K) blended with the first refresh's: anchor * first + (1 - anchor) *
    shares. The first shares come from the starting model, before any training on its own
    pseudo-labels, so they cannot have drifted toward its mistakes; the blend bounds how far
    later labels can move from them. anchor 0 or no first shares returns `shares`."""
    if first is None or anchor <= 0.0:
        return shares
    return anchor * first.to(shares.dtype) + (1.0 - anchor) * shares


def equipartitioned_shares(shares: torch.Tensor, iterations: int = 50,
                           floor: float = 1e-6) -> torch.Tensor:
    """Vote shares (n, K) rescaled per class and per utterance (Sinkhorn-Knopp) until every class
    holds n / K of the total share and every row still sums to 1.

    The equipartition of self-labelling (Asano et al., 2020): under a uniform class prior on the
    target, a class the source model over-predicts there gives up the utterances it holds least
    surely to their next most likely class. Shares are floored at `floor`, so a class no
    neighbour voted for is reachable only when the rebalancing needs it badly."""
    q = shares.double().clamp_min(floor)
    q = q / q.sum(dim=1, keepdim=True)
    column = len(q) / q.shape[1]
    for _ in range(iterations):
        q = q * (column / q.sum(dim=0))
        q = q / q.sum(dim=1, keepdim=True)
    return q.to(shares.dtype)


def scheduled_share(start: float, end: float, refresh: int, n_refreshes: int) -> float:
    """The selected share at refresh number `refresh` (0-based) of `n_refreshes`: linear from
    `start` at the first refresh to `end` at the last."""
    if n_refreshes <= 1:
        return start
    t = min(1.0, max(0.0, refresh / (n_refreshes - 1)))
    return start + (end - start) * t


def propagate_shares(shares: torch.Tensor, features: torch.Tensor, k: int, alpha: float,
                     temperature: float, iterations: int = 20) -> torch.Tensor:
    """Vote shares (n, K) smoothed over the target's own k-nearest-neighbour graph.

    Label propagation (Zhou et al., 2004): Q <- (1 - alpha) q + alpha W Q, iterated from Q = q,
    with W the row-normalised affinities softmax(cos / temperature) of each target utterance
    to its k nearest other target utterances (`features` (n, E), normalised here). alpha 0
    returns q; rows of the result sum to 1. Pseudo labels then follow the target's own
    structure as well as the source memory."""
    if alpha <= 0.0 or k <= 0 or len(shares) < 2:
        return shares
    feats = F.normalize(features.float(), dim=1)
    sims = feats @ feats.T
    sims.fill_diagonal_(float("-inf"))
    k = min(k, len(shares) - 1)
    top_sims, top_idx = sims.topk(k, dim=1)
    weights = torch.softmax(top_sims / temperature, dim=1)
    q0 = shares.to(weights.dtype)
    q = q0
    for _ in range(iterations):
        q = (1.0 - alpha) * q0 + alpha * (weights.unsqueeze(2) * q[top_idx]).sum(dim=1)
    return (q / q.sum(dim=1, keepdim=True).clamp_min(1e-12)).to(shares.dtype)


def target_prototype_shares(shares: torch.Tensor, features: torch.Tensor, rounds: int,
                            temperature: float) -> torch.Tensor:
    """Vote shares (n, K) re-read from prototypes of the target's own features.

    Each round builds one prototype per class, the share-weighted mean of the normalised
    target features (`features` (n, E)), and re-votes every utterance by
    softmax(cos(feature, prototype) / temperature), as the clustering step of SHOT (Liang et
    al., 2020). The classes keep the memory's meaning while their centres move to where the
    target's utterances of that class lie, which the source memory cannot know. rounds 0
    returns the shares; a class with no weight keeps a zero prototype and gets little share."""
    if rounds <= 0:
        return shares
    feats = F.normalize(features.float(), dim=1)
    q = shares.float()
    for _ in range(rounds):
        prototypes = F.normalize(q.T @ feats, dim=1)
        q = torch.softmax(feats @ prototypes.T / temperature, dim=1)
    return q.to(shares.dtype)


def multilabel_loss(logits: torch.Tensor, sets: torch.Tensor,
                    weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over the batch of -w log sum_{c in set} softmax(logits)_c; logits (B, K), sets
    (B, K) bool, weights (B,) (default 1)."""
    in_set = torch.logsumexp(logits.masked_fill(~sets, float("-inf")), dim=1)
    per_item = torch.logsumexp(logits, dim=1) - in_set
    if weights is None:
        return per_item.mean()
    return (weights * per_item).mean()


def diversity_loss(logits: torch.Tensor) -> torch.Tensor:
    """log K - H(mean_batch softmax(logits)): zero when the batch predicts every class equally
    often on average, log K when it predicts one class only."""
    mean_p = torch.softmax(logits, dim=1).mean(dim=0)
    entropy = -(mean_p * torch.log(mean_p.clamp_min(1e-12))).sum()
    return math.log(logits.shape[1]) - entropy
