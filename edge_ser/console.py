"""What the terminal shows while streaming: one line per finished segment, a live status line,
a summary, and reference labels (a CSV of known segment times) set beside the tags."""

from __future__ import annotations

import csv
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from edge_ser.events import (
    NON_SPEECH,
    UNCERTAIN,
    Event,
    JsonlWriter,
    SegmentResult,
    WindowUpdate,
    display_label,
)

BAR_WIDTH = 8


@dataclass(frozen=True)
class Reference:
    """A known segment: [start_s, end_s) with its emotion, optionally for one file."""

    start_s: float
    end_s: float
    emotion: str
    file: str | None = None


def read_references(path: str | os.PathLike) -> list[Reference]:
    """Rows of a labels CSV with columns start_s, end_s, emotion (and optionally file).

    Raises ValueError naming the file and row for a missing column or a bad number.
    """
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = {"start_s", "end_s", "emotion"} - set(reader.fieldnames or ())
            if missing:
                raise ValueError(f"{path}: labels CSV lacks column(s) {', '.join(sorted(missing))}"
                                 "; expected start_s, end_s, emotion (and optionally file)")
            rows = []
            for line, row in enumerate(reader, start=2):
                try:
                    rows.append(Reference(float(row["start_s"]), float(row["end_s"]),
                                          row["emotion"], row.get("file") or None))
                except (TypeError, ValueError) as exc:
                    raise ValueError(f"{path}, line {line}: bad start_s/end_s ({exc})") from None
            return rows
    except OSError as exc:
        raise ValueError(f"{path}: cannot read labels CSV ({exc.strerror})") from exc


def references_for(references: list[Reference], audio_path: str | os.PathLike
                   ) -> list[Reference]:
    """The rows that apply to one recording: rows naming it (by file name), or all unnamed rows."""
    name = Path(audio_path).name
    return [r for r in references if r.file is None or Path(r.file).name == name]


def best_reference(result: SegmentResult, references: list[Reference]) -> Reference | None:
    """The known segment overlapping `result` the most (None when none overlaps)."""
    best, best_overlap = None, 0.0
    for ref in references:
        overlap = min(result.end_s, ref.end_s) - max(result.start_s, ref.start_s)
        if overlap > best_overlap:
            best, best_overlap = ref, overlap
    return best


def format_segment(result: SegmentResult, reference: Reference | None = None,
                   with_reference: bool = False) -> str:
    """One line per finished segment: times, label, confidence, similarity, known label; a
    non-speech segment shows why instead of probabilities (it has no emotion)."""
    if result.speech:
        line = (f"{result.start_s:8.2f} - {result.end_s:7.2f} s  {result.label:<10} "
                f"{result.confidence:4.2f}  {result.similarity:+5.2f}  {_probs_text(result)}")
    else:
        line = (f"{result.start_s:8.2f} - {result.end_s:7.2f} s  {NON_SPEECH:<10} "
                f"{'-':>4}  {result.similarity:+5.2f}  no emotion: {result.reason}")
    if result.channel:
        line = f"ch{result.channel} " + line
    if with_reference:
        if reference is None:
            line += "  | known: -"
        else:
            mark = "ok" if reference.emotion == result.label else "--"
            line += f"  | known: {reference.emotion:<8} {mark}"
    return line


SEGMENT_HEADER = (f"{'start':>8} - {'end':>7}    {'label':<10} {'conf':>4}  {'sim':>5}  "
                  "probabilities")
"""Column names above the lines of `format_segment`."""


def _probs_text(event: Event) -> str:
    return " ".join(f"{k[:3]} {v:.2f}" for k, v in event.probs.items())


def bars(probs: dict[str, float]) -> str:
    """Probability bars, e.g. `ang ######.. hap #....... `."""
    parts = []
    for label, p in probs.items():
        filled = min(BAR_WIDTH, round(p * BAR_WIDTH))
        parts.append(f"{label[:3]} {'#' * filled}{'.' * (BAR_WIDTH - filled)}")
    return " ".join(parts)


