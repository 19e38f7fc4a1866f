"""Did adapting help? An estimate from unlabelled target clips and the labelled source evidence
at hand, and the rule `edge-ser adapt` decides by.

Nothing here sees a target label, so nothing here measures accuracy on the target. The checks
look for the ways self-training is known to go wrong, each comparing the adapted model with the
model it started from, both as the runtime uses them (their own running batch-norm statistics,
the classifier's class of each whole clip):

    class_balance     the normalised entropy of the predicted class shares on the target,
                      H(shares) / log K (1: every class equally often, 0: one class only).
                      Harm: the adapted model's falls by more than `max_balance_drop` below
                      the start model's: pseudo-labels that repeat the start model's confusion
                      and training that amplifies it end in one class taking over (0.1: one
                      class of four vanishing from an even spread costs 0.21, one taking 55%
                      of the clips 0.15; a correction of a lopsided start raises it).
    anchor_agreement  the anchors are the target clips whose class the start model's
                      classifier and its memory (the memory bank, or class centroids of the
                      source clips) name alike: two heads agreeing, the start model's surest
                      clips. Here the start model normalises the target by the target's own
                      batch statistics (as NNPM's first pseudo-labels do): under the source's
                      statistics a shifted target can land near one class for both heads, and
                      the anchors would be that class' only. Harm: the adapted model names the
                      anchor's class on fewer than 1/K + min_anchor_kept * (1 - 1/K) of them
                      (0.5: at least half way from chance to all). A scrambled, drifted or
                      permuted model keeps about 1/K (chance); one that learnt from
                      pseudo-labels of that memory keeps most. Needs MIN_ANCHORS anchors.
    source_accuracy   with labelled source clips (--source): UA on (at most SOURCE_CLIPS of)
                      them, each model normalising them by their own statistics. Harm: the
                      adapted model's UA falls more than `max_source_drop` below the start
                      model's (the encoder forgot the classes; 0.05 is about three standard
                      errors of UA on 1000 clips). Without source clips it is not computed:
                      a memory bank's centroids live in the start model's embedding space and
                      NNPM without source audio keeps the classifier head, so they cannot tell
                      the two models apart.

The rule: the estimate is "not worse" when every check that could be computed passes, and
"worse" when any fails; on "worse" `adapt` keeps the start model's weights (guard.enabled), and
the adapted weights otherwise. It is a detector of gross harm (collapse, scrambling, forgetting);
a change of a few points either way passes unseen.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from edge_ser.metrics import score
from edge_ser_train.adapt_config import GuardConfig
from edge_ser_train.inference import embed_all, embed_domain
from edge_ser_train.memory import SourceMemory
from edge_ser_train.model import EmotionModel

MIN_ANCHORS = 10
"""Fewer anchors than this make the agreement a coin toss: the check is then not computed."""
SOURCE_CLIPS = 1000
"""A seeded subset of the source clips beyond this many (UA to about 1.5 points; bounds the
cost of two passes over the source)."""


@dataclass(frozen=True)
class Check:
    name: str
    start: float | None
    """The start model's value (None where the check has none)."""
    adapted: float | None
    limit: float | None
    """The adapted model's value must be at least this."""
    passed: bool | None
    """None: not computed (`note` says why)."""
    note: str = ""

    def describe(self) -> str:
        if self.passed is None:
            return f"{self.name} not computed ({self.note})"
        verb = ">=" if self.passed else "<"
        start = "" if self.start is None else f" (start {self.start:.2f})"
        return f"{self.name} {self.adapted:.2f} {verb} {self.limit:.2f}{start}"


@dataclass(frozen=True)
class GuardReport:
    labels: tuple[str, ...]
    shares_start: tuple[float, ...]
    """Predicted class shares on the target (the classifier's class of each clip)."""
    shares_adapted: tuple[float, ...]
    checks: tuple[Check, ...]
    enabled: bool

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.passed is False]

    @property
    def estimate(self) -> str:
        return "worse" if self.failed else "not worse"

    @property
    def keep_adapted(self) -> bool:
        return not self.failed or not self.enabled

    @property
    def decision(self) -> str:
        return "adapted" if self.keep_adapted else "start"

    def line(self) -> str:
        """One line: the decision and every check's value."""
        checks = "; ".join(c.describe() for c in self.checks)
        if not self.failed:
            return f"guard: kept the adapted model, no check saw harm ({checks})"
        if self.enabled:
            return (f"guard: kept the START model's weights, the adapted model looks worse "
                    f"({checks}); --keep-adapted keeps it anyway")
        return f"guard: kept the adapted model as asked, though it looks worse ({checks})"

    def to_dict(self) -> dict:
        def shares(values):
            return {k: round(v, 4) for k, v in zip(self.labels, values)}

        return {"rule": "keep the start model when any computed check fails "
                        "(edge_ser_train.adapt_guard)",
                "enabled": self.enabled,
                "target_class_shares": {"start": shares(self.shares_start),
                                        "adapted": shares(self.shares_adapted)},
                "checks": {c.name: {k: (round(v, 4) if isinstance(v, float) else v)
                                    for k, v in asdict(c).items() if k != "name"}
                           for c in self.checks},
                "estimate": self.estimate, "decision": self.decision}


