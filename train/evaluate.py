"""Score a trained checkpoint on any folder with a `labels.csv` in the shared format."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_ser.audio import AudioError
from edge_ser.metrics import Scores, score
from edge_ser.trim import clip_log_mel
from edge_ser_train.corpus import Clip, CorpusError, labelled, read_corpus
from edge_ser_train.model import EmotionModel
from edge_ser_train.trainer import predict_logits


def clip_features(clips: list[Clip], log=print) -> tuple[list[np.ndarray], list[Clip]]:
    """Whole-clip log-mel features, leading and trailing silence trimmed as in training;
    unreadable clips are reported and left out."""
    feats, kept = [], []
    for clip in clips:
        try:
            feats.append(clip_log_mel(clip.path))
            kept.append(clip)
        except AudioError as exc:
            log(f"skipped: {exc}")
    return feats, kept


def score_model(model: EmotionModel, labels: tuple[str, ...], clips: list[Clip],
                feats: list[np.ndarray] | None = None) -> Scores:
    """Scores of `model` on labelled `clips` (features computed unless given)."""
    if feats is None:
        feats, clips = clip_features(clips)
    logits = predict_logits(model, feats)
    references = np.array([labels.index(c.label) for c in clips])
    return score(references, logits.argmax(1), labels)


def labelled_clips(data_dir: str | Path, labels: tuple[str, ...]) -> list[Clip]:
    clips = labelled(read_corpus(data_dir), labels)
    if not clips:
        raise CorpusError(f"{data_dir}: no clip carries one of the labels {', '.join(labels)}")
    return clips
