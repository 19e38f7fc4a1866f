"""Regenerate docs/results.md under the measurement protocol (docs/protocol.md).

Every corpus of --data (a folder with a labels.csv) is measured two ways, ours beside the eGeMAPS
peer, UA / WA / macro-F1 as mean ± sd over seeds:
- in-domain: train on 80% of the corpus' speakers, score the other 20%;
- leave-one-language-out (LOLO): train on every labelled clip of all other corpora, score every
  labelled clip of this one; selection and confirmation targets (configs/protocol/) apart.

Each cell (kind, corpus, seed, system) is written to --runs as JSON as soon as it is measured, so a
run can be split (--seeds, --targets, --kinds, --systems), stopped and resumed; --render writes the
markdown from whatever cells are there, training nothing.

    python -m tools.make_results --data ../shared/data --out docs/results.md [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from edge_ser.config import load_config, to_dict
from edge_ser.metrics import score
from edge_ser_train.config import TrainConfig
from edge_ser_train.corpus import labelled, read_corpus, speaker_split
from edge_ser_train.run import git_commit
from tools import results_render
from tools.protocol import (
    KINDS,
    PROTOCOL,
    ROOT,
    SYSTEMS,
    Cell,
    check_roles,
    common_sentence_files,
    discover_corpora,
    load_protocol,
    read_cell,
    write_cell,
)

VOLATILE = {("optim", "seed"), ("optim", "threads"), ("data", "corpora"), ("data", "cache_dir"),
            ("out_dir",)}
"""Config keys that do not define the recipe: a cell measured with other values of these is the
same measurement (the seed and corpora are part of the cell itself)."""


def recipe(cfg: TrainConfig) -> dict:
    """The resolved config less the VOLATILE keys: what makes two cells' recipes the same."""
    plain = to_dict(cfg)
    for key in VOLATILE:
        node = plain
        for part in key[:-1]:
            node = node[part]
        node.pop(key[-1], None)
    return plain


def same_recipe(saved: dict, current: dict) -> bool:
    """Whether a cell's recorded recipe is `current`. A setting the record lacks was added to
    the config after the cell was measured; it matches when `current` holds its default, which
    is the behaviour from before the setting existed."""
    return _fill(saved, recipe(TrainConfig())) == current


def _fill(saved: dict, defaults: dict) -> dict:
    out = dict(saved)
    for key, value in defaults.items():
        if key not in out:
            out[key] = value
        elif isinstance(value, dict) and isinstance(out[key], dict):
            out[key] = _fill(out[key], value)
    return out


def train_ours(cfg: TrainConfig, train_clips: list, test_clips: list) -> tuple[list, np.ndarray]:
    """Train the recipe on `train_clips`; (scored test clips, predicted class indices)."""
    from edge_ser_train.evaluate import clip_features
    from edge_ser_train.trainer import predict_logits, train

    result = train(cfg, train_clips, lambda _msg: None)
    feats, kept = clip_features(test_clips, log=print)
    return kept, predict_logits(result.model, feats).argmax(1)


def train_peer(cfg: TrainConfig, train_clips: list, test_clips: list) -> tuple[list, np.ndarray]:
    """The eGeMAPS + logistic-regression peer on the same clips; its features are cached beside
    the recipe's (`<cache_dir>/../egemaps`)."""
    from edge_ser_train.peer_egemaps import peer_predictions

    cache = Path(cfg.data.cache_dir).parent / "egemaps"
    return test_clips, peer_predictions(train_clips, test_clips, cfg.data.labels, cache)


SYSTEM_FUNCTIONS = {"ours": train_ours, "peer": train_peer}


