"""What a batch processes: recordings from files, folders (recursive), globs and manifests.

A manifest is a CSV (header row) or JSON Lines file with one recording per row: `path`
(required; relative paths are taken from the manifest's folder), `call_id` (optional), `channels`
(optional roles such as `agent=0,customer=1`) and any other fields, kept as free metadata and
carried through to the outputs (in JSONL, a `metadata` object is merged in as well).
"""

from __future__ import annotations

import csv
import glob
import json
import os
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

import soundfile as sf

from edge_ser.batch.channels import ChannelRoles, parse_roles
from edge_ser.batch.paths import safe_name, short_hash

MANIFEST_SUFFIXES = {".csv", ".jsonl", ".ndjson"}
AUDIO_SUFFIXES = frozenset(
    {f".{name.lower()}" for name in sf.available_formats()}
    | {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".aifc", ".au",
       ".snd", ".caf", ".w64", ".rf64", ".sph", ".nist", ".voc"}
    - {".raw", ".mat4", ".mat5"})
"""Suffixes of the files a folder input contributes (the formats libsndfile reads)."""

_RESERVED = {"path", "call_id", "channels", "metadata"}


class InputError(ValueError):
    """An input argument or manifest that cannot be used; names the input and the problem."""


@dataclass(frozen=True)
class Recording:
    """One recording to process. `key` names its output folder (unique in the batch, safe)."""

    path: str
    call_id: str | None = None
    roles: ChannelRoles | None = None
    metadata: dict[str, object] = field(default_factory=dict, hash=False, compare=False)
    source: str = ""
    """The input argument (file, folder, glob or manifest row) it came from, for messages."""
    key: str = ""


@dataclass(frozen=True)
class InputProblem:
    """An input argument that contributed nothing (recorded in errors.jsonl)."""

    input: str
    reason: str


def collect_recordings(inputs: list[str], exclude: Path | None = None
                       ) -> tuple[list[Recording], list[InputProblem]]:
    """The recordings named by `inputs`, in input order (folders and globs sorted), duplicates
    dropped and each given a unique output key; plus the inputs that matched nothing.

    Files under `exclude` (the output folder) are skipped. Raises InputError for a manifest
    that cannot be parsed.
    """
    found: list[Recording] = []
    problems: list[InputProblem] = []
    for arg in inputs:
        path = Path(arg)
        if path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
            found.extend(read_manifest(path))
        elif path.is_file():
            found.append(Recording(path=str(path), source=arg))
        elif path.is_dir():
            entries, unreadable = _walk(path, exclude)
            files = _audio_files(path, [p for p in entries if p.is_file()], exclude)
            skipped = [InputProblem(str(p), _not_a_file(p))
                       for p in _audio_files(path, entries, exclude) if not p.is_file()]
            problems.extend(unreadable + skipped)
            if not files and not unreadable and not skipped:
                problems.append(InputProblem(arg, "folder holds no audio files"))
            found.extend(Recording(path=str(p), source=arg) for p in files)
        elif glob.has_magic(arg):
            files = [Path(p) for p in sorted(glob.glob(arg, recursive=True))]
            files = [p for p in files if p.is_file() and not _inside(p, exclude)]
            if not files:
                problems.append(InputProblem(arg, "no file matches this pattern"))
            found.extend(Recording(path=str(p), source=arg) for p in files)
        else:
            problems.append(InputProblem(arg, "no such file or folder"))
    return assign_keys(_unique(found)), problems


def _walk(root: Path, exclude: Path | None) -> tuple[list[Path], list[InputProblem]]:
    """Every entry below `root` that is not a folder (symbolic links to folders are not
    followed), sorted; plus the folders that could not be read."""
    unreadable: list[InputProblem] = []

    def onerror(exc: OSError) -> None:
        folder = Path(exc.filename) if exc.filename else root
        if not _inside(folder, exclude) and folder != exclude:
            unreadable.append(InputProblem(str(folder), f"cannot read this folder "
                                           f"({exc.strerror or exc}); its files are skipped"))

    entries = [Path(folder) / name
               for folder, _, names in os.walk(root, onerror=onerror, followlinks=False)
               for name in names]
    return sorted(entries), sorted(unreadable, key=lambda p: p.input)


def _not_a_file(path: Path) -> str:
    """Why an audio-named entry of a folder is skipped."""
    if path.is_symlink():
        try:
            path.stat()
        except OSError as exc:
            return f"skipped: a symbolic link that cannot be followed ({exc.strerror})"
    return "skipped: not a regular file"


