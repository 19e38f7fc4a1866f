"""The output folder of a batch: writable before any work starts, and never shared silently by
two sets of inputs.

A batch records the input sets it was run on in batch.json (`input_sets`: sha256 over the
real paths of its input arguments). A run on another set of inputs into the same
folder is refused unless `--force` adds it; and a completed recording is never replaced by one
of another input file that happens to have the same output key: that one gets its own key
(`<key>-<hash of its real path>`), so both are kept.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path

from edge_ser.atomic_write import write_bytes_atomic
from edge_ser.batch import outputs
from edge_ser.batch.inputs import Recording
from edge_ser.batch.paths import MAX_NAME, recording_dir, safe_name, short_hash


class OutputFolderError(ValueError):
    """The output folder cannot be used; the message names it and says what to do."""


def prepare(out: Path) -> None:
    """Create `out` if needed and prove a file can be written in it."""
    if out.exists() and not out.is_dir():
        raise OutputFolderError(f"--out {out} is a file; give a folder")
    probe = out / f".write-test.{os.getpid()}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(probe, b"", durable=False)
        probe.unlink()
    except OSError as exc:
        raise OutputFolderError(f"--out {out}: cannot write there "
                                f"({exc.strerror or exc})") from None


def input_set(inputs: list[str]) -> str:
    """sha256 identifying a set of inputs: the batch's input arguments (files, folders, globs,
    manifests) as real paths, in any order. A folder that gains files stays the same input."""
    lines = sorted({os.path.realpath(arg) for arg in inputs})
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def claim(out: Path, digest: str, force: bool) -> list[str]:
    """The input sets `out` will record: the earlier ones plus `digest`. OutputFolderError
    when `out` holds results of other inputs and `force` is not given."""
    try:
        earlier = json.loads((out / outputs.BATCH_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        earlier = {}
    sets = earlier.get("input_sets") if isinstance(earlier, dict) else None
    sets = [s for s in sets if isinstance(s, str)] if isinstance(sets, list) else []
    if sets and digest not in sets and not force:
        raise OutputFolderError(
            f"--out {out} holds the results of another set of inputs; rerun with those "
            "inputs to resume it, choose another --out, or pass --force to add these "
            "recordings beside them (a recording of another input file is never replaced)")
    return sets if digest in sets else [*sets, digest]


def keep_others(recordings: list[Recording], out_dir: Path) -> list[Recording]:
    """`recordings` with a new key for each one whose output folder holds the completed
    results of another input file, so that neither replaces the other."""
    kept = []
    for rec in recordings:
        owner = _owner(recording_dir(out_dir, rec.key))
        real = os.path.realpath(rec.path)
        if owner is not None and owner != real:
            key = f"{rec.key[:MAX_NAME - 9]}-{short_hash(real)}"
            rec = replace(rec, key=key if safe_name(key) == key else f"recording-{key[-8:]}")
        kept.append(rec)
    return kept


def _owner(folder: Path) -> str | None:
    """The real path of the input whose completed results `folder` holds (None: none)."""
    marker = outputs.read_marker(folder)
    if marker is None:
        return None
    source = marker.get("source")
    if isinstance(source, dict) and isinstance(source.get("realpath"), str):
        return source["realpath"]
    path = marker.get("path")
    return os.path.realpath(path) if isinstance(path, str) else None
