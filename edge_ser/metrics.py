"""Classification scores for emotion recognition: UA, WA, macro-F1 and the confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Scores:
    """Scores of predictions against references over `labels`.

    `ua` (unweighted accuracy) is the mean per-class recall over the classes present in the
    references (balanced accuracy); `wa` (weighted accuracy) is plain accuracy.
    """

    labels: tuple[str, ...]
    ua: float
    wa: float
    macro_f1: float
    recall: tuple[float, ...]
    confusion: tuple[tuple[int, ...], ...]
    """confusion[i][j]: clips of reference class i predicted as class j."""
    count: int

    def to_dict(self) -> dict:
        return {"labels": list(self.labels), "count": self.count, "ua": self.ua, "wa": self.wa,
                "macro_f1": self.macro_f1, "recall": list(self.recall),
                "confusion": [list(row) for row in self.confusion]}


def score(references: np.ndarray, predictions: np.ndarray, labels: tuple[str, ...]) -> Scores:
    """Score integer class indices (shape (n,)) against references (shape (n,))."""
    references = np.asarray(references, dtype=np.int64)
    predictions = np.asarray(predictions, dtype=np.int64)
    if references.shape != predictions.shape or references.ndim != 1:
        raise ValueError(f"references {references.shape} and predictions {predictions.shape} "
                         "must be equal-length 1-D arrays")
    if references.size == 0:
        raise ValueError("nothing to score: no references")
    k = len(labels)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (references, predictions), 1)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    hits = np.diag(confusion)
    present = support > 0
    recall = np.where(present, hits / np.maximum(support, 1), 0.0)
    precision = np.where(predicted > 0, hits / np.maximum(predicted, 1), 0.0)
    denom = precision + recall
    f1 = np.where(denom > 0, 2 * precision * recall / np.where(denom > 0, denom, 1), 0.0)
    return Scores(labels=tuple(labels), ua=float(recall[present].mean()),
                  wa=float(hits.sum() / references.size), macro_f1=float(f1[present].mean()),
                  recall=tuple(float(r) for r in recall),
                  confusion=tuple(tuple(int(v) for v in row) for row in confusion),
                  count=int(references.size))


def format_scores(scores: Scores) -> str:
    """A short human-readable report with the confusion matrix."""
    width = max(6, *(len(name) for name in scores.labels))
    lines = [f"clips {scores.count}   UA {scores.ua:.1%}   WA {scores.wa:.1%}   "
             f"macro-F1 {scores.macro_f1:.1%}",
             "confusion (rows: reference, columns: predicted)",
             " " * (width + 2) + " ".join(f"{n:>{width}}" for n in scores.labels) + "   recall"]
    for name, row, rec in zip(scores.labels, scores.confusion, scores.recall):
        lines.append(f"{name:>{width}}  " + " ".join(f"{v:>{width}d}" for v in row)
                     + f"   {rec:6.1%}")
    return "\n".join(lines)
