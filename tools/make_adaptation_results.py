"""Regenerate the adaptation table under the measurement protocol (docs/protocol.md):
unsupervised adaptation to a language the model never heard.

For each corpus of the protocol as the target (selection and confirmation alike) and each seed:
- the start model is the training recipe (`--train-config`, default configs/train/default.yaml,
  with `--train-set`) trained by the training function on every labelled clip of the other
  corpora: the same clips, config and function as tools/make_results.py's LOLO cell, so it is
  the model a user who ran `train` without the target language has. It is trained once per
  target and seed and kept, with the memory bank an export would ship, in --runs/start/
  (tools/start_models.py);
- the target's speakers are split as the protocol's in-domain split (`speaker_split`, its
  test_fraction, seeded): every clip of the larger part, labelled or not, is the unlabelled
  adaptation set; the other speakers are heard by no system. Each part's labelled clips are
  scored (UA, WA, macro-F1), the adaptation set's first;
- the systems (columns), every one starting from that start model:
      source     the start model as it is (source-only)
      source_bn  the same with its batch-norm statistics re-estimated on the adaptation set
      dann       `adapt`'s DANN with the four other corpora as source
      nnpm       `adapt` (NNPM) with --source the four other corpora
      nnpm_sf    `adapt` (NNPM) without source audio: the start model's source exemplar set
                 (its memory bank for a start model saved without one), as `adapt` reads a
                 package
      peer       the eGeMAPS peer (train/peer_egemaps.py) on the same source clips, no adaptation
  The adapted systems use the adapt config (`--config`, default configs/adapt/default.yaml, with
  `--set`) and are judged by the do-no-harm guard as `edge-ser adapt` judges them
  (train/adapt_guard.py `judge`); each cell records its verdict, whether the verdict was right
  (it said "not worse" and the adapted UA is at least the start model's, or "worse" and it is
  below) and the UA of the model `adapt` returns (the adapted one or the start one). The target's
  utterances are its clips (their cached views, as the training's), not the speech segments the
  command cuts from a folder of recordings.

Each cell (target, seed, system) is one JSON file in --runs, written when measured; a run resumes
where it stopped and refuses a cell measured with another recipe. --render writes the markdown
(tools/adaptation_render.py) from whatever cells are there, training nothing.

    python -m tools.make_adaptation_results --data ../shared/data --threads 1
    python -m tools.make_adaptation_results --targets emodb --seeds 0 --systems nnpm nnpm_sf
    python -m tools.make_adaptation_results --render --out docs/adaptation_results.md
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np

from edge_ser.atomic_write import write_text_atomic
from edge_ser.config import load_config, to_dict
from edge_ser_export.adapt_job import StartModel, load_start_model
from edge_ser_train.adapt import AdaptData, adapt
from edge_ser_train.adapt_config import AdaptConfig
from edge_ser_train.adapt_guard import GuardReport, judge
from edge_ser_train.corpus import read_corpus, speaker_split
from edge_ser_train.evaluate import clip_features
from edge_ser_train.inference import reestimate_bn_statistics
from edge_ser_train.memory import SourceMemory
from edge_ser_train.run import git_commit
from edge_ser_train.trainer import predict_logits
from edge_ser_train.views import load_views
from tools import adaptation_render
from tools.make_results import Harness, recipe
from tools.protocol import PROTOCOL, ROOT, Cell, load_protocol, read_cell, write_cell
from tools.start_models import start_checkpoint

KIND = "adapt"
"""The cells' kind: their files are `adapt-<target>-s<seed>-<system>.json`."""
SYSTEMS = adaptation_render.SYSTEMS
ADAPTED = {"dann": ["method=dann"], "nnpm": ["method=nnpm"], "nnpm_sf": ["method=nnpm"]}
"""The systems `adapt` trains: their overrides on the adapt config (--config, --set)."""
WITH_SOURCE = ("dann", "nnpm")
"""Adapted with the other corpora's labelled clips as source; nnpm_sf has the start model's
source exemplar set (or memory bank) only."""
ADAPT_VOLATILE = (("optim", "seed"), ("optim", "threads"), ("source", "corpora"),
                  ("source", "cache_dir"))