@dataclass
class LiveView:
    """The live status line: what the stream hears now and how fast the engine keeps up."""

    labels: tuple[str, ...]
    time_s: float = 0.0
    speaking: bool = False
    tracked: str | None = None
    probs: dict[str, float] = field(default_factory=dict)
    processing_ms: float = 0.0
    latency_ms: float = 0.0
    non_speech: bool = False  # the last judged window or segment was not speech

    def update(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, (WindowUpdate, SegmentResult)):
                self.non_speech = not event.speech
            if not event.speech:
                continue  # no emotion: the bars keep the last speech
            if isinstance(event, WindowUpdate) and event.smoothed is not None:
                self.probs = event.smoothed
            elif isinstance(event, SegmentResult):
                self.probs = event.probs

    def render(self) -> str:
        if not self.speaking:
            state = "silence   "
        else:
            state = NON_SPEECH if self.non_speech else "speech    "
        probs = self.probs or {label: 0.0 for label in self.labels}
        return (f"{self.time_s:7.1f} s  {state}  {self.tracked or '-':<9} {bars(probs)}  "
                f"proc {self.processing_ms:5.1f} ms  lag {self.latency_ms:6.0f} ms")


@dataclass
class Summary:
    """Counts over a stream's events, for the closing lines. `changes` counts the label changes
    from one segment line to the next, as a reader of those lines sees them."""

    segments: int = 0
    windows: int = 0
    changes: int = 0
    last_label: str | None = None
    speech_s: float = 0.0
    non_speech_s: float = 0.0
    labels: Counter = field(default_factory=Counter)
    matched: int = 0
    compared: int = 0

    def add(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, SegmentResult):
                self.segments += 1
                if event.speech:
                    self.speech_s += event.end_s - event.start_s
                    # the changes a reader sees between consecutive speech segment lines
                    self.changes += self.last_label not in (None, event.label)
                    self.last_label = event.label
                else:
                    self.non_speech_s += event.end_s - event.start_s
                self.labels[display_label(event)] += 1
            elif isinstance(event, WindowUpdate):
                self.windows += 1

    def compare(self, result: SegmentResult, reference: Reference | None) -> None:
        self.compared += 1
        self.matched += reference is not None and reference.emotion == result.label

    def text(self, audio_s: float) -> str:
        counts = ", ".join(f"{label} {n}" for label, n in sorted(
            self.labels.items(), key=lambda kv: (kv[0] == NON_SPEECH, kv[0] == UNCERTAIN)))
        other = f", {self.non_speech_s:.1f} s of non-speech" if self.non_speech_s else ""
        line = (f"{self.segments} segments ({self.speech_s:.1f} s of speech{other} in "
                f"{audio_s:.1f} s){': ' + counts if counts else ''}; {self.changes} label "
                "changes between speech segments")
        if self.compared:
            line += f"; agree with known labels {self.matched}/{self.compared}"
        return line


class Printer:
    """Writes finished-segment lines, and (on a terminal) keeps one live line below them."""

    def __init__(self, out, live: bool, quiet: bool = False) -> None:
        self._out = out
        self.live = live and not quiet
        self.quiet = quiet
        self._shown = False

    def info(self, text: str) -> None:
        """A heading or summary line (left out with --quiet)."""
        if not self.quiet:
            self.line(text)

    def line(self, text: str) -> None:
        """A permanent line (a finished segment)."""
        self._out.write(("\r\033[K" if self._shown else "") + text + "\n")
        self._shown = False
        self._out.flush()

    def status(self, text: str) -> None:
        """Replace the live line (only on a terminal)."""
        if self.live:
            self._out.write("\r\033[K" + text)
            self._shown = True
            self._out.flush()

    def clear(self) -> None:
        if self._shown:
            self._out.write("\r\033[K")
            self._shown = False
            self._out.flush()


class EventSink:
    """Where one source's events go: the terminal, the JSONL log, the comparison with known
    segments (`known` None: no comparison), and the running summary."""

    def __init__(self, printer: Printer, writer: JsonlWriter | None,
                 known: list[Reference] | None, extra: dict[str, object] | None = None) -> None:
        self.printer = printer
        self.writer = writer
        self.known = known
        self.extra = dict(extra or {})
        self.summary = Summary()

    def handle(self, events: list[Event], stream, view: LiveView) -> None:
        """Log and show `events`, then refresh the live line from the stream's state."""
        self.summary.add(events)
        view.update(events)
        for event in events:
            if self.writer is not None:
                self.writer.write(event, **self.extra)
            if isinstance(event, SegmentResult):
                compare = self.known is not None
                reference = best_reference(event, self.known) if compare else None
                if compare:
                    self.summary.compare(event, reference)
                self.printer.line(format_segment(event, reference, with_reference=compare))
        view.time_s, view.speaking, view.tracked = stream.time_s, stream.speaking, stream.tracked
        self.printer.status(view.render())
