"""Confusion matrices of the adaptation systems on one source -> target setting.

    python -m tools.adaptation_confusion --data ../shared/data --setting 'emodb->urdu' \
        --seeds 0 1 2 --source-cache runs/source_models --set optim.threads=1

Each system (source-only, source-only + target BN, DANN, NNPM, as in the experiment table:
`tools/make_adaptation_results.py`, whose models and splits this reuses) is scored on the
labelled clips of the target's adaptation set; the matrices of all seeds are summed (rows: the
reference class, columns: the predicted one). A table's mean UA says how much a method loses on
a setting; the matrix says which classes it confuses, and whether adaptation created the
confusion or inherited it from the source model. The UA printed is the summed matrix's, which
weighs the seeds by their clip counts, so it can differ from the table's mean over seeds by a
tenth of a point or so.
"""

from __future__ import annotations

import argparse

import numpy as np

from edge_ser_train.corpus import labelled
from edge_ser_train.inference import predict
from tools.make_adaptation_results import (
    DERIVED,
    PAIRS,
    SETTINGS,
    SYSTEMS,
    Experiment,
    experiment_arguments,
    name_of,
)

CONFUSION_SYSTEMS = ("source", "source_bn", "dann", "nnpm")


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
    experiment_arguments(parser)
    parser.add_argument("--setting", required=True, choices=[name_of(s) for s in SETTINGS])
    parser.add_argument("--systems", nargs="+", default=list(CONFUSION_SYSTEMS),
                        choices=CONFUSION_SYSTEMS)
    args = parser.parse_args(argv)
    exp = Experiment(args, log=lambda _: None)
    sources, target = next(s for s in SETTINGS if name_of(s) == args.setting)
    labels = exp.labels
    totals = {s: np.zeros((len(labels), len(labels)), dtype=np.int64) for s in args.systems}
    for seed in args.seeds:
        source_model = exp.train_source(sources, seed)
        split = exp.split((sources, target), seed)
        scored = labelled(split.adapt_clips, labels)
        references = np.array([labels.index(c.label) for c in scored])
        for system in args.systems:
            overrides = SYSTEMS[system][0] if system in SYSTEMS else None
            model, _ = exp.system_model(system, overrides, seed, source_model, split.data,
                                        split.source_clips)
            predictions = predict(model, [exp.views[c.path][0] for c in scored])
            totals[system] += confusion(references, predictions, len(labels))
    kind = "pair" if (sources, target) in PAIRS else "leave-one-language-out"
    print(f"# {args.setting} ({kind}), adaptation set, seeds "
          f"{', '.join(map(str, args.seeds))} summed\n")
    for system in args.systems:
        print(f"## {SYSTEMS[system][1] if system in SYSTEMS else DERIVED[system]}\n")
        print(render(totals[system], labels) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
