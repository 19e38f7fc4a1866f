"""Confusion matrices of the adaptation systems on one target, from the adaptation table's cells.

    python -m tools.adaptation_confusion --target emodb [--runs runs/adaptation] [--seeds 0 1 2]

Each cell of the table (`tools/make_adaptation_results.py`) keeps every scored clip's reference
and prediction; the matrices of the seeds asked for are summed (rows: the reference class,
columns: the predicted one), on the labelled clips of the adaptation set (`--part unseen`: of
the held-out speakers). A table's mean UA says how much a method loses on a target; the matrix
says which classes it confuses, and whether adaptation created the confusion or inherited it
from the start model. The UA printed is the summed matrix's, which weighs the seeds by their
clip counts, so it can differ from the table's mean over seeds by a tenth of a point or so.
Nothing is trained.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from tools.adaptation_render import SYSTEMS, TITLES, index, read_adaptation_cells
from tools.protocol import ROOT


def confusion(references: np.ndarray, predictions: np.ndarray, n_classes: int) -> np.ndarray:
    """(K, K) counts: rows the reference class, columns the predicted one."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (references, predictions), 1)
    return matrix


def render(matrix: np.ndarray, labels: tuple[str, ...]) -> str:
    """A markdown table of `matrix` with each row's recall and the UA."""
    recall = matrix.diagonal() / np.maximum(matrix.sum(axis=1), 1)
    lines = ["| reference \\ predicted | " + " | ".join(labels) + " | recall |",
             "|---" * (len(labels) + 2) + "|"]
    for name, row, r in zip(labels, matrix, recall):
        lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + f" | {r:.0%} |")
    lines.append(f"\nUA of the summed matrix {recall.mean():.1%}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "adaptation")
    parser.add_argument("--target", required=True)
    parser.add_argument("--part", choices=("adapt", "unseen"), default="adapt")
    parser.add_argument("--seeds", type=int, nargs="+", help="default: every one measured")
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    args = parser.parse_args(argv)
    cells = index(read_adaptation_cells(args.runs))
    for system in args.systems:
        by_seed = {s: r for s, r in cells.get((args.target, system), {}).items()
                   if args.seeds is None or s in args.seeds}
        if not by_seed:
            print(f"## {TITLES[system]}: no cell in {args.runs}\n")
            continue
        labels = tuple(next(iter(by_seed.values()))["scores"][args.part]["labels"])
        total = np.zeros((len(labels), len(labels)), dtype=np.int64)
        for record in by_seed.values():
            p = record["predictions"]
            keep = [i for i, part in enumerate(p["part"]) if part == args.part]
            total += confusion(np.array(p["reference"])[keep], np.array(p["predicted"])[keep],
                               len(labels))
        print(f"## {TITLES[system]} ({args.target}, {args.part}, seeds "
              f"{', '.join(map(str, sorted(by_seed)))} summed)\n")
        print(render(total, labels) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
