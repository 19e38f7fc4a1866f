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
import sys
from dataclasses import dataclass
from pathlib import Path

from edge_ser.commands.common import MAX_THREADS, UsageError, check_range
from edge_ser.commands.runtime_options import (
    BACKEND_CHOICES,
    PRECISION_CHOICES,
    add_runtime_config_options,
    load_runtime_config,
)
from edge_ser.package import DEFAULT_PACKAGE, package_root


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
                       "too; a package from `adapt` also scores the model it started from, "
                       "kept in its start/ folder); a .pt training checkpoint with torch.")
    p.add_argument("--data", type=Path, required=True, action="append",
                   help="folder with labels.csv (repeatable)")
    p.add_argument("--model", type=package_root, default=DEFAULT_PACKAGE,
                   help="model package folder, the name of a bundled package, or a .pt "
                   "checkpoint (default: the bundled package)")
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

    check_range("--threads", args.threads, 1, MAX_THREADS)
    _check_out(args.out)  # before any scoring
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
            if "start_model" in entry:
                print(_start_line(entry))
            print(_overlap_lines(entry))
        else:
            entry.pop("_scores")
    if args.json:
        print(json.dumps({"model": str(args.model), "scores": report}, indent=2))
    if args.out:
        try:
            write_text_atomic(args.out / "scores.json", json.dumps(report, indent=2))
            save_resolved(EvalRun(str(args.model), args.backend, args.precision, args.threads,
                                  tuple(str(d) for d in args.data), config), args.out)
        except OSError as exc:
            raise UsageError(f"--out {args.out}: cannot write the scores "
                             f"({exc.strerror or exc})") from None
    return 0


def _score_package(args, kernels: str) -> dict:
    import numpy as np

    from edge_ser.audio import AudioError
    from edge_ser.backends import create_backend
    from edge_ser.corpus import read_labelled
    from edge_ser.family import pooling_for, scorer_for
    from edge_ser.metrics import score
    from edge_ser.package import load_package
    from edge_ser.scoring import encode_clip
    from edge_ser.training_data import TrainingData
    from edge_ser.trim import clip_log_mel

    package = load_package(args.model)
    seen = TrainingData.from_manifest(package.manifest)
    start, start_note = _start_package(package)
    backend = create_backend(package, args.backend, args.precision, args.threads)
    start_backend = (create_backend(start, "onnxruntime", "fp32", args.threads)
                     if start is not None else None)
    scorer = scorer_for(package)
    pool = pooling_for(package, backend.out_channels).pool_frames
    start_pool = (pooling_for(start, start_backend.out_channels).pool_frames
                  if start_backend is not None else None)
    report = {}
    try:
        for folder in args.data:
            pooled, references, kept, skipped, start_pooled = [], [], [], [], []
            for clip in read_labelled(folder, package.labels):
                try:
                    feats = clip_log_mel(clip.path, kernels)
                except AudioError as exc:
                    _skip(skipped, clip.path, str(exc))
                    continue
                frames = encode_clip(backend, feats)
                if len(frames) == 0:
                    _skip(skipped, clip.path, f"{clip.path}: shorter than one encoder frame")
                    continue
                pooled.append(pool(frames))
                if start_backend is not None:
                    start_pooled.append(start_pool(encode_clip(start_backend, feats)))
                references.append(package.labels.index(clip.label))
                kept.append(clip)
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
                                   "similarity_median": float(np.median(scores.similarity)),
                                   "skipped": skipped,
                                   **_held_out(seen, kept, references, scores.probs.argmax(1),
                                               package.labels)}
            if start is not None:
                start_scores = scorer_for(start).score_pooled(
                    np.stack(start_pooled))
                before = score(references, start_scores.probs.argmax(1), package.labels)
                report[str(folder)]["start_model"] = {"ua": before.ua, "wa": before.wa,
                                                      "macro_f1": before.macro_f1,
                                                      "backend": "onnxruntime fp32"}
            elif start_note:
                report[str(folder)]["start_model"] = {"note": start_note}
    finally:
        backend.close()
        if start_backend is not None:
            start_backend.close()
    return report


