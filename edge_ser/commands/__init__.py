"""The runtime's commands. Each module registers its command with `add_parser(subparsers)`,
which sets the function that runs it as the parser's `handler` default.

The command line (`edge-ser`, `python main.py`) is assembled in one place, the top layer
(`edge_ser_export.cli`), which adds the training and export commands to these. `execute` runs a
parsed command with the one-line error handling every command shares; `run_runtime_command`
runs one runtime command in a process of its own (the batch benchmark uses it), with no layer
above the runtime involved.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from edge_ser.audio import AudioError
from edge_ser.commands.common import UsageError
from edge_ser.config import ConfigError

RUNTIME_COMMANDS = ("eval", "stream", "batch", "mic", "bench", "export")
"""Commands that need nothing but the runtime (`export` here: `trt` and `check`)."""


def execute(args: argparse.Namespace) -> int:
    """Run the parsed command's handler; bad input is one line on stderr and exit status 2."""
    try:
        return args.handler(args)
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


def run_runtime_command(name: str, argv: list[str]) -> int:
    """`edge-ser NAME ARGV...` for one runtime command, e.g. from `python -c`."""
    if name not in RUNTIME_COMMANDS:
        raise ValueError(f"{name!r} is not a runtime command ({', '.join(RUNTIME_COMMANDS)})")
    parser = argparse.ArgumentParser(prog="edge-ser")
    importlib.import_module(f"edge_ser.commands.{name}").add_parser(
        parser.add_subparsers(dest="command", required=True))
    return execute(parser.parse_args([name, *argv]))
