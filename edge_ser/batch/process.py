"""The per-recording function every engine runs: decode in blocks, one stream per mapped
channel, then write the outputs and, last, the completion marker.

`process_recording` never raises for a bad recording: it returns a failed `Outcome` whose
`error` says why, so the batch goes on.
"""

from __future__ import annotations

import heapq
import os
import time
from dataclasses import dataclass
from pathlib import Path

from edge_ser.audio import AudioError, iter_blocks
from edge_ser.batch import outputs
from edge_ser.batch.channels import ChannelRoles, RecordingError, resolve_roles
from edge_ser.batch.inputs import Recording
from edge_ser.batch.paths import recording_dir
from edge_ser.batch.plot import TIMELINE_PNG
from edge_ser.batch.settings import JobSettings
from edge_ser.batch.summary import SUMMARY_FORMAT_VERSION, RoleChange, RoleSegment, summarize
from edge_ser.events import EmotionChange, SegmentResult

DONE, SKIPPED, FAILED = "done", "skipped", "failed"


@dataclass(frozen=True)
class Outcome:
    """What became of one recording."""

    key: str
    path: str
    status: str
    """DONE, SKIPPED (complete from an earlier run) or FAILED."""
    audio_s: float = 0.0
    elapsed_s: float = 0.0
    error: dict[str, object] | None = None
    """For FAILED: {key, path, call_id, kind, reason}, one line of errors.jsonl."""


@dataclass(frozen=True)
class Analysis:
    """The results of one recording before they are written."""

    roles: ChannelRoles
    sample_rate_hz: int
    channels: int
    duration_s: float
    segments: list[RoleSegment]
    changes: list[RoleChange]


def process_recording(recognizer, recording: Recording, settings: JobSettings) -> Outcome:
    """Process one recording into its folder, or skip it when it is already complete."""
    started = time.perf_counter()
    folder = recording_dir(settings.out_dir, recording.key)
    required = (TIMELINE_PNG,) if settings.plot else ()
    source = source_identity(recording.path)
    if not settings.force and outputs.is_complete(folder, settings.fingerprint, source,
                                                  required):
        marker = outputs.read_marker(folder) or {}
        return Outcome(recording.key, recording.path, SKIPPED,
                       audio_s=float(marker.get("duration_s", 0.0)))
    try:  # redone from scratch: an old marker must not vouch for outputs not replaced
        (folder / outputs.MARKER).unlink(missing_ok=True)
    except OSError as exc:
        return _failed(recording, "output", f"{folder}: cannot write the outputs "
                       f"({_os_problem(exc)})", started)
    try:
        analysis = analyse(recognizer, recording, settings)
    except AudioError as exc:
        return _failed(recording, "audio", str(exc), started)
    except RecordingError as exc:
        return _failed(recording, "channels", f"{recording.path}: {exc}", started)
    except Exception as exc:  # a bug must not stop a long batch: recorded with its type
        return _failed(recording, "internal", f"{recording.path}: {type(exc).__name__}: {exc}",
                       started)
    try:
        write_outputs(folder, recognizer.labels, recording, analysis, settings, source)
    except OSError as exc:
        return _failed(recording, "output", f"{folder}: cannot write the outputs "
                       f"({_os_problem(exc)})", started)
    except Exception as exc:  # e.g. the plot failing on one worker: recorded, batch goes on
        return _failed(recording, "internal", f"{folder}: writing the outputs failed: "
                       f"{type(exc).__name__}: {exc}", started)
    return Outcome(recording.key, recording.path, DONE, audio_s=analysis.duration_s,
                   elapsed_s=time.perf_counter() - started)