class Harness:
    """Measures cells and writes each one as it finishes; `systems` maps a system name to a
    function (config, train clips, test clips) -> (scored clips, predicted class indices)."""

    def __init__(self, data: Path, runs: Path, protocol_path: Path, base_config: Path,
                 overrides: list[str], systems: dict | None = None, log=print):
        self.data, self.runs, self.base_config = data, runs, base_config
        self.overrides, self.log = overrides, log
        self.protocol = load_protocol(protocol_path)
        check_roles(self.protocol, discover_corpora(data), data)
        self.systems = systems or SYSTEM_FUNCTIONS
        self.clips = {c: labelled(read_corpus(data / c)) for c in self.protocol.corpora}
        self.common = {c: common_sentence_files(self.protocol, data, c)
                       for c in self.protocol.corpora}

    def config(self, seed: int, corpora: list[str]) -> TrainConfig:
        paths = "[" + ", ".join(str(self.data / c) for c in corpora) + "]"
        return load_config(TrainConfig, self.base_config,
                           self.overrides + [f"optim.seed={seed}", f"data.corpora={paths}"])

    def split(self, kind: str, corpus: str, seed: int) -> tuple[list[str], list, list]:
        """(training corpora, training clips, test clips) of one cell."""
        if kind == "in_domain":
            train, test = speaker_split(self.clips[corpus], self.protocol.test_fraction, seed)
            return [corpus], train, test
        sources = [c for c in self.protocol.corpora if c != corpus]
        return sources, [clip for s in sources for clip in self.clips[s]], self.clips[corpus]

    def measure(self, cell: Cell, argv: list[str]) -> dict:
        """The cell's record: read from --runs when measured with the same recipe, else measured
        and written there."""
        sources, train_clips, test_clips = self.split(cell.kind, cell.corpus, cell.seed)
        cfg = self.config(cell.seed, sources)
        saved = read_cell(self.runs, cell)
        if saved is not None:
            if not same_recipe(saved["recipe"], recipe(cfg)):
                raise SystemExit(f"{self.runs / cell.name}: measured with another recipe; "
                                 "use another --runs folder for this one")
            return saved
        started = time.perf_counter()
        kept, predicted = self.systems[cell.system](cfg, train_clips, test_clips)
        seconds = time.perf_counter() - started
        record = {"kind": cell.kind, "corpus": cell.corpus, "seed": cell.seed,
                  "system": cell.system, "role": self.protocol.role(cell.corpus),
                  "train_corpora": sources, "train_clips": len(train_clips),
                  "recipe": recipe(cfg), "argv": argv, "commit": git_commit(),
                  "seconds": round(seconds, 1),
                  "scores": self.scores(cfg.data.labels, kept, predicted),
                  "predictions": {"files": [str(c.path.relative_to(self.data)) for c in kept],
                                  "predicted": [int(p) for p in predicted]}}
        common = self.common[cell.corpus]
        if common:
            idx = [i for i, c in enumerate(kept) if c.path in common]
            record["common_sentences"] = self.scores(
                cfg.data.labels, [kept[i] for i in idx], predicted[idx])
        write_cell(self.runs, cell, record)
        s = record["scores"]
        self.log(f"  {cell.name}: UA {s['ua']:.1%} WA {s['wa']:.1%} F1 {s['macro_f1']:.1%} "
                 f"({seconds:.0f} s)")
        return record

    @staticmethod
    def scores(labels: tuple[str, ...], clips: list, predicted: np.ndarray) -> dict:
        references = np.array([labels.index(c.label) for c in clips], dtype=np.int64)
        return score(references, np.asarray(predicted, dtype=np.int64), labels).to_dict()

    def cells(self, seeds, kinds, targets, systems) -> list[Cell]:
        return [Cell(kind, corpus, seed, system) for seed in seeds for kind in kinds
                for corpus in self.protocol.corpora if corpus in targets for system in systems]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results.md")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "results",
                        help="one JSON file per measured cell (default: runs/results)")
    parser.add_argument("--protocol", type=Path, default=PROTOCOL)
    parser.add_argument("--config", type=Path, default=ROOT / "configs/train/default.yaml")
    parser.add_argument("--set", action="append", default=[], help="training config override")
    parser.add_argument("--seeds", type=int, nargs="+",
                        help="seeds to measure (default: the protocol's)")
    parser.add_argument("--targets", nargs="+", help="corpora to measure (default: all)")
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    parser.add_argument("--threads", type=int, help="CPU threads per training (optim.threads)")
    parser.add_argument("--render", action="store_true",
                        help="only write --out from the cells in --runs, training nothing")
    args = parser.parse_args(argv)
    args.argv = argv
    if args.threads is not None:
        args.set = args.set + [f"optim.threads={args.threads}"]
    return args


def main(argv: list[str] | None = None, systems: dict | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    protocol = load_protocol(args.protocol)
    if not args.render:
        if args.threads is not None:
            import torch

            torch.set_num_threads(args.threads)
        harness = Harness(args.data, args.runs, args.protocol, args.config, args.set, systems)
        targets = args.targets or list(protocol.corpora)
        unknown = [t for t in targets if t not in protocol.corpora]
        if unknown:
            raise SystemExit(f"--targets: {', '.join(unknown)} not a protocol corpus "
                             f"({', '.join(protocol.corpora)})")
        for cell in harness.cells(args.seeds or protocol.seeds, args.kinds, targets,
                                  args.systems):
            harness.measure(cell, ["tools/make_results.py", *argv])
    text = results_render.render(protocol, args.runs, args.config)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from edge_ser.atomic_write import write_text_atomic

    write_text_atomic(args.out, text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