def balance(shares: np.ndarray) -> float:
    """Normalised entropy of class shares (K,): 1 for an even spread, 0 for one class."""
    p = np.asarray(shares, dtype=np.float64)
    p = p[p > 0]
    return max(0.0, float(-(p * np.log(p)).sum() / math.log(len(shares))))


def class_shares(predictions: np.ndarray, n_classes: int) -> np.ndarray:
    return np.bincount(predictions, minlength=n_classes) / max(1, len(predictions))


def judge(cfg: GuardConfig, start: EmotionModel, adapted: EmotionModel,
          target_feats: list[np.ndarray], labels: tuple[str, ...],
          memory: SourceMemory | None = None, source_feats: list[np.ndarray] = (),
          source_targets: np.ndarray | None = None, seed: int = 0) -> GuardReport:
    """The checks of the module docstring on the target's clean log-mel (`target_feats`, each
    (frames, N_MELS)). `memory`: the start model's fixed memory (its memory bank); None: class
    centroids of the start model's embeddings of the source clips. `source_feats` with
    `source_targets` (class indices): the labelled source clips, when there are any."""
    k = len(labels)
    start_pred = embed_all(start, target_feats)[1].argmax(1).numpy()
    adapted_pred = embed_all(adapted, target_feats)[1].argmax(1).numpy()
    shares_start, shares_adapted = class_shares(start_pred, k), class_shares(adapted_pred, k)

    b_start, b_adapted = balance(shares_start), balance(shares_adapted)
    checks = [Check("class_balance", b_start, b_adapted, b_start - cfg.max_balance_drop,
                    b_adapted >= b_start - cfg.max_balance_drop)]

    source = _source_subset(source_feats, source_targets, seed)
    if memory is None and source is not None:
        features, _ = embed_all(start, source[0])
        memory = SourceMemory.from_features(features, source[1], k).centroids(1)
    checks.append(_anchor_check(cfg, k, start, target_feats, adapted_pred, memory))
    checks.append(_source_check(cfg, start, adapted, source, labels))
    return GuardReport(tuple(labels), tuple(float(x) for x in shares_start),
                       tuple(float(x) for x in shares_adapted), tuple(checks), cfg.enabled)


def _anchor_check(cfg: GuardConfig, k: int, start: EmotionModel,
                  target_feats: list[np.ndarray], adapted_pred: np.ndarray,
                  memory: SourceMemory | None) -> Check:
    name = "anchor_agreement"
    if memory is None:
        return Check(name, None, None, None, None, "no memory bank and no source clips")
    if len(target_feats) < 2:
        return Check(name, None, None, None, None, "fewer than 2 target clips")
    emb, logits = embed_domain(start, target_feats, own_statistics=True)
    start_pred = logits.argmax(1).numpy()
    nearest = memory.labels[memory.similarities(emb).argmax(1)].numpy()
    anchors = np.flatnonzero(nearest == start_pred)
    if len(anchors) < MIN_ANCHORS:
        return Check(name, None, None, None, None,
                     f"{len(anchors)} anchors, fewer than {MIN_ANCHORS}")
    kept = float(np.mean(adapted_pred[anchors] == start_pred[anchors]))
    limit = 1.0 / k + cfg.min_anchor_kept * (1.0 - 1.0 / k)
    return Check(name, None, kept, limit, kept >= limit,
                 f"{len(anchors)} anchors of {len(start_pred)} clips")


def _source_subset(feats, targets, seed: int):
    if not len(feats):
        return None
    idx = np.arange(len(feats))
    if len(idx) > SOURCE_CLIPS:
        idx = np.sort(np.random.default_rng(seed).choice(idx, SOURCE_CLIPS, replace=False))
    return [feats[i] for i in idx], np.asarray(targets)[idx]


def _source_check(cfg: GuardConfig, start: EmotionModel, adapted: EmotionModel, source,
                  labels: tuple[str, ...]) -> Check:
    name = "source_accuracy"
    if source is None:
        return Check(name, None, None, None, None, "no labelled source clips (--source)")
    feats, targets = source
    if len(feats) < 2:
        return Check(name, None, None, None, None, "fewer than 2 source clips")
    ua = [score(targets, embed_domain(m, feats, own_statistics=True)[1].argmax(1).numpy(),
                labels).ua for m in (start, adapted)]
    return Check(name, ua[0], ua[1], ua[0] - cfg.max_source_drop,
                 ua[1] >= ua[0] - cfg.max_source_drop, f"UA on {len(feats)} source clips")
