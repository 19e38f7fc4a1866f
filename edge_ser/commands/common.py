"""What every command shares: default paths, config options, the usage error."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
DEFAULT_TRAIN_CONFIG = REPO_ROOT / "configs" / "train" / "default.yaml"
DEFAULT_CHECKPOINT = REPO_ROOT / "runs" / "default" / "model.pt"


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""


def add_config_options(parser: argparse.ArgumentParser, default_config: Path | None) -> None:
    parser.add_argument("--config", type=Path, default=default_config,
                        help=f"YAML config (default: {default_config})")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a config value, e.g. optim.epochs=5")


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
