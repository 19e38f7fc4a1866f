"""Options shared by the runtime commands (`stream`, `mic`, `batch`, `eval`, `bench`): model,
backend, runtime config, outputs; and building the recognizer from them."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_ser.commands.common import MAX_THREADS, UsageError, add_config_options, check_range

BACKEND_CHOICES = ("onnxruntime", "tensorrt")
PRECISION_CHOICES = ("int8", "fp32", "fp16")


def add_runtime_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, default=None,
                        help="model package folder, or the name of a bundled package "
                        "(default: the bundled `default`)")
    parser.add_argument("--backend", choices=BACKEND_CHOICES, default="onnxruntime",
                        help="encoder backend (default: onnxruntime)")
    parser.add_argument("--precision", choices=PRECISION_CHOICES, default=None,
                        help="encoder precision (default: int8 on TensorRT, fp32 on "
                        "onnxruntime; fp16 on TensorRT only)")
    parser.add_argument("--threads", type=int, default=1,
                        help=f"CPU threads per encoder call, 1 to {MAX_THREADS} (default: 1)")
    add_runtime_config_options(parser)


def add_runtime_config_options(parser: argparse.ArgumentParser) -> None:
    """`--config` / `--set` of the runtime config (VAD, windows, tracker, live input, feature
    kernels, batch encoder calls)."""
    add_config_options(parser, "runtime", "configs/runtime/default.yaml",
                       "vad.aggressiveness=3")


def add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--jsonl", type=Path, metavar="PATH",
                        help="log every event as JSON Lines here (the resolved config is "
                        "saved beside it)")
    parser.add_argument("--quiet", action="store_true",
                        help="print only the finished segments (no live line)")


def load_runtime_config(args: argparse.Namespace):
    from edge_ser.config import load_config
    from edge_ser.runtime_config import RuntimeConfig

    # checked before any work; `bench` and `eval` of a checkpoint take no --threads
    check_range("--threads", getattr(args, "threads", None), 1, MAX_THREADS)

    return load_config(RuntimeConfig, args.config, args.overrides)


def build_recognizer(args: argparse.Namespace, config):
    """The recognizer the options ask for; UsageError with what to do when it cannot load."""
    from edge_ser.backends import BackendUnavailable, default_precision
    from edge_ser.package import PackageError
    from edge_ser.recognizer import Recognizer

    precision = args.precision or default_precision(args.backend)
    try:
        return Recognizer.from_options(args.model, backend=args.backend, precision=precision,
                                       threads=args.threads, config=config)
    except (PackageError, BackendUnavailable) as exc:
        raise UsageError(str(exc)) from None


def jsonl_config_path(jsonl: Path) -> tuple[Path, str]:
    """Where the resolved config goes beside a JSONL log: (folder, file name)."""
    return jsonl.parent, f"{jsonl.stem}.config.resolved.yaml"


def open_jsonl(path: Path, config):
    """The `--jsonl` writer, with the resolved config saved beside it (its folder created if
    needed); UsageError naming the path when it is a folder or cannot be written."""
    from edge_ser.config import save_resolved
    from edge_ser.events import JsonlWriter

    if path.is_dir():
        raise UsageError(f"--jsonl {path} is a folder; give a file path, e.g. "
                         f"{path / 'events.jsonl'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = JsonlWriter(path)
    except OSError as exc:
        raise UsageError(f"--jsonl {path}: cannot write there ({exc.strerror or exc})") from None
    try:
        save_resolved(config, *jsonl_config_path(path))
    except OSError as exc:
        writer.close()
        raise UsageError(f"--jsonl {path}: cannot write the resolved config beside it "
                         f"({exc.strerror or exc})") from None
    return writer
