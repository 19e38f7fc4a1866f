"""`edge-ser train`: supervised multi-corpus training."""

from __future__ import annotations

import argparse

from edge_ser.commands.common import DEFAULT_TRAIN_CONFIG, add_config_options


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train an emotion model on labelled corpora",
                       description="Supervised multi-corpus training. Writes model.pt, "
                       "metrics.json and config.resolved.yaml to the config's out_dir.")
    add_config_options(p, DEFAULT_TRAIN_CONFIG)


def run(args: argparse.Namespace) -> int:
    from edge_ser.config import load_config
    from edge_ser_train.config import TrainConfig
    from edge_ser_train.run import run_training

    run_training(load_config(TrainConfig, args.config, args.overrides))
    return 0
