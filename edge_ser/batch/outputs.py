"""The files a batch writes, all atomically (temporary file, then rename).

Per recording, in `OUT/recordings/<key>/`:
    segments.jsonl  one JSON object per speech segment (event fields + role, call id, metadata)
    segments.csv    the same, one row per segment, a column per class probability
    segments.rttm   RTTM-like: SPEAKER <key> <channel+1> <start> <dur> <NA> <label> <role>
                    <confidence> <NA>; <label> is `non-speech` for a non-speech segment
    summary.json    the recording's summary (see `summary.py`)
    complete.json   the completion marker, written last: it lists every output with its size
                    and sha256, and a folder without it, or whose files do not match it, is redone
Across the batch, in `OUT/`: summary.csv (one row per complete recording), errors.jsonl (one
object per input or recording that failed in the latest run), config.resolved.yaml and
batch.json (the model, its manifest's sha256, backend, precision, roles and engine).

The per-recording files are renamed into place without fsync: a crash of the process (even
`kill -9`) loses nothing written, and after a power loss the marker's sizes and hashes expose
any file the disk did not keep, so the recording is redone. The batch-wide files are durable.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from pathlib import Path

from edge_ser.atomic_write import write_bytes_atomic, write_text_atomic
from edge_ser.batch.summary import RoleSegment
from edge_ser.events import NON_SPEECH

BATCH_FORMAT_VERSION = 2
"""Bumped whenever a field of the batch outputs is renamed, removed or changes meaning
(2: non-speech segments: label null / empty in the CSV / `non-speech` in the RTTM, and the
CSV's `speech` and `reason` columns)."""
SEGMENTS_JSONL = "segments.jsonl"
SEGMENTS_CSV = "segments.csv"
SEGMENTS_RTTM = "segments.rttm"
SUMMARY_JSON = "summary.json"
MARKER = "complete.json"
ERRORS = "errors.jsonl"
BATCH_SUMMARY_CSV = "summary.csv"
BATCH_JSON = "batch.json"
RUN_JSON = "run.json"


def segment_records(segments: list[RoleSegment], call_id: str | None,
                    metadata: dict[str, object]) -> list[dict[str, object]]:
    records = []
    for s in segments:
        record = s.result.to_dict()
        record["batch_version"] = BATCH_FORMAT_VERSION
        record["role"] = s.role
        record["call_id"] = call_id
        if metadata:
            record["metadata"] = metadata
        records.append(record)
    return records


def write_output(folder: Path, name: str, data: bytes) -> dict[str, object]:
    """One output of a recording, atomically and without fsync; returns what the completion
    marker records of it: {"bytes", "sha256"}."""
    write_bytes_atomic(folder / name, data, durable=False)
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def write_segments(folder: Path, key: str, records: list[dict[str, object]],
                   labels: tuple[str, ...]) -> dict[str, dict[str, object]]:
    """segments.jsonl, segments.csv and segments.rttm of one recording: {name: digest}."""
    jsonl = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["call_id", "start_s", "end_s", "channel", "role", "label", "confidence",
                     "similarity", *(f"prob_{label}" for label in labels), "segment", "speech",
                     "reason"])
    for r in records:
        probs = r["probs"]
        writer.writerow([r["call_id"] or "", r["start_s"], r["end_s"], r["channel"], r["role"],
                         r["label"], r["confidence"], r["similarity"],
                         *(probs.get(label, "") for label in labels), r["segment"],
                         int(r["speech"]), r["reason"]])
    rttm = "".join(f"SPEAKER {key} {int(r['channel']) + 1} {float(r['start_s']):.3f} "
                   f"{float(r['end_s']) - float(r['start_s']):.3f} <NA> "
                   f"{r['label'] or NON_SPEECH} {r['role']} "
                   f"{float(r['confidence']):.4f} <NA>\n" for r in records)
    return {name: write_output(folder, name, text.encode("utf-8"))
            for name, text in ((SEGMENTS_JSONL, jsonl), (SEGMENTS_CSV, buffer.getvalue()),
                               (SEGMENTS_RTTM, rttm))}


def json_bytes(data: dict[str, object]) -> bytes:
    return (json.dumps(data, indent=2) + "\n").encode("utf-8")


def write_json(path: Path, data: dict[str, object]) -> None:
    """A batch-wide JSON file, durably."""
    write_bytes_atomic(path, json_bytes(data))


def write_marker(folder: Path, marker: dict[str, object]) -> None:
    """The completion marker; written after every other output of the recording, whose
    digests it lists under "outputs"."""
    write_bytes_atomic(folder / MARKER, json_bytes(marker), durable=False)


