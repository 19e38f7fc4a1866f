"""`edge-ser eval`: score a model on any folder with a labels.csv in the shared format.

A model package (default: the bundled one) is scored through the runtime path, as every other
command runs it: log-mel -> encoder backend chunk by chunk -> whole-clip pooling -> head and
memory bank, fused (no torch). A training checkpoint (`.pt`) is scored with torch by the
training layer: the command line passes its scorer in (`score_checkpoint`), so this module
never imports it.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from edge_ser.commands.common import UsageError
from edge_ser.commands.runtime_options import (
    BACKEND_CHOICES,
    PRECISION_CHOICES,
    add_runtime_config_options,
    load_runtime_config,
)
from edge_ser.package import DEFAULT_PACKAGE


@dataclass(frozen=True)
class EvalRun:
    """What an eval run used, saved beside its scores."""

    model: str
    backend: str
    precision: str
    threads: int
    data: tuple[str, ...]
    runtime: object
    """The runtime config (its feature kernels compute the log-mel of the clips)."""


def add_parser(sub, score_checkpoint=None) -> None:
    """`score_checkpoint(checkpoint, folders) -> {folder: {**scores.to_dict(), "_scores":
    scores}}`: the training layer's scorer of `.pt` checkpoints (None: not available)."""
    p = sub.add_parser("eval", help="score a model on a folder with a labels.csv",
                       description="Score a model on every labelled clip of a corpus folder "
                       "(the package's classes): UA (balanced accuracy), WA, macro-F1, confusion "
                       "matrix. A model package is scored through the runtime path (fused "
                       "classifier + memory bank; classifier-only and memory-only UA are shown "
                       "too); a .pt training checkpoint with torch.")
    p.add_argument("--data", type=Path, required=True, action="append",
                   help="folder with labels.csv (repeatable)")
    p.add_argument("--model", type=Path, default=DEFAULT_PACKAGE,
                   help="model package folder or .pt checkpoint (default: the bundled package)")
    p.add_argument("--backend", choices=BACKEND_CHOICES,
                   default="onnxruntime", help="encoder backend for a package")
    p.add_argument("--precision", choices=PRECISION_CHOICES, default=None,
                   help="encoder precision for a package (default: int8 on TensorRT, fp32 "
                   "otherwise; fp16: TensorRT only)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads of the encoder")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.add_argument("--out", type=Path, help="also write scores and the resolved settings here")
    add_runtime_config_options(p)
    p.set_defaults(handler=run, score_checkpoint=score_checkpoint)


def run(args: argparse.Namespace) -> int:
    from edge_ser.atomic_write import write_text_atomic
    from edge_ser.backends import default_precision
    from edge_ser.config import save_resolved
    from edge_ser.metrics import format_scores

    args.precision = args.precision or default_precision(args.backend)
    config = load_runtime_config(args)
    if args.model.is_dir():
        report = _score_package(args, config.features.kernels)
    elif args.model.is_file():
        if getattr(args, "score_checkpoint", None) is None:
            raise UsageError(f"{args.model}: scoring a training checkpoint needs the training "
                             "layer; pass a model package folder to --model")
        report = args.score_checkpoint(args.model, args.data)
    else:
        raise UsageError(f"{args.model}: no model package or checkpoint there (pass a package "
                         "folder or a .pt file to --model)")
    for folder, entry in report.items():
        if not args.json:
            print(f"== {folder}\n{format_scores(entry.pop('_scores'))}")
            if "heads" in entry:
                heads = entry["heads"]
                print(f"classifier-only UA {heads['classifier']['ua']:.1%}   memory-only UA "
                      f"{heads['memory']['ua']:.1%}   fused UA {heads['fused']['ua']:.1%}")
        else:
            entry.pop("_scores")
    if args.json:
        print(json.dumps({"model": str(args.model), "scores": report}, indent=2))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(args.out / "scores.json", json.dumps(report, indent=2))
        save_resolved(EvalRun(str(args.model), args.backend, args.precision, args.threads,
                              tuple(str(d) for d in args.data), config), args.out)
    return 0


def _score_package(args, kernels: str) -> dict:
    import numpy as np

    from edge_ser.audio import AudioError
    from edge_ser.backends import create_backend
    from edge_ser.corpus import read_labelled
    from edge_ser.metrics import score
    from edge_ser.package import load_package
    from edge_ser.scoring import WindowScorer, encode_clip, stats_pool
    from edge_ser.trim import clip_log_mel

    if args.threads < 1:
        raise UsageError(f"--threads must be >= 1, got {args.threads}")
    package = load_package(args.model)
    backend = create_backend(package, args.backend, args.precision, args.threads)
    scorer = WindowScorer.from_package(package)
    report = {}
    try:
        for folder in args.data:
            pooled, references = [], []
            for clip in read_labelled(folder, package.labels):
                try:
                    feats = clip_log_mel(clip.path, kernels)
                except AudioError as exc:
                    print(f"skipped: {exc}")
                    continue
                frames = encode_clip(backend, feats)
                if len(frames) == 0:
                    print(f"skipped: {clip.path}: shorter than one encoder frame")
                    continue
                pooled.append(stats_pool(frames))
                references.append(package.labels.index(clip.label))
            if not pooled:
                raise UsageError(f"{folder}: no readable labelled clip")
            scores = scorer.score_pooled(np.stack(pooled))
            references = np.array(references)
            heads = {"classifier": scores.classifier_probs, "memory": scores.memory_probs,
                     "fused": scores.probs}
            heads = {h: score(references, p.argmax(1), package.labels) for h, p in heads.items()}
            report[str(folder)] = {**heads["fused"].to_dict(), "_scores": heads["fused"],
                                   "heads": {h: {"ua": s.ua, "wa": s.wa, "macro_f1": s.macro_f1}
                                             for h, s in heads.items()},
                                   "similarity_median": float(np.median(scores.similarity))}
    finally:
        backend.close()
    return report