"""Adapt settings that do not define the recipe (the seed and source corpora are the cell's)."""
PARTS = ("adapt", "unseen")
"""adapt: the labelled clips of the adaptation set; unseen: those of the speakers held out."""


def adapt_recipe(cfg: AdaptConfig) -> dict:
    plain = to_dict(cfg)
    for section, key in ADAPT_VOLATILE:
        plain[section].pop(key, None)
    return plain


class AdaptationTable:
    """Measures cells and writes each one as it finishes; start models, views and features are
    computed once per run and shared by every system."""

    def __init__(self, args, log=print):
        self.args, self.log = args, log
        self.harness = Harness(args.data, args.runs, args.protocol, args.train_config,
                               args.train_set, log=log)
        self.protocol = self.harness.protocol
        self.every_clip = {c: read_corpus(args.data / c) for c in self.protocol.corpora}
        self.labels = self.harness.config(0, list(self.protocol.corpora)).data.labels
        self._views: dict[Path, list[np.ndarray]] = {}
        self._scored: dict[tuple[str, int], tuple] = {}
        self._start: dict[tuple[str, int], tuple[StartModel, np.ndarray]] = {}

    # --- configuration and data ------------------------------------------------------------

    def train_config(self, target: str, seed: int):
        sources, _, _ = self.harness.split("lolo", target, seed)
        return self.harness.config(seed, sources)

    def adapt_config(self, system: str, seed: int) -> AdaptConfig:
        return load_config(AdaptConfig, self.args.config,
                           self.args.set + ADAPTED[system] + [f"optim.seed={seed}"])

    def wanted(self, cell: Cell) -> dict:
        """What defines a cell's measurement: the start model's recipe, the adaptation's, the
        split."""
        return {"train": recipe(self.train_config(cell.corpus, cell.seed)),
                "adapt": (adapt_recipe(self.adapt_config(cell.system, cell.seed))
                          if cell.system in ADAPTED else None),
                "test_fraction": self.protocol.test_fraction}

    def split(self, target: str, seed: int) -> tuple[list, list]:
        """(adaptation set: every clip of most speakers, the held-out speakers' clips)."""
        return speaker_split(self.every_clip[target], self.protocol.test_fraction, seed)

    def views(self, clips: list, cfg: AdaptConfig) -> list[list[np.ndarray]]:
        """The cached log-mel views of `clips` (the training cache: the same files)."""
        todo = list({c.path: c for c in clips if c.path not in self._views}.values())
        if todo:
            loaded = load_views(todo, cfg.augment.views, cfg.augment, cfg.source.max_clip_s,
                                cfg.source.cache_dir, workers=cfg.optim.threads)
            self._views.update({c.path: v for c, v in zip(todo, loaded)})
        return [self._views[c.path] for c in clips]

    def scored(self, target: str, seed: int) -> tuple[list, np.ndarray, list, np.ndarray]:
        """(labelled target clips, their whole-clip features, the part of each, class indices)."""
        if (target, seed) not in self._scored:
            labels = self.labels
            adapt_set = {c.path for c in self.split(target, seed)[0]}
            feats, kept = clip_features(self.harness.clips[target], log=self.log)
            parts = ["adapt" if c.path in adapt_set else "unseen" for c in kept]
            references = np.array([labels.index(c.label) for c in kept])
            self._scored = {(target, seed): (kept, feats, parts, references)}
        return self._scored[(target, seed)]

    def start(self, target: str, seed: int) -> tuple[StartModel, np.ndarray]:
        """The start model (trained once, then read from --runs/start) and its predictions."""
        if (target, seed) not in self._start:
            sources, clips, _ = self.harness.split("lolo", target, seed)
            path = self.args.runs / "start" / f"lolo-{target}-s{seed}.pt"
            start_checkpoint(self.harness.config(seed, sources), clips, path, self.log)
            start = load_start_model(path)
            feats = self.scored(target, seed)[1]
            self._start = {(target, seed): (start, predict_logits(start.model, feats).argmax(1))}
        return self._start[(target, seed)]

    # --- systems ---------------------------------------------------------------------------

    def system_model(self, system: str, target: str, seed: int
                     ) -> tuple[object, GuardReport | None]:
        """(model, guard report or None): what `system` makes of the start model."""
        start, _ = self.start(target, seed)
        if system == "source":
            return start.model, None
        cfg = self.adapt_config(system if system in ADAPTED else "nnpm", seed)
        target_views = self.views(self.split(target, seed)[0], cfg)
        if system == "source_bn":
            model = copy.deepcopy(start.model)
            reestimate_bn_statistics(model, [v[0] for v in target_views])
            return model, None
        if tuple(cfg.source.labels) != start.labels:
            raise SystemExit(f"{self.args.config}: source.labels {list(cfg.source.labels)} "
                             f"differ from the start model's {list(start.labels)}")
        bank = SourceMemory.from_bank(start.bank, len(start.labels))
        if system in WITH_SOURCE:
            _, clips, _ = self.harness.split("lolo", target, seed)
            data = AdaptData.from_clips(start.labels, clips, self.views(clips, cfg), target_views)
            memory = None
        else:  # as `adapt` without --source reads a package: its exemplar set, else its bank
            data = AdaptData(labels=start.labels, target_views=target_views)
            memory = (SourceMemory.from_exemplars(start.exemplars, len(start.labels))
                      if start.exemplars is not None else bank)
        result = adapt(cfg, data, model=copy.deepcopy(start.model), memory=memory,
                       log=lambda _msg: None)
        guard = judge(cfg.guard, start.model, result.model, [v[0] for v in target_views],
                      start.labels, memory=bank, source_feats=[v[0] for v in data.source_views],
                      source_targets=data.source_targets, seed=cfg.optim.seed)
        return result.model, guard

    def predictions(self, system: str, target: str, seed: int
                    ) -> tuple[np.ndarray, GuardReport | None]:
        kept, feats, _, _ = self.scored(target, seed)
        if system == "peer":
            from edge_ser_train.peer_egemaps import peer_predictions

            cfg = self.train_config(target, seed)
            _, clips, _ = self.harness.split("lolo", target, seed)
            cache = Path(cfg.data.cache_dir).parent / "egemaps"
            return np.asarray(peer_predictions(clips, kept, cfg.data.labels, cache)), None
        model, guard = self.system_model(system, target, seed)
        return predict_logits(model, feats).argmax(1), guard

    # --- cells -----------------------------------------------------------------------------

    def measure(self, cell: Cell, argv: list[str]) -> dict:
        wanted = self.wanted(cell)
        saved = read_cell(self.args.runs, cell)
        if saved is not None:
            if saved["recipe"] != wanted:
                raise SystemExit(f"{self.args.runs / cell.name}: measured with another recipe; "
                                 "use another --runs folder for this one")
            return saved
        target, seed = cell.corpus, cell.seed
        started = time.perf_counter()
        predicted, guard = self.predictions(cell.system, target, seed)
        seconds = time.perf_counter() - started
        kept, _, parts, references = self.scored(target, seed)
        labels = self.labels
        adapt_set, unseen = self.split(target, seed)
        record = {
            "kind": KIND, "target": target, "seed": seed, "system": cell.system,
            "role": self.protocol.role(target),
            "train_corpora": [c for c in self.protocol.corpora if c != target],
            "adaptation_set": {"clips": len(adapt_set),
                               "speakers": len({c.speaker for c in adapt_set})},
            "unseen": {"clips": len(unseen), "speakers": len({c.speaker for c in unseen})},
            "recipe": wanted, "argv": argv, "commit": git_commit(),
            "seconds": round(seconds, 1),
            "scores": {part: self.part_scores(labels, parts, references, predicted, part)
                       for part in PARTS},
            "predictions": {"files": [str(c.path.relative_to(self.args.data)) for c in kept],
                            "part": parts, "reference": [int(r) for r in references],
                            "predicted": [int(p) for p in predicted]}}
        if cell.system == "nnpm_sf":
            start, _ = self.start(target, seed)
            record["source_memory"] = (
                f"source exemplar set, {len(start.exemplars['exemplars'])} exemplars"
                if start.exemplars is not None else f"memory bank, {len(start.bank['centroids'])} "
                "centroids")
        if guard is not None:
            _, start_predicted = self.start(target, seed)
            start_ua = self.part_scores(labels, parts, references, start_predicted, "adapt")["ua"]
            adapted_ua = record["scores"]["adapt"]["ua"]
            says_not_worse = guard.estimate == "not worse"
            record["guard"] = {
                "estimate": guard.estimate, "decision": guard.decision,
                "right": says_not_worse == (adapted_ua >= start_ua),
                "start_ua": start_ua, "adapted_ua": adapted_ua,
                "returned_ua": adapted_ua if guard.keep_adapted else start_ua,
                "report": guard.to_dict()}
        write_cell(self.args.runs, cell, record)
        s = record["scores"]
        self.log(f"  {cell.name}: UA {s['adapt']['ua']:.1%} (unseen speakers "
                 f"{s['unseen']['ua']:.1%})" + (f", guard: {guard.estimate}" if guard else "")
                 + f" ({seconds:.0f} s)")
        return record

    @staticmethod
    def part_scores(labels, parts: list[str], references, predicted, part: str) -> dict:
        idx = [i for i, p in enumerate(parts) if p == part]
        from edge_ser.metrics import score

        return score(np.asarray(references)[idx], np.asarray(predicted)[idx], labels).to_dict()