def _start_package(package):
    """(the start model of an adapted package, None) when the package carries it (`adapt`
    writes it into `start/`, its manifest's sha256 in `adaptation.start_package`); else (None,
    a note for the report, or "" for a package that was not adapted)."""
    from edge_ser.package import PackageError, load_package, sha256_file

    adaptation = package.manifest.get("adaptation")
    if not isinstance(adaptation, dict):
        return None, ""
    if adaptation.get("guard", {}).get("decision") == "start":
        return None, ("adapt kept the start model's weights (its guard judged the adapted "
                      "model worse): the figures above are the start model's")
    record = adaptation.get("start_package")
    if not isinstance(record, dict):
        return None, "this adapted package carries no copy of its start model"
    folder = package.path(record.get("folder", ""))
    manifest = folder / "model.json"
    if not manifest.is_file() or sha256_file(manifest) != record.get("manifest_sha256"):
        return None, (f"{folder}: the start model is missing or is not the one adapted from "
                      "(model.json sha256 differs from adaptation.start_package)")
    try:
        return load_package(folder), ""
    except PackageError as exc:
        return None, f"the start model cannot be loaded ({exc})"


def _start_line(entry: dict) -> str:
    start = entry["start_model"]
    if "ua" not in start:
        return f"start model: {start['note']}"
    return (f"start model (before adaptation, {start['backend']}): UA {start['ua']:.1%}   WA "
            f"{start['wa']:.1%}   macro-F1 {start['macro_f1']:.1%}   (adapted - start: UA "
            f"{100 * (entry['ua'] - start['ua']):+.1f} points)")


def _check_out(out: Path | None) -> None:
    """--out must be a folder this run can write: checked before any scoring."""
    if out is None:
        return
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder for the scores")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot create the folder ({exc.strerror or exc})") \
            from None


def _skip(skipped: list[dict], path: Path, reason: str) -> None:
    """A clip left out of the scores: on standard error and in the report."""
    print(f"skipped: {reason}", file=sys.stderr)
    skipped.append({"path": str(path), "reason": reason})


def _held_out(seen, clips, references, predictions, labels) -> dict:
    """The scores restricted to the clips the model never trained on."""
    import numpy as np

    from edge_ser.metrics import score

    held = [i for i, clip in enumerate(clips) if seen.reason(clip) is None]
    scores = (score(np.asarray(references)[held], np.asarray(predictions)[held], labels)
              if held else None)
    return {"training_overlap": seen.overlap(clips),
            "held_out": scores.to_dict() if scores else None}


_WHY = {"training speaker": "by training speakers",
        "training corpus": "from a training corpus whose held-out speakers are unknown",
        "adaptation target": "from the recordings the model was adapted on"}


def _overlap_lines(entry: dict) -> str:
    overlap, held = entry["training_overlap"], entry["held_out"]
    if overlap["seen_in_training"] == 0:
        corpora = ", ".join(overlap["training_corpora"])
        return (f"held out: none of the {overlap['clips']} clips was in the model's training "
                f"data (trained on {corpora}; {overlap['how_known']})")
    why = ", ".join(f"{n} {_WHY.get(reason, reason)}" for reason, n in overlap["why"].items())
    lines = [f"note: {overlap['seen_in_training']} of {overlap['clips']} clips were in the "
             f"model's training data ({why}); the scores above include them "
             f"[{overlap['how_known']}]"]
    if held is None:
        lines.append("held-out (never trained on): no clip; these scores say little about new "
                     "speakers")
    else:
        lines.append(f"held-out (never trained on), {held['count']} clips: UA {held['ua']:.1%}   "
                     f"WA {held['wa']:.1%}   macro-F1 {held['macro_f1']:.1%}")
    return "\n".join(lines)
