"""`edge-ser bench stream`: speed, latency and memory of the streaming pipeline beside its peers
(silero-vad, openSMILE eGeMAPS), on one CPU thread; writes a markdown report."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from edge_ser.commands.common import UsageError, check_range
from edge_ser.commands.runtime_options import (
    BACKEND_CHOICES,
    PRECISION_CHOICES,
    add_runtime_config_options,
    load_runtime_config,
)

DEMO_DIR = Path(__file__).resolve().parent.parent / "demo"


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks (bench stream: the streaming pipeline; "
                       "bench batch: the batch engine)",
                       description="Benchmarks. `bench stream` times the streaming pipeline "
                       "and its peers on the same audio, `bench batch` the batch engine on "
                       "call recordings; each writes a markdown report.")
    what = p.add_subparsers(dest="bench", metavar="BENCH", required=True)
    s = what.add_parser("stream", help="streaming pipeline vs silero-vad and openSMILE",
                        description="Real-time factor, per-chunk processing time, speech end "
                        "to result latency and memory over a long stream, on one CPU thread.")
    s.add_argument("--audio", type=Path, default=DEMO_DIR / "conversation.flac",
                   help="speech recording to stream (default: the bundled demo)")
    s.add_argument("--labels", type=Path, default=None,
                   help="its labels CSV for the latency figure (default: the demo's, when "
                   "--audio is the demo)")
    s.add_argument("--model", type=Path, default=None, help="model package (default: bundled)")
    s.add_argument("--backend", choices=BACKEND_CHOICES, default="onnxruntime")
    s.add_argument("--precision", choices=PRECISION_CHOICES, default="fp32",
                   help="encoder precision (default: fp32, the onnxruntime default)")
    s.add_argument("--minutes", type=float, default=5.0,
                   help="audio per throughput pass: the recording looped (default: 5)")
    s.add_argument("--memory-minutes", type=float, default=60.0,
                   help="length of the memory stream (default: 60)")
    s.add_argument("--repeats", type=int, default=3, help="passes per figure (median)")
    s.add_argument("--out", type=Path, help="write the markdown report here")
    add_runtime_config_options(s)
    b = what.add_parser("batch", help="batch engine throughput and memory vs openSMILE",
                        description="Throughput (recording-seconds per wall-clock second, per "
                        "worker) and peak memory per worker of `edge-ser batch` on stereo call "
                        "recordings, for each --workers value, beside openSMILE eGeMAPS "
                        "functionals over the same segments.")
    b.add_argument("recordings", nargs="+", type=Path, metavar="RECORDING",
                   help="call recordings (files or folders of .wav/.flac), copied round-robin "
                   "up to --minutes")
    b.add_argument("--minutes", type=float, default=10.0,
                   help="audio per pass (default: 10)")
    b.add_argument("--workers", default="1,2", help="worker counts to run (default: 1,2)")
    b.add_argument("--repeats", type=int, default=3, help="passes per figure (median)")
    b.add_argument("--model", type=Path, default=None, help="model package (default: bundled)")
    b.add_argument("--backend", choices=BACKEND_CHOICES, default="onnxruntime")
    b.add_argument("--precision", choices=PRECISION_CHOICES, default=None)
    b.add_argument("--no-egemaps", action="store_true", help="skip the openSMILE peer")
    b.add_argument("--no-variants", action="store_true",
                   help="measure the default configuration only (not also chunk calls and "
                   "numba kernels)")
    b.add_argument("--json", type=Path, help="also write the figures as JSON here")
    b.add_argument("--out", type=Path, help="write the markdown report here")
    add_runtime_config_options(b)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # counts are bounded before any pass: a typo of 10000 minutes would run for a week
    check_range("--minutes", args.minutes, 0.01, 24 * 60)
    check_range("--memory-minutes", getattr(args, "memory_minutes", None), 0.0, 24 * 60)
    check_range("--repeats", args.repeats, 1, 100)
    if args.bench == "batch":
        return _run_batch(args)
    return _run_stream(args)


AUDIO_SUFFIXES = (".wav", ".flac")


def _run_batch(args: argparse.Namespace) -> int:
    from edge_ser.bench.batch_bench import VARIANTS, BatchBenchOptions, benchmark

    try:
        workers = tuple(int(w) for w in args.workers.split(","))
    except ValueError:
        raise UsageError(f"--workers: expected e.g. 1,2, got {args.workers!r}") from None
    if args.minutes <= 0 or args.repeats < 1 or not workers or min(workers) < 1:
        raise UsageError("--minutes must be positive, --repeats and every --workers >= 1")
    load_runtime_config(args)  # a bad --config or --set fails here, before any pass
    recordings = []
    for item in args.recordings:
        if item.is_dir():
            recordings += sorted(p for p in item.rglob("*") if p.suffix.lower() in
                                 AUDIO_SUFFIXES)
        elif item.is_file():
            recordings.append(item)
        else:
            raise UsageError(f"{item}: no such file or folder")
    if not recordings:
        raise UsageError("no recordings found")
    options = BatchBenchOptions(
        recordings=recordings, minutes=args.minutes, workers=workers, repeats=args.repeats,
        model=str(args.model) if args.model else None, backend=args.backend,
        precision=args.precision, egemaps=not args.no_egemaps,
        variants=() if args.no_variants else VARIANTS, extra_args=_config_args(args),
        command="python main.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    return _report(benchmark, options, args.out, args.json)


def _run_stream(args: argparse.Namespace) -> int:
    from edge_ser.bench.stream_bench import benchmark
    from edge_ser.bench.stream_options import BenchOptions

    if args.minutes <= 0 or args.memory_minutes <= 0 or args.repeats < 1:
        raise UsageError("--minutes and --memory-minutes must be positive, --repeats >= 1")
    config = load_runtime_config(args)  # a bad --config or --set fails here, before any pass
    labels = args.labels
    if labels is None and args.audio == DEMO_DIR / "conversation.flac":
        labels = DEMO_DIR / "conversation.labels.csv"
    options = BenchOptions(
        audio=args.audio, labels=labels, model=str(args.model) if args.model else None,
        backend=args.backend, precision=args.precision, minutes=args.minutes,
        memory_minutes=args.memory_minutes, repeats=args.repeats, config=config,
        config_args=tuple(_config_args(args)),
        command="python main.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    return _report(benchmark, options, args.out, None)


def _config_args(args: argparse.Namespace) -> list[str]:
    """--config / --set as given, for the benchmark's own processes."""
    out = ["--config", str(args.config)] if args.config else []
    for override in args.overrides:
        out += ["--set", override]
    return out


def _report(benchmark, options, out: Path | None, json_out: Path | None) -> int:
    """Run a benchmark, print its markdown report and write it (and its figures) if asked."""
    import json

    from edge_ser.atomic_write import write_text_atomic
    from edge_ser.bench.peers import PeerUnavailable

    try:
        report, figures = benchmark(options, log=lambda m: print(f"bench: {m}", file=sys.stderr))
    except PeerUnavailable as exc:
        raise UsageError(str(exc)) from None
    if out:
        write_text_atomic(out, report)
        print(f"bench: wrote {out}", file=sys.stderr)
    if json_out:
        write_text_atomic(json_out, json.dumps(figures, indent=2) + "\n")
    print(report)
    return 0