def _audio_files(root: Path, paths: list[Path], exclude: Path | None) -> list[Path]:
    """The audio files among `paths` (found below `root`), leaving out hidden files and
    folders below `root` and anything inside `exclude`."""
    return [p for p in paths
            if p.suffix.lower() in AUDIO_SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(root).parts)
            and not _inside(p, exclude)]


def _inside(path: Path, folder: Path | None) -> bool:
    # os.path.realpath, not Path.resolve: a symbolic link loop must not raise here
    return folder is not None and Path(os.path.realpath(folder)) in \
        Path(os.path.realpath(path)).parents


def _unique(recordings: list[Recording]) -> list[Recording]:
    """Drop repeats of the same (file, call id), keeping the first."""
    seen: set[tuple[str, str | None]] = set()
    out = []
    for rec in recordings:
        ident = (os.path.realpath(rec.path), rec.call_id)
        if ident not in seen:
            seen.add(ident)
            out.append(rec)
    return out


def assign_keys(recordings: list[Recording]) -> list[Recording]:
    """Give each recording its output key: the safe call id, else the safe file stem; names
    that collide get a hash of the call id or resolved path, so keys never depend on order."""
    call_ids: dict[str, int] = defaultdict(int)
    for rec in recordings:
        if rec.call_id is not None:
            call_ids[rec.call_id] += 1
    repeated = sorted(c for c, n in call_ids.items() if n > 1)
    if repeated:
        raise InputError(f"call id {repeated[0]!r} is given to more than one recording; "
                         "call ids must be unique in a batch")
    base = [safe_name(rec.call_id if rec.call_id is not None else Path(rec.path).stem)
            for rec in recordings]
    counts: dict[str, int] = defaultdict(int)
    for name in base:
        counts[name.lower()] += 1  # case-insensitive file systems
    out = []
    for rec, name in zip(recordings, base):
        if counts[name.lower()] > 1:
            ident = rec.call_id if rec.call_id is not None else os.path.realpath(rec.path)
            name = f"{name}-{short_hash(ident)}"
        out.append(replace(rec, key=name))
    return out


def read_manifest(path: Path) -> list[Recording]:
    """The recordings of a CSV or JSON Lines manifest (see the module docstring)."""
    rows = _read_jsonl(path) if path.suffix.lower() in (".jsonl", ".ndjson") else _read_csv(path)
    recordings = []
    for line, row in rows:
        where = f"{path}:{line}"
        audio = row.get("path")
        if not isinstance(audio, str) or not audio.strip():
            raise InputError(f"{where}: no 'path' for the recording; every row needs one")
        audio_path = Path(audio.strip())
        if not audio_path.is_absolute():
            audio_path = path.parent / audio_path
        call_id = row.get("call_id")
        call_id = None if call_id in (None, "") else str(call_id)
        roles = _row_roles(row.get("channels"), where)
        metadata = {k: v for k, v in row.items() if k not in _RESERVED and v not in (None, "")}
        extra = row.get("metadata")
        if isinstance(extra, dict):
            metadata.update(extra)
        elif extra not in (None, ""):
            metadata["metadata"] = extra
        recordings.append(Recording(path=str(audio_path), call_id=call_id, roles=roles,
                                    metadata=metadata, source=where))
    return recordings


def _row_roles(value: object, where: str) -> ChannelRoles | None:
    if value in (None, ""):
        return None
    try:
        if isinstance(value, dict):
            return parse_roles(",".join(f"{k}={v}" for k, v in value.items()))
        return parse_roles(str(value))
    except ValueError as exc:
        raise InputError(f"{where}: {exc}") from None


def _read_csv(path: Path) -> list[tuple[int, dict[str, object]]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or "path" not in reader.fieldnames:
                raise InputError(f"{path}: a CSV manifest needs a header row with a 'path' "
                                 f"column (found: {', '.join(reader.fieldnames or []) or 'none'})")
            return [(i + 2, {k: v for k, v in row.items() if k is not None})
                    for i, row in enumerate(reader)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: cannot read the manifest ({exc})") from None


def _read_jsonl(path: Path) -> list[tuple[int, dict[str, object]]]:
    rows = []
    try:
        with open(path, encoding="utf-8") as fh:
            for i, text in enumerate(fh, start=1):
                if not text.strip():
                    continue
                try:
                    row = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise InputError(f"{path}:{i}: not valid JSON ({exc.msg})") from None
                if not isinstance(row, dict):
                    raise InputError(f"{path}:{i}: expected a JSON object per line")
                rows.append((i, row))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the manifest ({exc})") from None
    return rows