def read_marker(folder: Path) -> dict[str, object] | None:
    try:
        data = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_complete(folder: Path, fingerprint: str, source: dict[str, object] | None,
                required: tuple[str, ...] = ()) -> bool:
    """True when the folder holds a finished result of the same input file (`source`: its
    real path, size and modification time) made with the same settings, including the
    `required` optional outputs (e.g. the timeline plot), and every output still has the size
    and sha256 the marker recorded."""
    marker = read_marker(folder)
    if (marker is None or source is None or marker.get("fingerprint") != fingerprint
            or marker.get("source") != source):
        return False
    listed = marker.get("outputs")
    if not isinstance(listed, dict):  # a marker without digests (older batches) is redone
        return False
    return (all(name in listed for name in required)
            and all(_matches(folder / name, digest) for name, digest in listed.items()))


def _matches(path: Path, digest: object) -> bool:
    if not isinstance(digest, dict):
        return False
    try:
        if path.stat().st_size != digest.get("bytes"):
            return False
        data = path.read_bytes()
    except OSError:
        return False
    return hashlib.sha256(data).hexdigest() == digest.get("sha256")


def remove_temporaries(folder: Path) -> None:
    """Delete the temporary files an interrupted atomic write left behind."""
    if folder.is_dir():
        for leftover in folder.glob(".*.tmp"):
            leftover.unlink(missing_ok=True)


def remove_recording_temporaries(out_dir: Path) -> None:
    """Delete what interrupted atomic writes left in every recording folder (a recording
    that is complete or never redone would keep them for ever)."""
    from edge_ser.batch.paths import RECORDINGS_DIR

    try:
        folders = list(os.scandir(out_dir / RECORDINGS_DIR))
    except OSError:
        return
    for entry in folders:
        if entry.is_dir(follow_symlinks=False):
            remove_temporaries(Path(entry.path))


def write_run_totals(out_dir: Path, totals: dict[str, object]) -> None:
    """run.json: the totals of the latest run (files done, skipped, failed; audio seconds;
    elapsed seconds; speed), for scripts and benchmarks."""
    write_text_atomic(out_dir / RUN_JSON, json.dumps(totals, indent=1))


def write_errors(out_dir: Path, errors: list[dict[str, object]]) -> None:
    write_text_atomic(out_dir / ERRORS,
                      "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in errors))


def write_batch_summary(out_dir: Path, summaries: list[dict[str, object]],
                        labels: tuple[str, ...]) -> None:
    """summary.csv: one row per complete recording, in batch order."""
    roles = sorted({role for s in summaries for role in s["per_role"]})
    meta_keys = sorted({k for s in summaries for k in s.get("metadata", {})})
    header = ["key", "call_id", "path", "duration_s", "channels", "roles", "segments",
              "speech_s", *(f"share_{label}" for label in (*labels, "uncertain")),
              "negative_share", *(f"negative_share_{role}" for role in roles),
              "longest_negative_s", "longest_negative_role", "longest_negative_start_s",
              "first_negative_turn_s", "first_negative_turn_role", "trend",
              *(f"meta_{k}" for k in meta_keys)]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for s in summaries:
        per_role = s["per_role"]
        speech_s = s["speech_s"]
        segments = sum(p["segments"] for p in per_role.values())

        def overall(label: str, per_role=per_role, speech_s=speech_s) -> float:
            part = sum(p["share"].get(label, 0.0) * p["speech_s"] for p in per_role.values())
            return round(part / speech_s, 4) if speech_s > 0 else 0.0

        negative = sum(p["negative_share"] * p["speech_s"] for p in per_role.values())
        longest = s["longest_negative"] or {}
        turns = s["negative_turns"]
        writer.writerow([
            s["key"], s["call_id"] or "", s["path"], s["duration_s"], s["channels"],
            ",".join(f"{r}={c}" for r, c in s["roles"].items()), segments, speech_s,
            *(overall(label) for label in (*labels, "uncertain")),
            round(negative / speech_s, 4) if speech_s > 0 else 0.0,
            *(per_role[r]["negative_share"] if r in per_role else "" for r in roles),
            longest.get("duration_s", ""), longest.get("role", ""), longest.get("start_s", ""),
            turns[0]["time_s"] if turns else "", turns[0]["role"] if turns else "",
            s["trend"]["direction"],
            *(_cell(s.get("metadata", {}).get(k, "")) for k in meta_keys)])
    write_text_atomic(out_dir / BATCH_SUMMARY_CSV, buffer.getvalue())


def _cell(value: object) -> object:
    return json.dumps(value) if isinstance(value, (dict, list)) else value
