"""What every worker of a batch needs to know: how to build the recognizer, and the job settings.

Both are frozen and picklable, so a process pool or a Ray actor builds the same recognizer and
runs the same per-recording function as a batch in one process.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from edge_ser.batch.channels import ChannelRoles, format_roles
from edge_ser.config import to_dict
from edge_ser.recognizer import FILE_BLOCK_S
from edge_ser.runtime_config import RuntimeConfig


@dataclass(frozen=True)
class RecognizerSpec:
    """The recognizer options of `Recognizer.from_options` (model None: the bundled package)."""

    model: str | None = None
    backend: str = "onnxruntime"
    precision: str | None = None
    """None: the backend's default (`backends.default_precision`)."""
    threads: int = 1
    config: RuntimeConfig = RuntimeConfig()

    def __call__(self):
        """A batch worker's recognizer, built once per worker process (every engine)."""
        from edge_ser.malloc_tuning import keep_freed_memory
        from edge_ser.recognizer import Recognizer

        keep_freed_memory()  # the worker allocates the same buffers for hours
        return Recognizer.from_options(self.model, backend=self.backend,
                                       precision=self.precision, threads=self.threads,
                                       config=self.config)

    def describe(self) -> dict[str, object]:
        return {"model": self.model, "backend": self.backend, "precision": self.precision,
                "config": to_dict(self.config)}


@dataclass(frozen=True)
class JobSettings:
    """How each recording of a batch is processed and where its outputs go."""

    out_dir: str
    fingerprint: str
    """Identifies the settings that shape the results; a finished recording made with other
    settings is redone."""
    default_roles: ChannelRoles | None = None
    """The batch's `--channels` (None: mono = speaker, stereo = agent=0,customer=1)."""
    block_s: float = FILE_BLOCK_S
    """Audio decoded at a time: memory stays flat for any recording length."""
    force: bool = False
    plot: bool = False


def model_manifest_sha256(model: str | None) -> str | None:
    """sha256 of the package manifest (which lists the sha256 of every file of the package),
    so a replaced model changes it; None when the package has no manifest to read."""
    from edge_ser.package import DEFAULT_PACKAGE, MANIFEST_NAME

    manifest = Path(model) / MANIFEST_NAME if model else DEFAULT_PACKAGE / MANIFEST_NAME
    try:
        return hashlib.sha256(manifest.read_bytes()).hexdigest()
    except OSError:
        return None


def fingerprint(spec: RecognizerSpec, default_roles: ChannelRoles | None) -> str:
    """sha256 over the model package's manifest, the recognizer options, the runtime config
    and the channel roles: what shapes the results."""
    facts = {**spec.describe(), "model_manifest_sha256": model_manifest_sha256(spec.model),
             "channels": format_roles(default_roles) if default_roles else None}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode("utf-8")).hexdigest()
