"""Streaming results as typed events, and their JSON Lines form.

Every event carries times in seconds from the start of its stream, the label (a class of the
model package, `UNCERTAIN` when the memory bank finds the audio unlike anything it knows, or
None when the speech check finds no speech: tones, hum, noise, DTMF, ringback, music), the
class probabilities as a dict, the confidence (the probability of the label's class, or of the
best class when uncertain), the memory-bank similarity (cosine, the out-of-domain signal), the
stream's channel, the index of the speech segment it belongs to, and the speech check's verdict
(`speech`, `speech_score`, and for non-speech the `reason`). For non-speech, `probs` and
`confidence` are the model's raw output, kept for inspection: they are not an emotion.

`to_dict()` / `to_json()` give one flat JSON object per event with stable field names, a `type`
and the format `version`; `JsonlWriter` appends them to a file, one line per event.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, ClassVar

EVENT_FORMAT_VERSION = 2
"""Bumped whenever a field of an event's JSON form is renamed, removed or changes meaning
(2: `speech`, `speech_score` and `reason` added; `label` is null for non-speech)."""

UNCERTAIN = "uncertain"
"""The label of a result whose memory-bank similarity is below `tracker.min_similarity`."""

NON_SPEECH = "non-speech"
"""How text outputs (console, RTTM, summaries) name a span the speech check rejected; in typed
events and JSON its `label` is None and `speech` false."""

_TIME_DECIMALS = 3
_PROB_DECIMALS = 4


@dataclass(frozen=True)
class _Event:
    type: ClassVar[str] = "event"

    start_s: float
    end_s: float
    label: str | None
    probs: dict[str, float]
    confidence: float
    similarity: float
    channel: int
    segment: int
    _: dataclasses.KW_ONLY  # the speech check's verdict (defaults: speech)
    speech: bool = True
    speech_score: float = 1.0
    reason: str | None = None

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready mapping: `version`, `type`, then the fields, rounded for reading."""
        out: dict[str, object] = {"version": EVENT_FORMAT_VERSION, "type": self.type}
        for f in dataclasses.fields(self):
            out[f.name] = _rounded(f.name, getattr(self, f.name))
        return out

    def to_json(self) -> str:
        """One line of JSON (no newline)."""
        return json.dumps(self.to_dict(), separators=(",", ":"))


def display_label(event: _Event) -> str:
    """The label as text outputs print it: `NON_SPEECH` for non-speech."""
    return event.label if event.label is not None else NON_SPEECH


def _rounded(name: str, value: object) -> object:
    if isinstance(value, dict):
        return {k: round(float(v), _PROB_DECIMALS) for k, v in value.items()}
    if isinstance(value, float):
        return round(value, _TIME_DECIMALS if name.endswith("_s") else _PROB_DECIMALS)
    return value


@dataclass(frozen=True)
class WindowUpdate(_Event):
    """One sliding window inside a speech segment: [start_s, end_s) pooled and scored.

    `probs`, `label`, `confidence` and `similarity` are the window's own; `smoothed` is the
    moving average the tracker keeps over the segment's speech windows (None before the first),
    and `tracked` the emotion the tracker holds after this window (None before the first
    confident one). A non-speech window leaves the tracker as it was.
    """

    type: ClassVar[str] = "window"

    smoothed: dict[str, float] | None
    tracked: str | None


@dataclass(frozen=True)
class EmotionChange(_Event):
    """The tracked emotion changed from `previous` to `label` (None: the first one).

    [start_s, end_s) is the window (or short segment) that confirmed the change; `probs` and
    `confidence` are the smoothed probabilities there.
    """

    type: ClassVar[str] = "change"

    previous: str | None


@dataclass(frozen=True)
class SegmentResult(_Event):
    """The final result of one speech segment, pooled over all its frames.

    [start_s, end_s) is the speech itself (without the padding the encoder also saw).
    `windows` counts the window updates the segment produced (0 when it was shorter than a
    window); `split` is true when the segment was cut at the maximum length.
    """

    type: ClassVar[str] = "segment"

    windows: int
    split: bool


Event = WindowUpdate | EmotionChange | SegmentResult


class JsonlWriter:
    """Appends events to a JSON Lines file, one complete line per event, flushed at once.

    Each line is written with a single `write` call and flushed, so a reader following the file
    (or a crash) never sees half an event. Usable as a context manager.
    """

    def __init__(self, path: str | os.PathLike, extra: dict[str, object] | None = None) -> None:
        """`extra` fields (e.g. the source file) are added to every line."""
        self.path = Path(path)
        self.extra = dict(extra or {})
        self._fh: IO[str] | None = open(self.path, "w", encoding="utf-8")  # noqa: SIM115

    def write(self, event: Event, **extra: object) -> None:
        if self._fh is None:
            raise RuntimeError(f"{self.path}: JsonlWriter.write() after close()")
        record = event.to_dict()
        record.update(self.extra)
        record.update(extra)
        self._fh.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_jsonl(path: str | os.PathLike) -> list[dict[str, object]]:
    """The records of a JSON Lines file written by `JsonlWriter`."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
