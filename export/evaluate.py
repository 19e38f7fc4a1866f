"""Accuracy through the runtime path (package + backend + WindowScorer, as every command runs
it), and the INT8 accuracy gate.

Each clip is encoded chunk by chunk with the state carried (`encode_clip`), pooled over the
whole clip (`stats_pool`) and scored three ways: classifier only, memory bank only, fused.
"""

from __future__ import annotations

import numpy as np

from edge_ser.metrics import score
from edge_ser.scoring import WindowScorer, encode_clip, stats_pool
from edge_ser_train.corpus import Clip

HEADS = ("classifier", "memory", "fused")


class QuantizationGateError(RuntimeError):
    """The INT8 encoder loses more accuracy than the gate allows."""


def pooled_clips(backend, feats_list: list[np.ndarray], pool=stats_pool) -> np.ndarray:
    """(n, P) whole-clip pooled encoder frames, through the backend chunk by chunk; `pool` is
    the family's (`edge_ser.family`; mean and std: P = 2C)."""
    return np.stack([pool(encode_clip(backend, f)) for f in feats_list])


def head_predictions(scorer: WindowScorer, pooled: np.ndarray) -> dict[str, np.ndarray]:
    scores = scorer.score_pooled(pooled)
    return {"classifier": scores.classifier_probs.argmax(1),
            "memory": scores.memory_probs.argmax(1), "fused": scores.probs.argmax(1)}


def accuracy_report(predictions: dict[str, np.ndarray], targets: np.ndarray, clips: list[Clip],
                    labels: tuple[str, ...]) -> dict:
    """{"all" | corpus: {"clips": n, head: {"ua", "wa", "macro_f1"}}} for every head."""
    groups = {"all": np.arange(len(clips))}
    for corpus in sorted({c.corpus for c in clips}):
        groups[corpus] = np.array([i for i, c in enumerate(clips) if c.corpus == corpus])
    report = {}
    for name, idx in groups.items():
        entry = {"clips": int(len(idx))}
        for head, pred in predictions.items():
            s = score(targets[idx], pred[idx], labels)
            entry[head] = {"ua": round(s.ua, 4), "wa": round(s.wa, 4),
                           "macro_f1": round(s.macro_f1, 4)}
        report[name] = entry
    return report


def accuracy_gate(fp32: dict, int8: dict, max_drop_points: float,
                  heads: tuple[str, ...] = ("classifier", "fused")) -> dict:
    """UA drop (points) of INT8 vs fp32 over the whole held-out split, per head.

    Raises QuantizationGateError when any drop exceeds `max_drop_points`."""
    drops = {h: round(100.0 * (fp32["all"][h]["ua"] - int8["all"][h]["ua"]), 2) for h in heads}
    failed = {h: d for h, d in drops.items() if d > max_drop_points}
    if failed:
        detail = ", ".join(f"{h}: fp32 UA {fp32['all'][h]['ua']:.1%} -> int8 "
                           f"{int8['all'][h]['ua']:.1%} ({d:+.2f} points lost)"
                           for h, d in failed.items())
        raise QuantizationGateError(
            f"INT8 accuracy gate failed: {detail}; the limit is {max_drop_points} points. "
            "Try more calibration clips (calibration.clips) or another calibration.method")
    return {"max_drop_points": max_drop_points, "ua_drop_points": drops, "passed": True}


def agreement_gate(fp32: dict[str, np.ndarray], int8: dict[str, np.ndarray],
                   min_agreement: float, heads: tuple[str, ...] = ("classifier", "fused")) -> dict:
    """Share of clips where INT8 predicts the fp32 class, per head: the gate of unlabelled
    speech. Raises QuantizationGateError when any share is below `min_agreement`."""
    agreement = {h: round(float(np.mean(fp32[h] == int8[h])), 4) for h in heads}
    failed = {h: a for h, a in agreement.items() if a < min_agreement}
    if failed:
        detail = ", ".join(f"{h}: {a:.1%}" for h, a in failed.items())
        raise QuantizationGateError(
            f"INT8 accuracy gate failed: INT8 agrees with fp32 on {detail} of the clips, below "
            f"{min_agreement:.0%}. Try more calibration clips (calibration.clips) or another "
            "calibration.method")
    return {"min_agreement": min_agreement, "agreement": agreement, "passed": True}
