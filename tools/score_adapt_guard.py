"""How often is the adaptation guard right? Leave-one-language-out targets x seeds x modes.

For each cell (target corpus, seed, mode) the start model is the training recipe trained on the
four other corpora (docs/protocol.md's LOLO; cached per target and seed, with the memory bank an
export would ship), and `adapt` runs as the command does (`run_adaptation`, the target corpus'
folder of recordings as the unlabelled target) in one of two modes:

    source_free   no source audio: the start model's memory bank
    source        --source the four training corpora

with the guard's decision switched off so that the adapted model is always written; its
estimate is recorded. Both models are then scored with torch on the target's labelled clips:
the verdict was right when it said "not worse" and the adapted UA is at least the start UA, or
"worse" and it is below. `returned_ua` is the UA of what `adapt` returns with the guard on (the
adapted model on "not worse", else the start model).

Each cell is written to --runs as JSON when measured (resumable; a cell measured with another
recipe stops the run); the hit rate over every cell there is printed at the end.

    python -m tools.score_adapt_guard --data ../shared/data [--targets emodb] [--seeds 0]
        [--modes source_free source] [--threads 1] [--limit N] [--set KEY=VALUE]
        [--train-set KEY=VALUE] [--export-set KEY=VALUE]

--limit N runs every corpus as a seeded sample of N labelled clips (symbolic links under
--runs/limited): a quick check that the tool works, not a measurement.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from edge_ser.atomic_write import write_text_atomic
from edge_ser.config import load_config, to_dict
from edge_ser.metrics import score
from edge_ser_export.adapt_job import run_adaptation
from edge_ser_train.adapt_config import AdaptConfig
from edge_ser_train.config import TrainConfig
from edge_ser_train.corpus import labelled, read_corpus
from edge_ser_train.evaluate import clip_features
from edge_ser_train.run import git_commit
from edge_ser_train.trainer import load_checkpoint, predict_logits
from tools.protocol import PROTOCOL, ROOT, check_roles, discover_corpora, load_protocol
from tools.start_models import start_checkpoint

MODES = ("source_free", "source")
VOLATILE = (("optim", "seed"), ("optim", "threads"))
"""Settings that do not define the recipe (the seed is part of the cell)."""


def recipe(cfg) -> dict:
    plain = to_dict(cfg)
    for section, key in VOLATILE:
        plain[section].pop(key, None)
    plain.get("data", {}).pop("corpora", None)
    return plain


def limited_corpus(folder: Path, n: int, seed: int, out: Path) -> Path:
    """A corpus folder of `n` labelled clips of `folder` (seeded), as symbolic links."""
    if (out / "labels.csv").is_file():
        return out
    with (folder / "labels.csv").open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns, rows = reader.fieldnames, [r for r in reader if r.get("emotion4")]
    picks = sorted(np.random.default_rng(seed).choice(len(rows), min(n, len(rows)),
                                                      replace=False))
    out.mkdir(parents=True, exist_ok=True)
    for i in picks:
        link = out / rows[i]["file"]
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to((folder / rows[i]["file"]).resolve())
    tmp = out / "labels.csv.tmp"
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, columns)
        writer.writeheader()
        writer.writerows(rows[i] for i in picks)
    tmp.replace(out / "labels.csv")
    return out


class GuardStudy:
    def __init__(self, args, log=print):
        self.args, self.log = args, log
        self.protocol = load_protocol(args.protocol)
        check_roles(self.protocol, discover_corpora(args.data), args.data)
        self.folders = {c: args.data / c for c in self.protocol.corpora}
        if args.limit:
            self.folders = {c: limited_corpus(f, args.limit, 0, args.runs / "limited" / c)
                            for c, f in self.folders.items()}
        self._target_feats: dict[str, tuple] = {}

    def train_config(self, target: str, seed: int) -> TrainConfig:
        sources = [str(f) for c, f in self.folders.items() if c != target]
        return load_config(TrainConfig, self.args.train_config, self.args.train_set + [
            f"optim.seed={seed}", f"optim.threads={self.args.threads}",
            f"data.corpora=[{', '.join(sources)}]", "data.test_fraction=0.0"])

    def adapt_config(self, seed: int) -> AdaptConfig:
        return load_config(AdaptConfig, self.args.config, self.args.set + [
            f"optim.seed={seed}", f"optim.threads={self.args.threads}", "guard.enabled=false"])

    def start_model(self, target: str, seed: int) -> Path:
        """The LOLO start checkpoint of `target` and `seed`, trained once, with the memory
        bank an export would ship (so that adapt can run without source audio)."""
        cfg = self.train_config(target, seed)
        clips = [c for f in cfg.data.corpora for c in labelled(read_corpus(f), cfg.data.labels)]
        return start_checkpoint(cfg, clips, self.args.runs / "start" / f"lolo-{target}-s{seed}.pt",
                                self.log)

    def target_features(self, target: str, labels: tuple[str, ...]):
        if target not in self._target_feats:
            clips = labelled(read_corpus(self.folders[target]), labels)
            feats, kept = clip_features(clips, log=self.log)
            self._target_feats[target] = (feats, np.array([labels.index(c.label)
                                                           for c in kept]))
        return self._target_feats[target]

    def ua(self, checkpoint: Path, target: str) -> float:
        model, _, payload = load_checkpoint(checkpoint)
        labels = tuple(payload["labels"])
        feats, references = self.target_features(target, labels)
        return score(references, predict_logits(model, feats).argmax(1), labels).ua

    def measure(self, target: str, seed: int, mode: str) -> dict:
        path = self.args.runs / f"{target}-s{seed}-{mode}.json"
        cfg = self.adapt_config(seed)
        wanted = {"adapt": recipe(cfg), "train": recipe(self.train_config(target, seed)),
                  "export_set": self.args.export_set, "limit": self.args.limit}
        if path.is_file():
            saved = json.loads(path.read_text(encoding="utf-8"))
            if saved["recipe"] != wanted:
                raise SystemExit(f"{path}: measured with another recipe; use another --runs")
            return saved
        start = self.start_model(target, seed)
        sources = [f for c, f in self.folders.items() if c != target] if mode == "source" \
            else []
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(dir=self.args.runs, prefix=".adapt.") as tmp:
            out = Path(tmp) / "package"
            adaptation = run_adaptation(cfg, self.folders[target], out, start, sources,
                                        log=lambda _msg: None,
                                        export_overrides=self.args.export_set)
            adapted_ua = self.ua(out / "model.pt", target)
        start_ua = self.ua(start, target)
        guard = adaptation["guard"]
        says_better = guard["estimate"] == "not worse"
        record = {
            "target": target, "seed": seed, "mode": mode,
            "role": self.protocol.role(target), "start_ua": start_ua, "adapted_ua": adapted_ua,
            "estimate": guard["estimate"], "right": says_better == (adapted_ua >= start_ua),
            "returned_ua": adapted_ua if says_better else start_ua, "guard": guard,
            "target_segments": adaptation["target"].get("segments"),
            "seconds": round(time.perf_counter() - started, 1), "recipe": wanted,
            "argv": ["python -m tools.score_adapt_guard", *self.args.argv],
            "commit": git_commit()}
        write_text_atomic(path, json.dumps(record, indent=1))
        self.log(f"  {path.name}: start UA {start_ua:.1%}, adapted {adapted_ua:.1%}, guard "
                 f"says {guard['estimate']} ({'right' if record['right'] else 'wrong'})")
        return record


def summary(runs: Path) -> str:
    cells = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(runs.glob("*-s*-*.json"))]
    if not cells:
        return f"{runs}: no cell measured yet"
    lines = [f"{len(cells)} cells in {runs}"]
    for mode in (*MODES, None):
        part = [c for c in cells if mode is None or c["mode"] == mode]
        if not part:
            continue
        mean = {k: 100 * float(np.mean([c[k] for c in part]))
                for k in ("start_ua", "adapted_ua", "returned_ua")}
        lines.append(f"{mode or 'all':<12} verdict right in {sum(c['right'] for c in part)} of "
                     f"{len(part)}; mean UA: start {mean['start_ua']:.1f}, adapted "
                     f"{mean['adapted_ua']:.1f}, returned by adapt {mean['returned_ua']:.1f}")
    return "\n".join(lines)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "adapt_guard",
                        help="one JSON file per cell, and the start models (start/)")
    parser.add_argument("--protocol", type=Path, default=PROTOCOL)
    parser.add_argument("--targets", nargs="+", help="LOLO targets (default: every corpus)")
    parser.add_argument("--seeds", type=int, nargs="+", help="default: the protocol's")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
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
    args.argv = argv
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(args.threads)
    args.runs.mkdir(parents=True, exist_ok=True)
    study = GuardStudy(args)
    targets = args.targets or list(study.protocol.corpora)
    unknown = [t for t in targets if t not in study.protocol.corpora]
    if unknown:
        raise SystemExit(f"--targets: {', '.join(unknown)} not a protocol corpus")
    for seed in args.seeds or study.protocol.seeds:
        for target in targets:
            for mode in args.modes:
                study.log(f"== {target}, seed {seed}, {mode}")
                study.measure(target, seed, mode)
    print(summary(args.runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

