"""What does a larger source exemplar set buy NNPM without source audio? Size against UA.

For each cell (LOLO target corpus, seed, evidence) the start model is the training recipe
trained on the other corpora (cached per target and seed with the memory bank an export would
ship: `tools.score_adapt_guard`), and `adapt` runs as the command does (`run_adaptation`, the
target corpus' folder of recordings as the unlabelled target, the guard's decision off so the
adapted model is always the one scored) with one kind of source evidence:

    x0      no source audio, no exemplar set: the memory bank's centroids (today's packages)
    xN      no source audio, an exemplar set of N per source corpus and class
            (`edge_ser_export.adaptation_memory`, --selection kmeans or sample, no byte limit)
            built through the start model from its training clips, as an export builds it
    full    --source the other corpora (full NNPM)

The adapted model is scored with torch on the target's labelled clips (UA); `bytes` is the size
of the source evidence a package would carry for it (memory_bank.npz for x0, the
adaptation_memory.npz for xN, none for full, which reads the corpora). One JSON per cell in
--runs, written when measured (resumable; a cell measured with another recipe stops the run);
a table over every cell there is printed at the end.

    python -m tools.score_bank_size --data ../shared/data [--targets emodb] [--seeds 0]
        [--sizes 0 8 32 128] [--full/--no-full] [--selection kmeans] [--threads 1]
        [--limit N] [--set KEY=VALUE] [--train-set KEY=VALUE] [--export-set KEY=VALUE]

--limit N runs every corpus as a seeded sample of N labelled clips: a quick check that the tool
works, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from edge_ser.atomic_write import write_text_atomic
from edge_ser_export.adapt_job import run_adaptation
from edge_ser_export.adaptation_memory import build_exemplars, checkpoint_entry, npz_bytes
from edge_ser_export.config import AdaptationMemoryConfig
from edge_ser_export.memory_bank import clip_embeddings
from edge_ser_train.corpus import labelled, read_corpus
from edge_ser_train.run import git_commit
from edge_ser_train.trainer import TrainResult, load_checkpoint, save_checkpoint
from edge_ser_train.views import load_views
from tools.protocol import PROTOCOL, ROOT
from tools.score_adapt_guard import GuardStudy, recipe


class BankStudy(GuardStudy):
    def __init__(self, args, log=print):
        super().__init__(args, log)
        self._embeddings: dict[tuple[str, int], tuple] = {}

    def source_embeddings(self, target: str, seed: int, start: Path):
        """(embeddings (n, E), classes (n,), corpus names, {corpus: language}) of the start
        model's training clips through the start model."""
        key = (target, seed)
        if key not in self._embeddings:
            cfg = self.train_config(target, seed)
            clips = [c for f in cfg.data.corpora
                     for c in labelled(read_corpus(f), cfg.data.labels)]
            views = load_views(clips, cfg.augment.views, cfg.augment, cfg.data.max_clip_s,
                               cfg.data.cache_dir, workers=cfg.optim.threads)
            model, _, _ = load_checkpoint(start)
            self._embeddings[key] = (
                clip_embeddings(model, [v[0] for v in views]),
                np.array([cfg.data.labels.index(c.label) for c in clips]),
                [c.corpus for c in clips], {c.corpus: c.language for c in clips})
        return self._embeddings[key]

    def start_with_exemplars(self, target: str, seed: int, size: int) -> tuple[Path, dict]:
        """The start checkpoint carrying an exemplar set of `size` per corpus and class."""
        start = self.start_model(target, seed)
        path = start.with_name(f"{start.stem}-x{size}-{self.args.selection}.pt")
        cfg = AdaptationMemoryConfig(per_class_per_language=size,
                                     selection=self.args.selection, max_bytes=10_000_000)
        model, train_cfg, payload = load_checkpoint(start)
        labels = tuple(payload["labels"])
        arrays = build_exemplars(*self.source_embeddings(target, seed, start), labels, cfg)
        if not path.is_file():
            extra = {**payload.get("extra", {}), "adaptation_memory": checkpoint_entry(arrays)}
            save_checkpoint(TrainResult(model, labels, payload.get("history", []), 0.0),
                            train_cfg, path, extra=extra)
        return path, {"exemplars": int(len(arrays["exemplars"])), "bytes": npz_bytes(arrays)}

    def evidence(self, target: str, seed: int, cell: str) -> tuple[Path, list[Path], dict]:
        """(start checkpoint, --source folders, what the cell's evidence is and weighs)."""
        start = self.start_model(target, seed)
        if cell == "full":
            sources = [f for c, f in self.folders.items() if c != target]
            return start, sources, {"exemplars": 0, "bytes": 0,
                                    "sources": [s.name for s in sources]}
        size = int(cell[1:])
        if size == 0:
            _, _, payload = load_checkpoint(start)
            bank = {k: np.asarray(v) for k, v in payload["extra"]["memory_bank"].items()}
            bank["labels"] = np.asarray(payload["labels"])
            return start, [], {"exemplars": 0, "bytes": npz_bytes(bank),
                               "centroids": int(len(bank["centroids"]))}
        path, facts = self.start_with_exemplars(target, seed, size)
        return path, [], facts

    def measure_cell(self, target: str, seed: int, cell: str) -> dict:
        name = cell if cell in ("full", "x0") else f"{cell}-{self.args.selection}"
        path = self.args.runs / f"{target}-s{seed}-{name}.json"
        cfg = self.adapt_config(seed)
        wanted = {"adapt": recipe(cfg), "train": recipe(self.train_config(target, seed)),
                  "export_set": self.args.export_set, "limit": self.args.limit}
        if path.is_file():
            saved = json.loads(path.read_text(encoding="utf-8"))
            if saved["recipe"] != wanted:
                raise SystemExit(f"{path}: measured with another recipe; use another --runs")
            return saved
        start, sources, facts = self.evidence(target, seed, cell)
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(dir=self.args.runs, prefix=".adapt.") as tmp:
            out = Path(tmp) / "package"
            adaptation = run_adaptation(cfg, self.folders[target], out, start, sources,
                                        log=lambda _msg: None,
                                        export_overrides=self.args.export_set)
            adapted_ua = self.ua(out / "model.pt", target)
        record = {
            "target": target, "seed": seed, "cell": name,
            "per_class_per_language": int(cell[1:]) if cell != "full" else None,
            "selection": self.args.selection if cell not in ("full", "x0") else None,
            "role": self.protocol.role(target), **facts,
            "start_ua": self.ua(self.start_model(target, seed), target),
            "adapted_ua": adapted_ua, "memory": adaptation["source"]["memory"],
            "target_segments": adaptation["target"].get("segments"),
            "seconds": round(time.perf_counter() - started, 1), "recipe": wanted,
            "argv": ["python -m tools.score_bank_size", *self.args.argv],
            "commit": git_commit()}
        write_text_atomic(path, json.dumps(record, indent=1))
        self.log(f"  {path.name}: {facts['bytes']} bytes, start UA {record['start_ua']:.1%}, "
                 f"adapted {adapted_ua:.1%}")
        return record


