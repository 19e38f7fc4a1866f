"""Atomic file writes: a reader never sees a half-written output, even after `kill -9`.

A durable write (the default) also survives a power loss: the file and then its folder are
fsynced. The batch writes its per-recording outputs without fsync (ten fsyncs per recording
cost it a tenth of its throughput) and makes them safe another way: the completion marker
records every output's size and sha256, and a recording whose files do not match is redone
(`edge_ser.batch.outputs.is_complete`).
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

_TEMPORARY_NUMBERS = itertools.count()
"""With the process id, names this process's temporary files uniquely (next() is atomic under
the GIL, so threads writing at once get different numbers)."""
_ATTEMPTS = 100


def write_bytes_atomic(path: str | os.PathLike, data: bytes, durable: bool = True) -> None:
    """Write to a temporary file in the target's folder (fsynced when `durable`), then rename
    it over the target (and fsync the folder when `durable`)."""
    target = Path(path)
    fd, tmp = _create_temporary(target)
    try:
        with os.fdopen(fd, "wb") as fh:
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


def _create_temporary(target: Path) -> tuple[int, Path]:
    """A new file `.<name>.<pid>.<n>.tmp` beside `target`, opened for writing, with the mode a
    plain open() gives (0666 less the umask). Cheaper than tempfile.mkstemp (no random names,
    no fchmod); O_EXCL still refuses a leftover of an earlier process that had the same id."""
    flags = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
             | getattr(os, "O_BINARY", 0))  # Windows would translate newlines otherwise
    for _ in range(_ATTEMPTS):
        tmp = target.parent / f".{target.name}.{os.getpid()}.{next(_TEMPORARY_NUMBERS)}.tmp"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{target}: no free temporary name after {_ATTEMPTS} attempts")


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
