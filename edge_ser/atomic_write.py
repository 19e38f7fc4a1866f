"""Atomic file writes: a reader never sees a half-written output, even after `kill -9`.

A durable write (the default) also survives a power loss: the file and then its folder are
fsynced. The batch writes its per-recording outputs without fsync (ten fsyncs per recording
cost it a tenth of its throughput) and makes them safe another way: the completion marker
records every output's size and sha256, and a recording whose files do not match is redone
(`edge_ser.batch.outputs.is_complete`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_UMASK = os.umask(0)
os.umask(_UMASK)  # read once, at import: os.umask can only be read by setting it


def write_bytes_atomic(path: str | os.PathLike, data: bytes, durable: bool = True) -> None:
    """Write to a temporary file in the target's folder (fsynced when `durable`), then rename
    it over the target (and fsync the folder when `durable`)."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            # mkstemp makes the file private (0600); give it the mode open() would
            os.fchmod(fh.fileno(), 0o666 & ~_UMASK)
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        _fsync_folder(target.parent)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a folder; the rename is then as durable as it gets
    finally:
        os.close(fd)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))
