"""The `edge-ser` command line (also `python main.py`), assembled from every layer.

This is the one place that knows every command. The layers point down (`edge_ser` runtime <-
`edge_ser_train` <- `edge_ser_export` <- this), so the command line sits on top and takes from
each layer the commands that belong to it:

    runtime (edge_ser.commands)          eval, stream, batch, mic, bench, export trt|check
    training (edge_ser_train.commands)   train; the scorer of `eval --model CKPT.pt`
    export (edge_ser_export)             export package|sweep, adapt

Each command registers itself with `add_parser(subparsers)` and sets its `handler`; commands
exit non-zero with a one-line reason on bad input (`edge_ser.commands.execute`), and import
heavy dependencies (torch, tensorrt, sounddevice) only when they run. Without torch installed,
`train`, `adapt`, `export package` and `export sweep` say which extra to install; every
`--help` works.
"""

from __future__ import annotations

import argparse
import sys

from edge_ser.commands import batch, bench, execute, mic, stream
from edge_ser.commands import eval as eval_command
from edge_ser.commands import export as export_command
from edge_ser_export import adapt_command, package_command
from edge_ser_train import commands as train_commands

COMMANDS = ("train", "eval", "stream", "batch", "mic", "bench", "export", "adapt")

LIVE_FLAGS = ("--mic", "--list-devices")
"""Top-level flags that mean the `mic` command: `edge-ser --mic [--device ID ...]`."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-ser", description="Speech emotion recognition for the edge.")
    parser.add_argument("--mic", action="store_true",
                        help="live tagging from the microphone (options: `mic --help`)")
    parser.add_argument("--list-devices", action="store_true",
                        help="list the audio input devices")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    train_commands.add_parser(sub)
    eval_command.add_parser(sub, score_checkpoint=train_commands.score_checkpoint)
    stream.add_parser(sub)
    batch.add_parser(sub)
    mic.add_parser(sub)
    bench.add_parser(sub)
    package_command.add_stages(export_command.add_parser(sub))
    adapt_command.add_parser(sub)
    return parser


def _live_argv(argv: list[str]) -> list[str]:
    """`--mic ...` / `--list-devices` with no command name become the `mic` command."""
    if any(a in COMMANDS for a in argv if not a.startswith("-")):
        return argv
    if not any(a in LIVE_FLAGS for a in argv):
        return argv
    return ["mic", *(a for a in argv if a != "--mic")]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(_live_argv(argv))
    if args.command is None:
        parser.print_help()
        return 2
    return execute(args)


if __name__ == "__main__":
    sys.exit(main())