def analyse(recognizer, recording: Recording, settings: JobSettings) -> Analysis:
    """Decode block by block and run one stream per mapped channel (AudioError, RecordingError).

    Window updates are dropped as they come, so memory holds one block plus the segment
    results, whatever the length of the recording.
    """
    roles: ChannelRoles | None = None
    streams = []
    per_channel_segments: list[list[RoleSegment]] = []
    per_channel_changes: list[list[RoleChange]] = []
    samples = 0
    rate_hz = channels = 0
    for block, rate_hz in iter_blocks(recording.path, settings.block_s):
        if roles is None:
            channels = block.shape[1]
            roles = resolve_roles(channels, recording.roles, settings.default_roles)
            whole = recognizer.config.batch.encoder_calls == "segment"
            streams = [(role, index, recognizer.create_stream(rate_hz, channel=index,
                                                              whole_segments=whole))
                       for role, index in roles]
            per_channel_segments = [[] for _ in roles]
            per_channel_changes = [[] for _ in roles]
        for i, (role, index, stream) in enumerate(streams):
            _keep(stream.accept_waveform(block[:, index]), role, per_channel_segments[i],
                  per_channel_changes[i])
        samples += block.shape[0]
    if roles is None:
        raise AudioError(f"{recording.path}: no samples (zero-length audio)")
    for i, (role, _, stream) in enumerate(streams):
        _keep(stream.input_finished(), role, per_channel_segments[i], per_channel_changes[i])
    # merged like Recognizer.process_file: by end time, each channel's order kept
    segments = list(heapq.merge(*per_channel_segments, key=lambda s: s.result.end_s))
    changes = list(heapq.merge(*per_channel_changes, key=lambda c: c.change.end_s))
    return Analysis(roles=roles, sample_rate_hz=rate_hz, channels=channels,
                    duration_s=samples / rate_hz, segments=segments, changes=changes)


def _keep(events, role: str, segments: list[RoleSegment], changes: list[RoleChange]) -> None:
    for event in events:
        if isinstance(event, SegmentResult):
            segments.append(RoleSegment(role, event))
        elif isinstance(event, EmotionChange):
            changes.append(RoleChange(role, event))


def write_outputs(folder: Path, labels: tuple[str, ...], recording: Recording,
                  analysis: Analysis, settings: JobSettings,
                  source: dict[str, object] | None) -> None:
    """Every output of the recording, the completion marker last (after removing an old one,
    so a crash while rewriting never leaves a marker beside a mix of old and new files)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / outputs.MARKER).unlink(missing_ok=True)
    outputs.remove_temporaries(folder)
    records = outputs.segment_records(analysis.segments, recording.call_id, recording.metadata)
    written = outputs.write_segments(folder, recording.key, records, labels)
    summary = {
        "version": SUMMARY_FORMAT_VERSION,
        "batch_version": outputs.BATCH_FORMAT_VERSION,
        "key": recording.key,
        "call_id": recording.call_id,
        "path": recording.path,
        "duration_s": round(analysis.duration_s, 3),
        "sample_rate_hz": analysis.sample_rate_hz,
        "channels": analysis.channels,
        "roles": dict(analysis.roles),
        "labels": list(labels),
        "metadata": recording.metadata,
        **summarize(analysis.segments, analysis.changes, [r for r, _ in analysis.roles],
                    labels, analysis.duration_s),
    }
    written[outputs.SUMMARY_JSON] = outputs.write_output(folder, outputs.SUMMARY_JSON,
                                                         outputs.json_bytes(summary))
    if settings.plot:
        from edge_ser.batch.plot import render_timeline

        written[TIMELINE_PNG] = outputs.write_output(folder, TIMELINE_PNG,
                                                     render_timeline(summary, records))
    outputs.write_marker(folder, {
        "version": outputs.BATCH_FORMAT_VERSION, "key": recording.key, "path": recording.path,
        "call_id": recording.call_id, "fingerprint": settings.fingerprint,
        "source": source,  # as it was before decoding
        "duration_s": analysis.duration_s,
        "outputs": written,  # name -> {bytes, sha256}: a file that differs redoes the recording
    })


def source_identity(path: str) -> dict[str, object] | None:
    """The input file as the completion marker records it: a different file (or the same one
    re-exported) under the same output key is processed again. None if it cannot be read."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return {"realpath": os.path.realpath(path), "bytes": stat.st_size,
            "mtime_ns": stat.st_mtime_ns}


def _os_problem(exc: OSError) -> str:
    """The system's reason, e.g. 'No space left on device'."""
    return exc.strerror or str(exc)


def _failed(recording: Recording, kind: str, reason: str, started: float) -> Outcome:
    error = {"key": recording.key, "path": recording.path, "call_id": recording.call_id,
             "source": recording.source, "kind": kind, "reason": reason}
    return Outcome(recording.key, recording.path, FAILED,
                   elapsed_s=time.perf_counter() - started, error=error)
