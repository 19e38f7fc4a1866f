"""`edge-ser eval`: score a model on any folder with a labels.csv in the shared format."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge_ser.commands.common import DEFAULT_CHECKPOINT, UsageError


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="score a model on a folder with a labels.csv",
                       description="Score a model on every 4-class labelled clip of a corpus "
                       "folder: UA (balanced accuracy), WA, macro-F1, confusion matrix.")
    p.add_argument("--data", type=Path, required=True, action="append",
                   help="folder with labels.csv (repeatable)")
    p.add_argument("--model", type=Path, default=DEFAULT_CHECKPOINT,
                   help=f"trained checkpoint (default: {DEFAULT_CHECKPOINT})")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.add_argument("--out", type=Path, help="also write scores and the resolved config here")


def run(args: argparse.Namespace) -> int:
    from edge_ser.atomic_write import write_text_atomic
    from edge_ser.config import save_resolved
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
        args.out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(args.out / "scores.json", json.dumps(report, indent=2))
        save_resolved(cfg, args.out)
    return 0
