"""`edge-ser batch INPUT... --out DIR`: call-center recordings in bulk.

Inputs are files, folders (searched recursively), glob patterns or manifests (CSV or JSON Lines).
Each recording gets its own folder of outputs under DIR/recordings; DIR also holds the batch
summary.csv, errors.jsonl and the resolved config. A rerun skips recordings already complete, so
an interrupted batch is resumed by running the same command again.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge_ser.commands.common import MAX_WORKERS, UsageError, check_range
from edge_ser.commands.runtime_options import (
    add_runtime_options,
    build_recognizer,
    load_runtime_config,
)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "batch", help="process call-center recordings in bulk",
        description="Process recordings in bulk: one stream per channel (one speaker per "
        "channel), segments as JSONL, CSV and RTTM, a summary per recording and one for the "
        "batch. Rerun the same command to resume an interrupted batch. Exit status: 0 when "
        "every recording is complete, 1 when some failed (listed in DIR/errors.jsonl), 2 for "
        "bad options. See docs/batch.md.")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="audio files, folders (recursive), glob patterns (quote them) or "
                   "manifests (.csv with a 'path' column, or .jsonl; optional call_id, "
                   "channels and any metadata columns)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help="output folder (created if needed)")
    p.add_argument("--channels", metavar="ROLE=INDEX,...",
                   help="channel roles, e.g. agent=0,customer=1 (default: mono = speaker, "
                   "stereo = agent=0,customer=1; more channels must be mapped)")
    p.add_argument("--workers", type=int, default=1,
                   help=f"worker processes (Ray actors with --engine ray), each with its own "
                   f"model, 1 to {MAX_WORKERS} (default: 1)")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local process pool, or Ray Data over a Ray cluster (default: local)")
    p.add_argument("--force", action="store_true",
                   help="redo recordings that are already complete")
    p.add_argument("--plot", action="store_true",
                   help="also draw a timeline PNG per recording (needs matplotlib: the "
                   "[plot] extra)")
    p.add_argument("--quiet", action="store_true", help="print only the final line")
    add_runtime_options(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from edge_ser.backends import default_precision
    from edge_ser.batch import out_folder
    from edge_ser.batch.channels import parse_roles
    from edge_ser.batch.inputs import InputError, collect_recordings
    from edge_ser.batch.outputs import BATCH_FORMAT_VERSION, BATCH_JSON, write_json
    from edge_ser.batch.pool import WorkerError
    from edge_ser.batch.runner import format_duration, run_batch
    from edge_ser.batch.settings import (
        JobSettings,
        RecognizerSpec,
        fingerprint,
        model_manifest_sha256,
    )
    from edge_ser.config import save_resolved

    check_range("--workers", args.workers, 1, MAX_WORKERS)
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out} is a file; give a folder")
    roles = parse_roles(args.channels) if args.channels else None
    if args.plot:
        _require("matplotlib", "--plot needs matplotlib: pip install 'edge-ser[plot]'")
    if args.engine == "ray":
        _require("ray.data", "--engine ray needs Ray Data: pip install 'ray[data]'")
    config = load_runtime_config(args)
    try:
        recordings, problems = collect_recordings(args.inputs, exclude=args.out)
    except InputError as exc:
        raise UsageError(str(exc)) from None
    if not recordings and not problems:
        raise UsageError("no recordings found in the inputs")
    out_folder.prepare(args.out)  # OutputFolderError (a ValueError): one line, before any work
    build_recognizer(args, config).close()  # a bad model or backend fails here, once
    model = str(args.model.resolve()) if args.model else None  # workers may run elsewhere
    spec = RecognizerSpec(model=model, backend=args.backend,
                          precision=args.precision or default_precision(args.backend),
                          threads=args.threads, config=config)
    settings = JobSettings(out_dir=str(args.out.resolve()), fingerprint=fingerprint(spec, roles),
                           default_roles=roles, force=args.force, plot=args.plot)
    input_sets = out_folder.claim(args.out, out_folder.input_set(args.inputs), args.force)
    try:
        save_resolved(config, args.out)
        write_json(args.out / BATCH_JSON, {
            "batch_version": BATCH_FORMAT_VERSION, "fingerprint": settings.fingerprint,
            "model": model, "model_manifest_sha256": model_manifest_sha256(model),
            "backend": spec.backend, "precision": spec.precision,
            "channels": args.channels, "engine": args.engine, "workers": args.workers,
            "input_sets": input_sets})
    except OSError as exc:
        raise UsageError(f"--out {args.out}: cannot write there ({exc.strerror or exc})") \
            from None
    try:
        report = run_batch(recordings, settings, spec, workers=args.workers,
                           engine=args.engine, problems=problems,
                           log=None if args.quiet else sys.stderr)
    except WorkerError as exc:
        print(f"edge-ser batch: error: {exc}", file=sys.stderr)
        return 1
    out = args.out.resolve()  # the same folder whichever directory the user is in next
    unwritten = f"; not written: {', '.join(report.unwritten)}" if report.unwritten else ""
    print(f"batch: {'stopped' if report.stopped else 'finished'} {report.line()}, in "
          f"{format_duration(report.elapsed_s)}; outputs in {out}"
          + (f", failures in {out / 'errors.jsonl'}" if report.failed else "")
          + unwritten, file=sys.stderr)
    return 1 if report.failed or report.stopped or report.unwritten else 0


def _require(module: str, message: str) -> None:
    import importlib.util

    try:
        found = importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # the parent package is missing
        found = False
    if not found:
        raise UsageError(message)
