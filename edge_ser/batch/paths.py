"""Output names: every file a batch writes lies inside its output folder.

Names come from call ids or input file names, which may hold anything (`../`, absolute paths,
spaces, unicode); `safe_name` keeps a conservative character set, and `recording_dir` checks the
final path is inside the output folder.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

RECORDINGS_DIR = "recordings"
MAX_NAME = 80
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str) -> str:
    """A file-name-safe version of `text`: [A-Za-z0-9._-] only, no leading dot, at most 80
    characters (a long name keeps a hash of the whole so names stay distinct)."""
    name = _UNSAFE.sub("_", str(text)).strip("._-")
    name = re.sub(r"_+", "_", name)
    if len(name) > MAX_NAME:
        digest = hashlib.sha1(str(text).encode("utf-8")).hexdigest()[:8]
        name = f"{name[:MAX_NAME - 9]}-{digest}"
    return name or "recording"


def short_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]


def recording_dir(out_dir: str | os.PathLike, key: str) -> Path:
    """The folder of one recording's outputs; ValueError if it would leave `out_dir`."""
    root = Path(out_dir).resolve()
    target = (root / RECORDINGS_DIR / key).resolve()
    if key != safe_name(key) or target.parent != root / RECORDINGS_DIR:
        raise ValueError(f"recording key {key!r} would write outside {root}")
    return target
