"""The training layer's commands: `edge-ser train` (supervised multi-corpus training) and the
scorer of training checkpoints that `edge-ser eval --model CKPT.pt` uses.

Nothing heavy is imported here: torch comes in when a command runs, after `require_extra` has
made sure it is installed (`pip install 'edge-ser[train]'`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_ser.commands.common import TRAIN_MODULES, add_config_options, require_extra


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train an emotion model on labelled corpora",
                       description="Supervised multi-corpus training. Writes model.pt, "
                       "metrics.json and config.resolved.yaml to the config's out_dir. "
                       "Needs the [train] extra (torch).")
    add_config_options(p, "training", "configs/train/default.yaml", "optim.epochs=5")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    require_extra("edge-ser train", "train", TRAIN_MODULES)
    from edge_ser.config import load_config
    from edge_ser_train.config import TrainConfig
    from edge_ser_train.run import run_training

    run_training(load_config(TrainConfig, args.config, args.overrides))
    return 0


def score_checkpoint(checkpoint: Path, folders: list[Path]) -> dict:
    """{folder: {**scores.to_dict(), "_scores": scores, "training_overlap", "held_out"}} of a
    training checkpoint (torch) on each corpus folder, with the checkpoint's own classes; the
    held-out scores leave out the clips of the speakers it was trained on."""
    require_extra("scoring a training checkpoint", "train", TRAIN_MODULES)
    from edge_ser.corpus import read_labelled
    from edge_ser.training_data import TrainingData
    from edge_ser_train.evaluate import score_model
    from edge_ser_train.trainer import load_checkpoint

    model, cfg, payload = load_checkpoint(checkpoint)
    seen = TrainingData.from_train_config(payload["config"])
    report = {}
    for folder in folders:
        clips = read_labelled(folder, cfg.data.labels)
        scores = score_model(model, cfg.data.labels, clips)
        unseen = [c for c in clips if seen.reason(c) is None]
        held = score_model(model, cfg.data.labels, unseen) if unseen else None
        report[str(folder)] = {**scores.to_dict(), "_scores": scores,
                               "training_overlap": seen.overlap(clips),
                               "held_out": held.to_dict() if held else None}
    return report
