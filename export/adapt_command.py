"""`edge-ser adapt`: adapt a model to a new language from unlabelled recordings (NNPM), and
export the adapted model into a package (`adapt_job`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge_ser.commands.common import (
    TRAIN_MODULES,
    UsageError,
    add_config_options,
    require_extra,
)
from edge_ser.package import DEFAULT_PACKAGE, package_root


def add_parser(sub) -> None:
    p = sub.add_parser(
        "adapt", help="adapt a model to a new language from unlabelled recordings",
        description="NNPM adaptation: the recordings in --target (any format, rate and length; "
        "long ones are cut into speech segments) are labelled by their similarity to a memory "
        "of source emotional speech, and the model is trained on those pseudo multilabels. "
        "With --source corpora the memory holds their utterances; without, it is the model's "
        "own memory bank and no source audio is needed. OUT becomes a complete model package "
        "(encoders calibrated on the target's speech, memory bank, model.pt, the adaptation in "
        "model.json) with OUT/adaptation.json and the resolved config beside it. The adapted "
        "model is checked against the start model on the unlabelled target (and the labelled "
        "source evidence): when it looks worse, OUT holds the start model's weights instead, "
        "said in one line (--keep-adapted keeps it anyway). Needs the [train] extra (torch).")
    p.add_argument("--target", type=Path, required=True,
                   help="folder of unlabelled recordings in the new language")
    p.add_argument("--out", type=Path, required=True, help="output folder for the adapted model")
    p.add_argument("--model", type=package_root, default=DEFAULT_PACKAGE,
                   help="model to adapt: a model package, the name of a bundled one, a "
                   "checkpoint (.pt) or a folder with model.pt (default: the bundled package)")
    p.add_argument("--source", type=Path, nargs="+", action="extend", default=[],
                   metavar="DIR", help="labelled source corpora (folders with labels.csv)")
    p.add_argument("--force", action="store_true", help="replace the contents of --out")
    p.add_argument("--keep-adapted", action="store_true",
                   help="keep the adapted weights even when the guard judges them worse than "
                   "the start model's (the same as --set guard.enabled=false); the checks are "
                   "still recorded")
    p.add_argument("--export-set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the export config (configs/export/default.yaml) for "
                   "the package export (repeatable), e.g. gate.min_agreement=0.9")
    add_config_options(p, "adaptation", "configs/adapt/default.yaml", "optim.seed=1")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    require_extra("edge-ser adapt", "train", TRAIN_MODULES)
    from edge_ser.config import load_config
    from edge_ser_export.adapt_job import run_adaptation
    from edge_ser_train.adapt_config import AdaptConfig

    if not args.model.exists():
        raise UsageError(f"{args.model}: model not found (pass --model: a model package, or a "
                         "checkpoint from `edge-ser train`)")
    if not args.target.is_dir():
        raise UsageError(f"{args.target}: not a folder; --target takes a folder of recordings")
    for folder in args.source:
        if not (folder / "labels.csv").is_file():
            raise UsageError(f"{folder}: not a source corpus (no labels.csv); --source takes "
                             "folders of labelled speech in the shared labels.csv format")
    if args.out.exists() and any(args.out.iterdir()) and not args.force:
        raise UsageError(f"{args.out}: exists and is not empty; pass --force to replace it")
    overrides = args.overrides + (["guard.enabled=false"] if args.keep_adapted else [])
    cfg = load_config(AdaptConfig, args.config, overrides)
    _check_before_work(args)
    run_adaptation(cfg, args.target, args.out, args.model, args.source,
                   export_overrides=args.export_set)
    return 0


def _check_before_work(args: argparse.Namespace) -> None:
    """--export-set is read now (an unknown key must not wait for the end of training), and
    the work folders a killed run left beside --out are removed."""
    from edge_ser.config import ConfigError, load_config
    from edge_ser_export.config import ExportConfig
    from edge_ser_export.package_builder import remove_abandoned

    try:
        load_config(ExportConfig, None, args.export_set)
    except ConfigError as exc:
        raise UsageError(f"--export-set: {exc}") from None
    for folder in remove_abandoned(args.out):
        print(f"adapt: removed {folder}, left by an adaptation that did not finish",
              file=sys.stderr)
