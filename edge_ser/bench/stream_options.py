"""What `edge-ser bench stream` measures with: its options and the chunk it feeds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CHUNK_MS = 100
"""Audio per `accept_waveform` call in every timed pass."""


@dataclass
class BenchOptions:
    audio: Path
    labels: Path | None
    model: str | None
    backend: str
    precision: str
    minutes: float
    memory_minutes: float
    repeats: int
    command: str
    config: object | None = None
    """The runtime config of the pipeline passes (None: the built-in defaults); the feature
    kernels are set per pass."""
    config_args: tuple[str, ...] = ()
    """The same as `--config` / `--set` arguments, for the memory run's own process."""