def summary(runs: Path) -> str:
    cells = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(runs.glob("*-s*-*.json"))]
    if not cells:
        return f"{runs}: no cell measured yet"
    lines = [f"{len(cells)} cells in {runs}",
             f"{'evidence':<14} {'cells':>5} {'bytes (mean)':>12} {'start UA':>9} "
             f"{'adapted UA':>10}"]
    order = sorted({c["cell"] for c in cells},
                   key=lambda n: (n == "full", int(n[1:].split("-")[0]) if n != "full" else 0, n))
    for name in order:
        part = [c for c in cells if c["cell"] == name]
        lines.append(f"{name:<14} {len(part):>5} {np.mean([c['bytes'] for c in part]):>12.0f} "
                     f"{100 * np.mean([c['start_ua'] for c in part]):>9.1f} "
                     f"{100 * np.mean([c['adapted_ua'] for c in part]):>10.1f}")
    return "\n".join(lines)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "bank_size",
                        help="one JSON file per cell, and the start models (start/)")
    parser.add_argument("--protocol", type=Path, default=PROTOCOL)
    parser.add_argument("--targets", nargs="+", help="LOLO targets (default: every corpus)")
    parser.add_argument("--seeds", type=int, nargs="+", help="default: the protocol's")
    parser.add_argument("--sizes", type=int, nargs="+", default=[0, 8, 32, 128],
                        help="exemplars per source corpus and class (0: the memory bank)")
    parser.add_argument("--full", action=argparse.BooleanOptionalAction, default=True,
                        help="also run full NNPM (--source the other corpora)")
    parser.add_argument("--selection", choices=("kmeans", "sample"), default="kmeans")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of each step")
    parser.add_argument("--limit", type=int, default=0,
                        help="N labelled clips per corpus (a quick check of the tool)")
    parser.add_argument("--config", type=Path, default=ROOT / "configs/adapt/default.yaml")
    parser.add_argument("--train-config", type=Path,
                        default=ROOT / "configs/train/default.yaml")
    parser.add_argument("--set", action="append", default=[], help="adapt config override")
    parser.add_argument("--train-set", action="append", default=[],
                        help="training config override (the start models)")
    parser.add_argument("--export-set", action="append", default=[],
                        help="export config override (the adapted package)")
    args = parser.parse_args(argv)
    if any(s < 0 for s in args.sizes):
        parser.error(f"--sizes: {args.sizes} must be 0 or more")
    args.argv = argv
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(args.threads)
    args.runs.mkdir(parents=True, exist_ok=True)
    study = BankStudy(args)
    targets = args.targets or list(study.protocol.corpora)
    unknown = [t for t in targets if t not in study.protocol.corpora]
    if unknown:
        raise SystemExit(f"--targets: {', '.join(unknown)} not a protocol corpus")
    cells = [f"x{s}" for s in args.sizes] + (["full"] if args.full else [])
    for seed in args.seeds or study.protocol.seeds:
        for target in targets:
            for cell in cells:
                study.log(f"== {target}, seed {seed}, {cell}")
                study.measure_cell(target, seed, cell)
    print(summary(args.runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
