"""Corpora in the shared `labels.csv` format and the 4-class taxonomy (no torch: `eval` of a
model package reads corpora with this; training builds its splits on it in
`edge_ser_train.corpus`).

A corpus is any folder holding audio files and a `labels.csv` with the columns
`file, corpus, language, speaker, gender, emotion, emotion4, text, sample_rate, channels,
duration_s`. The audio is read from where it lies; nothing is copied.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from edge_ser.contract import DEFAULT_LABELS

REQUIRED_COLUMNS = ("file", "corpus", "language", "speaker", "emotion4")


class CorpusError(ValueError):
    """A corpus folder or its labels.csv is missing or malformed."""


@dataclass(frozen=True)
class Clip:
    """One labelled (or unlabelled) recording of a corpus."""

    path: Path
    corpus: str
    language: str
    speaker: str
    """Corpus-qualified speaker id (`emodb:03`), unique across corpora."""
    emotion: str
    label: str | None
    """The 4-class `emotion4` label, or None where the clip has no 4-class equivalent."""
    duration_s: float


def read_corpus(folder: str | Path) -> list[Clip]:
    """Read every row of `folder/labels.csv`; the audio files must exist beside it."""
    root = Path(folder)
    labels_csv = root / "labels.csv"
    if not labels_csv.is_file():
        raise CorpusError(f"{root}: no labels.csv found (a corpus folder needs one)")
    with labels_csv.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise CorpusError(f"{labels_csv}: missing column(s) {', '.join(missing)}")
        clips = [_clip(root, labels_csv, line, row) for line, row in enumerate(reader, start=2)]
    if not clips:
        raise CorpusError(f"{labels_csv}: no rows")
    return clips


def _clip(root: Path, labels_csv: Path, line: int, row: dict[str, str]) -> Clip:
    path = root / row["file"]
    if not path.is_file():
        raise CorpusError(f"{labels_csv}:{line}: audio file {row['file']!r} not found in {root}")
    corpus = row["corpus"] or root.name
    label = row["emotion4"].strip() or None
    duration = row.get("duration_s") or "nan"
    return Clip(path=path, corpus=corpus, language=row["language"],
                speaker=f"{corpus}:{row['speaker']}", emotion=row.get("emotion", ""),
                label=label, duration_s=float(duration))


def labelled(clips: list[Clip], labels: tuple[str, ...] = DEFAULT_LABELS) -> list[Clip]:
    """The clips whose 4-class label is one of `labels`."""
    return [c for c in clips if c.label in labels]


def speakers(clips: list[Clip]) -> list[str]:
    return sorted({c.speaker for c in clips})


def describe(clips: list[Clip]) -> str:
    """One line per corpus: clip count, speakers, label counts."""
    lines = []
    for corpus in sorted({c.corpus for c in clips}):
        part = [c for c in clips if c.corpus == corpus]
        counts = Counter(c.label or "-" for c in part)
        lines.append(f"{corpus}: {len(part)} clips, {len(speakers(part))} speakers, "
                     + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return "\n".join(lines)


def read_labelled(folder: str | Path, labels: tuple[str, ...]) -> list[Clip]:
    """The clips of `folder` whose 4-class label is one of `labels`; CorpusError if none is."""
    clips = labelled(read_corpus(folder), labels)
    if not clips:
        raise CorpusError(f"{folder}: no clip carries one of the labels {', '.join(labels)}")
    return clips
