"""`edge-ser train`: read the corpora, split by speaker, train, score the held-out speakers,
and write the checkpoint, metrics and resolved config to `out_dir`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from edge_ser.atomic_write import write_text_atomic
from edge_ser.config import save_resolved
from edge_ser.metrics import Scores, format_scores
from edge_ser_train.config import TrainConfig
from edge_ser_train.corpus import Clip, describe, labelled, read_corpus, speaker_split
from edge_ser_train.encoder import count_macs_per_second
from edge_ser_train.evaluate import clip_features, score_model
from edge_ser_train.model import count_parameters
from edge_ser_train.multigate.compute import macs_per_second as multigate_macs
from edge_ser_train.trainer import save_checkpoint, train


def load_clips(cfg: TrainConfig) -> list[Clip]:
    """The labelled clips of the configured corpora, less the excluded speakers."""
    clips: list[Clip] = []
    for folder in cfg.data.corpora:
        clips.extend(labelled(read_corpus(folder), cfg.data.labels))
    known = {c.speaker for c in clips}
    unknown = [s for s in cfg.data.exclude_speakers if s not in known]
    if unknown:
        raise ValueError(f"data.exclude_speakers: no clips of {', '.join(unknown)} in "
                         f"{', '.join(cfg.data.corpora)} (use corpus:speaker, e.g. emodb:09)")
    return [c for c in clips if c.speaker not in cfg.data.exclude_speakers]


def split(cfg: TrainConfig, clips: list[Clip]) -> tuple[list[Clip], list[Clip]]:
    if cfg.data.test_fraction == 0.0:
        return clips, []
    return speaker_split(clips, cfg.data.test_fraction, cfg.optim.seed)


def score_per_corpus(result, test: list[Clip]) -> dict[str, Scores]:
    feats, kept = clip_features(test)
    scores = {}
    for corpus in sorted({c.corpus for c in kept}):
        idx = [i for i, c in enumerate(kept) if c.corpus == corpus]
        scores[corpus] = score_model(result.model, result.labels, [kept[i] for i in idx],
                                     [feats[i] for i in idx])
    return scores


UNCOMMITTED = "+uncommitted"
"""Appended to the commit when tracked files differ from it: the code that ran is not that
commit's."""


def git_commit(folder: Path = Path(__file__).parent) -> str:
    """The commit of the checkout holding `folder` (this code's, by default), UNCOMMITTED
    appended when tracked files were changed; "unknown" outside a git checkout."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=folder,
                              timeout=10).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        if not commit:
            return "unknown"
        return commit + (UNCOMMITTED if git("status", "--porcelain", "--untracked-files=no")
                         else "")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def run_training(cfg: TrainConfig, log=print) -> dict:
    clips = load_clips(cfg)
    train_clips, test_clips = split(cfg, clips)
    log("training on:\n" + describe(train_clips))
    if test_clips:
        log("held out (speaker-independent):\n" + describe(test_clips))
    result = train(cfg, train_clips, log)
    out = Path(cfg.out_dir)
    metrics = {
        "parameters": count_parameters(result.model),
        "encoder_macs_per_s": (multigate_macs(result.model, 100)
                               if cfg.model.family == "multigate"
                               else count_macs_per_second(result.model.encoder, 100)),
        "train_seconds": round(result.seconds, 1),
        "train_clips": len(train_clips), "test_clips": len(test_clips),
        "git_commit": git_commit(),
        "held_out": {},
    }
    for corpus, scores in score_per_corpus(result, test_clips).items():
        log(f"== held-out speakers of {corpus}\n{format_scores(scores)}")
        metrics["held_out"][corpus] = scores.to_dict()
    save_checkpoint(result, cfg, out / "model.pt", extra={"metrics": metrics})
    write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=2))
    save_resolved(cfg, out)
    log(f"wrote {out / 'model.pt'} ({metrics['parameters']} parameters, "
        f"{metrics['encoder_macs_per_s'] / 1e6:.1f} M MACs per second of audio)")
    return metrics
