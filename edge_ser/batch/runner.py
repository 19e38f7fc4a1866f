"""Running a batch: skip what is complete, process the rest on the chosen engine, record errors,
report progress, then write the batch summary.

    report = run_batch(recordings, settings, factory, workers=4)

`factory` builds a recognizer (a `RecognizerSpec`, or any picklable callable); every engine runs
`process.process_recording` on each recording.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from edge_ser.batch import outputs
from edge_ser.batch.inputs import InputProblem, Recording
from edge_ser.batch.out_folder import keep_others
from edge_ser.batch.paths import recording_dir
from edge_ser.batch.process import DONE, FAILED, SKIPPED, Outcome, process_recording
from edge_ser.batch.settings import JobSettings

ENGINES = ("local", "ray")
PROGRESS_EVERY_S = 1.0
OUTPUT_FAILURES_TO_STOP = 3
"""Recordings in a row whose outputs could not be written, with none written between, that
stop the batch: the output folder takes nothing (a full disk, a read-only file system)."""


@dataclass
class BatchReport:
    """Totals of one run over a batch."""

    total: int
    outcomes: list[Outcome] = field(default_factory=list)
    input_problems: int = 0
    elapsed_s: float = 0.0
    stopped: str | None = None
    """Why the batch stopped before its last recording (nothing could be written)."""
    unwritten: list[str] = field(default_factory=list)
    """Batch-wide files that could not be written, with why."""

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def audio_s(self) -> float:
        """Audio processed in this run (recordings skipped as complete not counted)."""
        return sum(o.audio_s for o in self.outcomes if o.status == DONE)

    @property
    def speed(self) -> float:
        """Audio seconds per wall-clock second (x real time)."""
        return self.audio_s / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def failed(self) -> int:
        return self.count(FAILED) + self.input_problems

    def totals(self) -> dict[str, object]:
        """Machine-readable totals (written to run.json)."""
        return {"files": self.total, "done": self.count(DONE),
                "already_complete": self.count(SKIPPED), "failed": self.failed,
                "audio_s": self.audio_s, "elapsed_s": self.elapsed_s,
                "x_real_time": self.speed, "stopped": self.stopped}

    def line(self) -> str:
        unmatched = (f", {self.input_problems} input(s) matched nothing"
                     if self.input_problems else "")
        return (f"{len(self.outcomes)}/{self.total} files ({self.count(DONE)} done, "
                f"{self.count(SKIPPED)} already complete, {self.count(FAILED)} failed)"
                f"{unmatched}, {format_duration(self.audio_s)} of audio, "
                f"{self.speed:.1f}x real time"
                + (f"; stopped: {self.stopped}" if self.stopped else ""))


def format_duration(seconds: float) -> str:
    """'42.0 s', '12.5 min' or '3.21 h'."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def run_batch(recordings: list[Recording], settings: JobSettings,
              factory: Callable[[], object], *, workers: int = 1, engine: str = "local",
              problems: Sequence[InputProblem] = (), log: TextIO | None = sys.stderr
              ) -> BatchReport:
    """Process `recordings` into `settings.out_dir`; returns the totals.

    errors.jsonl starts empty and gains one line per failure of this run (inputs that matched
    nothing, recordings that could not be processed); summary.csv is rewritten at the end from
    every complete recording of the batch.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine {engine!r} is not one of {', '.join(ENGINES)}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    out_dir = Path(settings.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs.remove_temporaries(out_dir)
    outputs.remove_recording_temporaries(out_dir)
    recordings = keep_others(recordings, out_dir)  # never replace another input's results
    errors = [{"path": p.input, "source": p.input, "kind": "input", "reason": p.reason}
              for p in problems]
    report = BatchReport(total=len(recordings), input_problems=len(problems))
    _write(report, log, outputs.ERRORS, outputs.write_errors, out_dir, errors)
    started = time.perf_counter()
    last_shown = 0.0
    unwritable = 0  # output failures in a row
    outcomes = _outcomes(recordings, settings, factory, workers, engine)
    try:
        for outcome in outcomes:
            report.outcomes.append(outcome)
            report.elapsed_s = time.perf_counter() - started
            if outcome.error is not None:
                errors.append(outcome.error)
                _write(report, log, outputs.ERRORS, outputs.write_errors, out_dir, errors)
                _say(log, f"batch: failed: {outcome.error['reason']}")
            unwritable = unwritable + 1 if _unwritable(outcome) else 0
            if unwritable >= OUTPUT_FAILURES_TO_STOP and len(report.outcomes) < report.total:
                report.stopped = (f"{unwritable} recordings in a row could not be written to "
                                  f"{out_dir} (latest: {outcome.error['reason']}); "
                                  f"{report.total - len(report.outcomes)} not processed: free "
                                  "space or fix the folder, then rerun the same command")
                _say(log, f"batch: stopped: {report.stopped}")
                break
            if report.elapsed_s - last_shown >= PROGRESS_EVERY_S or \
                    len(report.outcomes) == report.total:
                last_shown = report.elapsed_s
                _say(log, f"batch: {report.line()}")
    finally:
        outcomes.close()  # a stopped batch shuts its workers down
    _write(report, log, outputs.BATCH_SUMMARY_CSV, write_batch_summary, recordings, out_dir)
    report.elapsed_s = time.perf_counter() - started
    _write(report, log, outputs.RUN_JSON, outputs.write_run_totals, out_dir, report.totals())
    return report


def _unwritable(outcome: Outcome) -> bool:
    return outcome.error is not None and outcome.error.get("kind") == "output"


def _write(report: BatchReport, log: TextIO | None, name: str, write, *args) -> None:
    """A batch-wide file; one that cannot be written is reported (once per file) and the
    batch goes on: what it says is also printed, and the next write tries again."""
    try:
        write(*args)
    except OSError as exc:
        problem = f"{name}: cannot write ({exc.strerror or exc})"
        if problem not in report.unwritten:
            report.unwritten.append(problem)
            _say(log, f"batch: {problem}")


def _outcomes(recordings: list[Recording], settings: JobSettings,
              factory: Callable[[], object], workers: int, engine: str) -> Iterator[Outcome]:
    if engine == "ray":
        from edge_ser.batch.ray_engine import run_ray

        yield from run_ray(recordings, settings, factory, workers)
    elif workers > 1 and len(recordings) > 1:
        from edge_ser.batch.pool import run_pool

        yield from run_pool(recordings, settings, factory, workers)
    else:
        recognizer = factory()
        try:
            for recording in recordings:
                yield process_recording(recognizer, recording, settings)
        finally:
            recognizer.close()


def write_batch_summary(recordings: list[Recording], out_dir: Path) -> None:
    """summary.csv from the summary.json of every complete recording, in batch order."""
    summaries = []
    for recording in recordings:
        folder = recording_dir(out_dir, recording.key)
        if outputs.read_marker(folder) is None:
            continue
        try:
            summaries.append(json.loads((folder / outputs.SUMMARY_JSON).read_text(
                encoding="utf-8")))
        except (OSError, ValueError):
            continue  # damaged since: the next run redoes the recording (is_complete)
    labels = tuple(summaries[0]["labels"]) if summaries else ()
    outputs.write_batch_summary(out_dir, summaries, labels)


def _say(log: TextIO | None, text: str) -> None:
    if log is not None:
        print(text, file=log, flush=True)
