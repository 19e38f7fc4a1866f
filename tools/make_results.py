"""Regenerate docs/results.md: our model beside the eGeMAPS peer, speaker-independent.

Tables (mean and spread over seeds; a seed sets both the speaker split and the initialisation):
1. the 3x3 corpus matrix: train on 80% of corpus A's speakers; the diagonal scores A's held-out
   speakers (in-domain), the other cells score all of corpus B (cross-corpus, source only);
2. multilingual: train on all corpora's training speakers, score each corpus' held-out speakers.

    python tools/make_results.py --data ../shared/data --out docs/results.md [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from edge_ser.atomic_write import write_text_atomic
from edge_ser.config import load_config
from edge_ser_train.config import TrainConfig
from edge_ser_train.corpus import labelled, read_corpus, speaker_split
from edge_ser_train.evaluate import clip_features, score_model
from edge_ser_train.run import git_commit
from edge_ser_train.trainer import train

ROOT = Path(__file__).resolve().parent.parent

CORPORA = ("emodb", "urdu", "turev")


def quiet(_msg: str) -> None:
    pass


class Experiment:
    def __init__(self, data: Path, base_config: Path, overrides: list[str], log):
        self.data = data
        self.base_config = base_config
        self.overrides = overrides
        self.log = log
        self.clips = {c: labelled(read_corpus(data / c)) for c in CORPORA}
        self.feats = {}
        for corpus, clips in self.clips.items():
            feats, kept = clip_features(clips)
            if len(kept) != len(clips):
                raise SystemExit(f"{corpus}: unreadable clips; fix the corpus first")
            self.feats.update({clip.path: f for clip, f in zip(clips, feats)})

    def config(self, seed: int, corpora: tuple[str, ...]) -> TrainConfig:
        paths = "[" + ", ".join(str(self.data / c) for c in corpora) + "]"
        return load_config(TrainConfig, self.base_config,
                           self.overrides + [f"optim.seed={seed}", f"data.corpora={paths}"])

    def ours(self, cfg: TrainConfig, train_clips, tests: dict[str, list]) -> dict[str, float]:
        result = train(cfg, train_clips, quiet)
        out = {}
        for name, clips in tests.items():
            scores = score_model(result.model, result.labels, clips,
                                 [self.feats[c.path] for c in clips])
            out[name] = scores.ua
        self.log(f"    ours  ({result.seconds:.0f} s): "
                 + ", ".join(f"{k} {v:.1%}" for k, v in out.items()))
        return out

    def peer(self, cfg: TrainConfig, train_clips, tests: dict[str, list]) -> dict[str, float]:
        from edge_ser_train.peer_egemaps import evaluate_peer

        cache = Path(cfg.data.cache_dir).parent / "egemaps"
        out = {name: evaluate_peer(train_clips, clips, cfg.data.labels, cache).ua
               for name, clips in tests.items()}
        self.log("    peer: " + ", ".join(f"{k} {v:.1%}" for k, v in out.items()))
        return out


def run(args) -> dict:
    exp = Experiment(args.data, args.config, args.set, print)
    rows: dict[str, dict[str, list[float]]] = {}

    def add(table: str, key: str, system: str, value: float) -> None:
        rows.setdefault(table, {}).setdefault(f"{key}|{system}", []).append(value)

    systems = [("ours", exp.ours)] + ([] if args.no_peer else [("peer", exp.peer)])
    for seed in args.seeds:
        print(f"== seed {seed}")
        for source in CORPORA if "matrix" in args.tables else ():
            cfg = exp.config(seed, (source,))
            tr, te = speaker_split(exp.clips[source], 0.2, seed)
            tests = {t: (te if t == source else exp.clips[t]) for t in CORPORA}
            print(f"  from {source}: {len(tr)} train clips, {len(te)} held out")
            for system, fn in systems:
                for target, ua in fn(cfg, tr, tests).items():
                    add("matrix", f"{source}->{target}", system, ua)
        if "multilingual" not in args.tables:
            continue
        cfg = exp.config(seed, CORPORA)
        tr, te = speaker_split([c for k in CORPORA for c in exp.clips[k]], 0.2, seed)
        tests = {k: [c for c in te if c.corpus == k] for k in CORPORA}
        print(f"  multilingual: {len(tr)} train / {len(te)} test clips")
        for system, fn in systems:
            for k, ua in fn(cfg, tr, tests).items():
                add("multilingual", k, system, ua)
    return rows


def stat(values: list[float]) -> str:
    v = 100 * np.asarray(values)
    return f"{v.mean():.1f} ± {v.std():.1f}" if len(v) > 1 else f"{v.mean():.1f}"


CALLS_SECTION = ROOT / "docs" / "results_calls.md"
"""The batch's segment-level accuracy on generated calls (tools/make_calls.py, scored by
tools/score_calls.py), included as the last section of the results."""


ADAPTATION_POINTER = (
    "The cross-corpus cells are source-only: the target language is never heard. Adapting to "
    "it from its unlabelled audio (source-only, DANN and NNPM side by side with the peer, for "
    "every source -> target pair and leave-one-language-out, 3 seeds) is measured in "
    "[adaptation.md](adaptation.md), regenerated by `python "
    "tools/make_adaptation_results.py --data ../shared/data --ablations`.")
"""Where the adaptation table lives: its own report, because it takes hours to regenerate."""


def with_calls_section(text: str) -> str:
    if not CALLS_SECTION.is_file():
        return text
    return text.rstrip("\n") + "\n\n" + CALLS_SECTION.read_text(encoding="utf-8").strip() + "\n"


def render(rows: dict, args, seconds: float, commit: str | None = None) -> str:
    """The markdown report; `commit` is the code the figures were measured with."""
    cmd = "python tools/make_results.py " + " ".join(args.argv)
    lines = [
        "# Results",
        "",
        f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by `{cmd}` "
        f"(measured at commit {(commit or git_commit())[:10]}, {seconds / 60:.0f} min on "
        "this machine's CPU).",
        "",
        "UA = unweighted accuracy (mean per-class recall), 4 classes (angry, happy, neutral, "
        "sad), chance 25%. Every split is speaker-independent. Figures are mean ± standard "
        f"deviation over seeds {', '.join(map(str, args.seeds))}; a seed sets the speaker "
        "split and the model's initialisation. *Ours* is the default recipe "
        f"(`{args.config.relative_to(ROOT) if args.config.is_absolute() else args.config}`) "
        "retrained for each cell; the *peer* is openSMILE eGeMAPSv02 functionals + logistic "
        "regression on the same clips. The EMO-DB copy is cut to 2 s (see the corpus' "
        "SOURCE.md), so its numbers are not comparable to published ones.",
        "",
    ]
    m = rows["matrix"]
    lines += ["## In-domain: train on 80% of one corpus' speakers, score the other 20%", "",
              "| corpus | ours UA % | peer UA % |", "|---|---|---|"]
    for corpus in CORPORA:
        key = f"{corpus}->{corpus}"
        lines.append(f"| {corpus} | {stat(m[f'{key}|ours'])} | {stat(m[f'{key}|peer'])} |")
    lines += ["", "## Multilingual: train on 80% of the speakers of all three corpora, score each "
              "corpus' held-out 20%", "", "| corpus | ours UA % | peer UA % |", "|---|---|---|"]
    for corpus in CORPORA:
        r = rows["multilingual"]
        lines.append(f"| {corpus} | {stat(r[f'{corpus}|ours'])} | {stat(r[f'{corpus}|peer'])} |")
    lines += ["", "## The 3x3 matrix: rows train, columns test (ours / peer, UA %)", "",
              "Rows are trained on 80% of the source corpus' speakers. The diagonal scores that "
              "corpus' held-out speakers (in-domain); the other cells score every labelled clip "
              "of the target corpus, which the model never heard (cross-corpus, source only).",
              "", "| train \\ test | " + " | ".join(CORPORA) + " |",
              "|---" * (len(CORPORA) + 1) + "|"]
    ours_cross, peer_cross = [], []
    for source in CORPORA:
        cells = []
        for target in CORPORA:
            key = f"{source}->{target}"
            o, p = m[f"{key}|ours"], m[f"{key}|peer"]
            cells.append(f"{stat(o)} / {stat(p)}")
            if source != target:
                ours_cross.append(np.mean(o))
                peer_cross.append(np.mean(p))
        lines.append(f"| {source} | " + " | ".join(cells) + " |")
    lines += ["", f"Cross-corpus mean over the 6 off-diagonal pairs: **ours "
              f"{100 * np.mean(ours_cross):.1f}%**, peer {100 * np.mean(peer_cross):.1f}% "
              "(chance 25%).", "", ADAPTATION_POINTER, ""]
    emodb = 100 * np.mean(m["emodb->emodb|ours"])
    cross_ok = np.mean(ours_cross) > np.mean(peer_cross)
    lines += ["## Against the targets", "",
              "| target | measured | met |", "|---|---|---|",
              f"| in-domain EMO-DB UA >= 85% | {emodb:.1f}% | {'yes' if emodb >= 85 else 'no'} |",
              f"| cross-corpus mean above the peer | {100 * np.mean(ours_cross):.1f}% vs "
              f"{100 * np.mean(peer_cross):.1f}% | {'yes' if cross_ok else 'no'} |", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results.md")
    parser.add_argument("--config", type=Path, default=ROOT / "configs/train/default.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--set", action="append", default=[], help="config override")
    parser.add_argument("--tables", nargs="+", default=["matrix", "multilingual"],
                        choices=["matrix", "multilingual"], help="which experiments to run")
    parser.add_argument("--no-peer", action="store_true", help="skip the eGeMAPS peer")
    parser.add_argument("--render-only", action="store_true",
                        help="rewrite the markdown from the .json beside --out, training nothing")
    args = parser.parse_args()
    args.argv = sys.argv[1:]
    if args.render_only:
        saved = json.loads(args.out.with_suffix(".json").read_text())
        args.argv, args.seeds = saved["argv"], saved["seeds"]
        write_text_atomic(args.out, with_calls_section(render(saved["rows"], args,
                                                              saved["seconds"],
                                                              saved["commit"])))
        print(f"wrote {args.out}")
        return
    started = time.perf_counter()
    rows = run(args)
    seconds = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if set(args.tables) == {"matrix", "multilingual"} and not args.no_peer:
        write_text_atomic(args.out, with_calls_section(render(rows, args, seconds)))
    write_text_atomic(args.out.with_suffix(".json"), json.dumps(
        {"argv": args.argv, "seeds": args.seeds, "seconds": seconds, "commit": git_commit(),
         "rows": rows}, indent=1))
    print(json.dumps(summarise(rows), indent=1))
    print(f"wrote {args.out.with_suffix('.json')} in {seconds / 60:.0f} min")


def summarise(rows: dict) -> dict:
    """Mean UA per cell, and the cross-corpus mean, for quick comparisons of recipes."""
    out = {table: {k: round(100 * float(np.mean(v)), 1) for k, v in cells.items()}
           for table, cells in rows.items()}
    if "matrix" in rows:
        cross = [np.mean(v) for k, v in rows["matrix"].items()
                 if k.endswith("|ours") and k.split("->")[0] != k.split("->")[1].split("|")[0]]
        out["cross_mean_ours"] = round(100 * float(np.mean(cross)), 1)
    return out


if __name__ == "__main__":
    main()
