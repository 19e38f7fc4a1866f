"""Segment-level accuracy of a batch run against the ground truth of generated calls.

    python -m tools.score_calls --calls calls --batch results [--json scores.json]

For every ground-truth turn (the CSV beside each call, see tools/make_calls.py) the batch segment
of the same channel that overlaps it most is its match; a turn with no overlapping segment is
missed. Reported: turns found (recall), UA / WA / macro-F1 of the matched segments' labels
(`edge_ser.metrics.score`), and time-weighted accuracy (the share of ground-truth speech time
whose matched segment has the right label). A matched segment labelled `uncertain` (the memory
bank found it unlike its training speech) is scored by its most probable class for UA / WA /
F1, counted apart, and is never right for time-weighted accuracy.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from edge_ser.batch.paths import recording_dir
from edge_ser.contract import DEFAULT_LABELS
from edge_ser.events import UNCERTAIN
from edge_ser.metrics import format_scores, score
from tools.make_calls import read_ground_truth


def read_segments(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def best_match(turn, segments: list[dict]) -> dict | None:
    """The segment of the turn's channel overlapping it most (None when none overlaps); only
    segments with an emotion count (a non-speech segment, label null, finds no turn)."""
    best, best_overlap = None, 0.0
    for seg in segments:
        if seg["channel"] != turn.channel or seg.get("label") is None:
            continue
        overlap = min(turn.end_s, seg["end_s"]) - max(turn.start_s, seg["start_s"])
        if overlap > best_overlap:
            best, best_overlap = seg, overlap
    return best


def score_calls(calls_dir: Path, batch_dir: Path, labels: tuple[str, ...] = DEFAULT_LABELS
                ) -> dict:
    turns = found = uncertain = 0
    refs, preds = [], []
    time_total = time_right = 0.0
    missing = []
    for truth_csv in sorted(calls_dir.glob("*.csv")):
        segments_path = recording_dir(batch_dir, truth_csv.stem) / "segments.jsonl"
        if not segments_path.is_file():
            missing.append(truth_csv.stem)
            continue
        segments = read_segments(segments_path)
        for turn in read_ground_truth(truth_csv):
            if turn.emotion not in labels:
                continue
            turns += 1
            duration = turn.end_s - turn.start_s
            time_total += duration
            match = best_match(turn, segments)
            if match is None:
                continue
            found += 1
            refs.append(labels.index(turn.emotion))
            predicted = match["label"]
            if predicted == UNCERTAIN:
                uncertain += 1
                predicted = max(labels, key=lambda name: match["probs"][name])
            preds.append(labels.index(predicted))
            if match["label"] == turn.emotion:
                time_right += duration
    if not turns:
        raise ValueError(f"no ground-truth turns with batch outputs under {calls_dir}")
    scores = score(np.array(refs), np.array(preds), labels) if refs else None
    return {"calls_missing": missing, "turns": turns, "found": found, "uncertain": uncertain,
            "recall": found / turns, "time_weighted_accuracy": time_right / time_total,
            "scores": scores.to_dict() if scores else None,
            "text": format_scores(scores) if scores else ""}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=Path, required=True, help="folder of calls + ground truth")
    p.add_argument("--batch", type=Path, required=True, help="the batch's --out folder")
    p.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = p.parse_args(argv)
    result = score_calls(args.calls, args.batch)
    s = result["scores"]
    print(f"turns found: {result['found']}/{result['turns']} (recall {result['recall']:.3f}), "
          f"{result['uncertain']} of them tagged {UNCERTAIN}")
    if s:
        print(f"UA {s['ua']:.3f}  WA {s['wa']:.3f}  macro-F1 {s['macro_f1']:.3f} "
              f"over {s['count']} found turns")
    print(f"time-weighted accuracy {result['time_weighted_accuracy']:.3f}")
    print(result["text"])
    if result["calls_missing"]:
        print(f"calls without batch outputs: {', '.join(result['calls_missing'])}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