def table_arguments(parser: argparse.ArgumentParser) -> None:
    """The options `AdaptationTable` reads (shared with tools/adaptation_package_scores.py)."""
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "adaptation",
                        help="one JSON file per cell, and the start models in start/")
    parser.add_argument("--protocol", type=Path, default=PROTOCOL)
    parser.add_argument("--targets", nargs="+", help="target corpora (default: every one)")
    parser.add_argument("--seeds", type=int, nargs="+", help="default: the protocol's")
    parser.add_argument("--threads", type=int, help="CPU threads of training and adapting")
    parser.add_argument("--config", type=Path, default=ROOT / "configs/adapt/default.yaml",
                        help="the adapt config of the adapted systems")
    parser.add_argument("--set", action="append", default=[], help="adapt config override")
    parser.add_argument("--train-config", type=Path,
                        default=ROOT / "configs/train/default.yaml",
                        help="the training recipe of the start models")
    parser.add_argument("--train-set", action="append", default=[],
                        help="training config override (the start models)")


def with_threads(args: argparse.Namespace) -> argparse.Namespace:
    """--threads as the adapt and training configs' optim.threads, and torch's."""
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
        args.set = args.set + [f"optim.threads={args.threads}"]
        args.train_set = args.train_set + [f"optim.threads={args.threads}"]
    return args


def targets_of(args: argparse.Namespace, protocol) -> list[str]:
    targets = args.targets or list(protocol.corpora)
    unknown = [t for t in targets if t not in protocol.corpora]
    if unknown:
        raise SystemExit(f"--targets: {', '.join(unknown)} not a protocol corpus "
                         f"({', '.join(protocol.corpora)})")
    return [c for c in protocol.corpora if c in targets]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    table_arguments(parser)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "adaptation_results.md")
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    parser.add_argument("--render", action="store_true",
                        help="only write --out from the cells in --runs, measuring nothing")
    args = parser.parse_args(argv)
    args.argv = argv
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    protocol = load_protocol(args.protocol)
    if not args.render:
        table = AdaptationTable(with_threads(args))
        for seed in args.seeds or protocol.seeds:
            for target in targets_of(args, protocol):
                for system in (s for s in SYSTEMS if s in args.systems):
                    table.measure(Cell(KIND, target, seed, system),
                                  ["python -m tools.make_adaptation_results", *argv])
    text = adaptation_render.render(protocol, args.runs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
