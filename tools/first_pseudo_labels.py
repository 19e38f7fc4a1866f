"""How right NNPM's first pseudo-labels are, before any adaptation, under several labellings.

    python tools/first_pseudo_labels.py --data ../shared/data --seeds 0 1 2 3 4 \
        --source-cache runs/source_models --set optim.threads=1

For each seed and source -> target pair (the experiment table's source models and splits,
`tools/make_adaptation_results.py`), the source model labels the target's adaptation set the
way full NNPM labels it at its first refresh, and each labelling's top class is scored (UA) on
the labelled clips. Labellings: `knn` (the k nearest memory slots, clean clip: the earlier
recipe's), `sf_like` (4 centroids per class, the vote over the clip and its augmented views,
as NNPM now labels, with or without source audio), and `sf_like`'s shares re-read from target
prototypes for 1 and 3 rounds (`nnpm.target_prototypes`); `classifier` is the source model's
own classifier with target batch-norm statistics (the source-only + target BN column). Seconds
per pair: no training.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from make_adaptation_results import (  # noqa: E402
    KNN_LABELLING,
    PAIRS,
    SETTINGS,
    SOURCE_FREE_LABELLING,
    Experiment,
    experiment_arguments,
    name_of,
)

from edge_ser.config import load_config  # noqa: E402
from edge_ser_train import nnpm  # noqa: E402
from edge_ser_train.adapt import embed_domain, target_pseudo_labels  # noqa: E402
from edge_ser_train.adapt_config import AdaptConfig  # noqa: E402
from edge_ser_train.memory import SourceMemory  # noqa: E402

LABELLINGS = {  # name -> (config overrides, vote over the augmented views)
    "knn": (KNN_LABELLING, False),
    "sf_like": (SOURCE_FREE_LABELLING, True),
}
PROTOTYPE_ROUNDS = (1, 3)
"""`sf_like`'s shares re-read from target prototypes (`nnpm.target_prototypes`) this often."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    experiment_arguments(parser)
    parser.add_argument("--only", nargs="+", choices=[name_of(s) for s in SETTINGS],
                        default=[name_of(s) for s in PAIRS])
    args = parser.parse_args(argv)
    exp = Experiment(args, log=lambda _: None)
    configs = {name: (load_config(AdaptConfig, args.config, args.set + overrides), views)
               for name, (overrides, views) in LABELLINGS.items()}
    columns = (list(LABELLINGS) + [f"sf_like + prototypes {r}" for r in PROTOTYPE_ROUNDS]
               + ["classifier"])
    cells: dict[str, dict[str, list[float]]] = {}
    for seed in args.seeds:
        for setting in (s for s in SETTINGS if name_of(s) in args.only):
            sources, _ = setting
            model = exp.train_source(sources, seed)
            split = exp.split(setting, seed)
            clips = exp.source_clips(sources)
            source_emb, _ = embed_domain(model, [exp.views[c.path][0] for c in clips], True)
            targets = np.array([exp.labels.index(c.label) for c in clips])
            # labelling reads the memory and leaves it as it is, so one serves every labelling
            memory = SourceMemory.from_features(source_emb, targets, len(exp.labels))
            target_views = [exp.views[c.path] for c in split.adapt_clips]
            row = cells.setdefault(name_of(setting), {c: [] for c in columns})
            shares = {}
            for name, (cfg, views) in configs.items():
                pseudo, _ = target_pseudo_labels(cfg, model, memory, target_views, views=views)
                row[name].append(exp.labelled_ua(pseudo.top.numpy(), split.adapt_clips))
                shares[name] = pseudo.shares
            features, logits = embed_domain(model, [v[0] for v in target_views], True)
            # the same re-reading target_pseudo_labels applies with nnpm.target_prototypes
            for rounds in PROTOTYPE_ROUNDS:
                re_read = nnpm.target_prototype_shares(shares["sf_like"], features, rounds,
                                                       configs["sf_like"][0].nnpm.temperature)
                row[f"sf_like + prototypes {rounds}"].append(
                    exp.labelled_ua(re_read.argmax(1).numpy(), split.adapt_clips))
            row["classifier"].append(exp.labelled_ua(logits.argmax(1).numpy(),
                                                     split.adapt_clips))
            print(f"seed {seed} {name_of(setting)}: " + "  ".join(
                f"{c} {row[c][-1]:.1%}" for c in columns), flush=True)
    print(f"\n| setting (seeds {', '.join(map(str, args.seeds))}) | " + " | ".join(columns)
          + " |\n" + "|---" * (len(columns) + 1) + "|")
    for name, row in cells.items():
        print(f"| {name} | " + " | ".join(f"{100 * np.mean(row[c]):.1f}" for c in columns)
              + " |")
    print("| **mean** | " + " | ".join(
        f"{100 * np.mean([np.mean(r[c]) for r in cells.values()]):.1f}" for c in columns) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
