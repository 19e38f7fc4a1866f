"""The `edge-ser` command line (also `python main.py`).

Each command lives in `edge_ser/commands/<name>.py` with `add_parser(subparsers)` and
`run(args) -> exit status`. Commands exit non-zero with a one-line reason on bad input, and import
heavy dependencies (torch, tensorrt, sounddevice) only when they run.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from edge_ser.audio import AudioError
from edge_ser.commands.common import UsageError
from edge_ser.config import ConfigError

COMMANDS = ("train", "eval", "stream", "batch", "mic", "bench", "export", "adapt")

LIVE_FLAGS = ("--mic", "--list-devices")
"""Top-level flags that mean the `mic` command: `edge-ser --mic [--device ID ...]`."""


def _command_modules():
    return {name: importlib.import_module(f"edge_ser.commands.{name}") for name in COMMANDS}


def build_parser(modules) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-ser", description="Speech emotion recognition for the edge.")
    parser.add_argument("--mic", action="store_true",
                        help="live tagging from the microphone (options: `mic --help`)")
    parser.add_argument("--list-devices", action="store_true",
                        help="list the audio input devices")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in modules.values():
        module.add_parser(sub)
    return parser


def _live_argv(argv: list[str]) -> list[str]:
    """`--mic ...` / `--list-devices` with no command name become the `mic` command."""
    if any(a in COMMANDS for a in argv if not a.startswith("-")):
        return argv
    if not any(a in LIVE_FLAGS for a in argv):
        return argv
    return ["mic", *(a for a in argv if a != "--mic")]


def main(argv: list[str] | None = None) -> int:
    modules = _command_modules()
    parser = build_parser(modules)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(_live_argv(argv))
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return modules[args.command].run(args)
    except (UsageError, ConfigError, AudioError, ValueError) as exc:
        # ValueError covers CorpusError and the other input errors that name their file
        print(f"edge-ser {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"edge-ser {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of our output went away (e.g. `| head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
