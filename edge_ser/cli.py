"""The `edge-ser` command line (also `python main.py`).

Each command exits non-zero with a one-line reason on bad input. Commands that need the training
stack (torch) import it when they run, so the runtime commands work without it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edge_ser.audio import AudioError
from edge_ser.config import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TRAIN_CONFIG = REPO_ROOT / "configs" / "train" / "default.yaml"
DEFAULT_CHECKPOINT = REPO_ROOT / "runs" / "default" / "model.pt"


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""


def _add_config_options(parser: argparse.ArgumentParser, default_config: Path | None) -> None:
    parser.add_argument("--config", type=Path, default=default_config,
                        help=f"YAML config (default: {default_config})")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a config value, e.g. optim.epochs=5")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-ser", description="Speech emotion recognition for the edge.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("train", help="train an emotion model on labelled corpora",
                       description="Supervised multi-corpus training. Writes model.pt, "
                       "metrics.json and config.resolved.yaml to the config's out_dir.")
    _add_config_options(p, DEFAULT_TRAIN_CONFIG)

    p = sub.add_parser("eval", help="score a model on a folder with a labels.csv",
                       description="Score a model on every 4-class labelled clip of a corpus "
                       "folder: UA (balanced accuracy), WA, macro-F1, confusion matrix.")
    p.add_argument("--data", type=Path, required=True, action="append",
                   help="folder with labels.csv (repeatable)")
    p.add_argument("--model", type=Path, default=DEFAULT_CHECKPOINT,
                   help=f"trained checkpoint (default: {DEFAULT_CHECKPOINT})")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.add_argument("--out", type=Path, help="also write scores and the resolved config here")
    return parser


def cmd_train(args: argparse.Namespace) -> int:
    from edge_ser.config import load_config
    from train.config import TrainConfig
    from train.run import run_training

    cfg = load_config(TrainConfig, args.config, args.overrides)
    run_training(cfg)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from edge_ser.atomic_write import write_text_atomic
    from edge_ser.metrics import format_scores
    from train.evaluate import labelled_clips, score_model
    from train.trainer import load_checkpoint

    if not args.model.is_file():
        raise UsageError(f"{args.model}: model not found (train one with `edge-ser train`, "
                         "or pass --model)")
    model, cfg, _ = load_checkpoint(args.model)
    report = {}
    for folder in args.data:
        scores = score_model(model, cfg.data.labels, labelled_clips(folder, cfg.data.labels))
        report[str(folder)] = scores.to_dict()
        if not args.json:
            print(f"== {folder}\n{format_scores(scores)}")
    if args.json:
        print(json.dumps({"model": str(args.model), "scores": report}, indent=2))
    if args.out:
        from edge_ser.config import save_resolved

        args.out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(args.out / "scores.json", json.dumps(report, indent=2))
        save_resolved(cfg, args.out)
    return 0


COMMANDS = {"train": cmd_train, "eval": cmd_eval}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return COMMANDS[args.command](args)
    except (UsageError, ConfigError, AudioError) as exc:
        print(f"edge-ser {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"edge-ser {args.command}: interrupted", file=sys.stderr)
        return 130
    except ValueError as exc:  # CorpusError and other input errors
        print(f"edge-ser {args.command}: error: {exc}", file=sys.stderr)
        return 2
