"""What every command shares: config options, the usage error, optional extras."""

from __future__ import annotations

import argparse
import importlib.util
import math
from pathlib import Path


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""


def add_config_options(parser: argparse.ArgumentParser, what: str, shipped: str,
                       example: str) -> None:
    """`--config YAML` (default: the config class' built-in defaults, which the documented copy
    `shipped` under `configs/` repeats) and `--set KEY=VALUE` with an `example` key."""
    parser.add_argument("--config", type=Path, default=None, metavar="YAML",
                        help=f"{what} YAML (default: the built-in defaults, documented in "
                        f"{shipped})")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help=f"override a config value (repeatable), e.g. {example}")


MAX_THREADS = 64
"""--threads: CPU threads of one encoder call; more only contend (and thousands hang)."""
MAX_WORKERS = 256
"""--workers: processes or actors, each holding a model."""


def check_range(option: str, value: float | int | None, low: float, high: float) -> None:
    """UsageError naming `option`, its value and the allowed range unless `value` is a finite
    number in [low, high] (None: the option was not given)."""
    if value is None:
        return
    if not math.isfinite(value) or not low <= value <= high:
        raise UsageError(f"{option} {value} is out of range; allowed {low} to {high}")


def require_extra(what: str, extra: str, modules: tuple[str, ...]) -> None:
    """UsageError naming the extra to install when one of `modules` is missing."""
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a parent package is missing or broken
            found = False
        if not found:
            raise UsageError(f"{what} needs {module}, which is not installed: "
                             f"pip install 'edge-ser[{extra}]'")


TRAIN_MODULES = ("torch", "torchaudio", "scipy")
"""What the `train` extra adds that training, adaptation and package export import."""
