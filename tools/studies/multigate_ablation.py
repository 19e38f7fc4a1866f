"""Ablation of the multi-gating model (docs/multigate.md) in its paper's setting: one model trained
on the training speakers of the protocol's selection corpora together, each language with its own
gate and head, scored on every corpus' held-out speakers through its language's route and through
the shared route (the one a language without a gate takes).

Each variant changes one part of the recipe (`model.family=multigate`, 10 epochs, the default
config otherwise):

- `full`: the recipe as shipped;
- `no_mfcc`, `no_prosody`, `no_ge2e`: one stream left out; `tcn_only`: our encoder's stream alone;
- `shared_gate`: one gate and one head for every language (every training clip takes the shared
  route, `language_dropout=1`), so only the shared route is scored;
- `no_contrastive`: the centroid loss off (`contrastive_weight=0`);
- `searched_heads`: each language's head from the evolutionary search (`multigate/search.py`).
  Nested, so the held-out speakers choose nothing: the full recipe is trained on 75% of the
  training speakers, the heads are searched on the other 25%, and the model is then trained on
  all training speakers with the heads found. Its cost (the extra training and the search) is
  recorded.

Only the selection corpora take part, so no confirmation corpus sees any of this. Each (variant,
seed) is one JSON file in --runs, written when measured, so a run can be stopped and resumed;
--render writes the table from whatever cells are there.

    python -m tools.studies.multigate_ablation --data ../shared/data --runs runs/study/mg_ablation \
        --seeds 0 --threads 1 --out docs/history/multigate_ablation.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from edge_ser.atomic_write import write_text_atomic
from edge_ser.config import load_config
from edge_ser.metrics import score
from tools.protocol import PROTOCOL, ROOT, load_protocol

RECIPE = ("model.family=multigate", "optim.epochs=10")
"""What every variant shares: the recipe the `accurate` package was trained with."""

VARIANTS = {
    "full": (),
    "no_mfcc": ("model.multigate.streams=[tcn, prosody, ge2e]",),
    "no_prosody": ("model.multigate.streams=[tcn, mfcc, ge2e]",),
    "no_ge2e": ("model.multigate.streams=[tcn, mfcc, prosody]",),
    "tcn_only": ("model.multigate.streams=[tcn]",),
    "shared_gate": ("model.multigate.language_dropout=1.0",),
    "no_contrastive": ("model.multigate.contrastive_weight=0.0",),
    "searched_heads": (),
}

SEARCH_FRACTION = 0.25
"""Share of the training speakers the nested head search scores on."""


class Study:
    """`corpora` default to the protocol's selection corpora; `extra` overrides apply to every
    variant (`--set`)."""

    def __init__(self, data: Path, runs: Path, base_config: Path, threads: int,
                 corpora: tuple[str, ...] | None = None, extra: tuple[str, ...] = (), log=print):
        from edge_ser_train.corpus import labelled, read_corpus

        self.data, self.runs, self.base_config = data, runs, base_config
        self.threads, self.extra, self.log = threads, tuple(extra), log
        self.corpora = corpora or load_protocol(PROTOCOL).selection
        labels = self.config(0, ()).data.labels
        self.clips = [c for name in self.corpora
                      for c in labelled(read_corpus(data / name), labels)]

    def config(self, seed: int, overrides: tuple[str, ...]):
        from edge_ser_train.config import TrainConfig

        paths = "[" + ", ".join(str(self.data / c) for c in self.corpora) + "]"
        return load_config(TrainConfig, self.base_config,
                           [*RECIPE, *self.extra, *overrides, f"optim.seed={seed}",
                            f"data.corpora={paths}", f"optim.threads={self.threads}"])

    def measure(self, variant: str, seed: int, argv: list[str]) -> dict:
        from edge_ser_train.corpus import speaker_split
        from edge_ser_train.run import git_commit
        from edge_ser_train.trainer import train

        path = self.runs / f"{variant}-s{seed}.json"
        overrides = VARIANTS[variant]
        if path.is_file():
            saved = json.loads(path.read_text(encoding="utf-8"))
            if saved["overrides"][:len(RECIPE + self.extra + overrides)] != \
                    list(RECIPE + self.extra + overrides):
                raise SystemExit(f"{path}: measured with other settings; use another --runs")
            return saved
        protocol = load_protocol(PROTOCOL)
        train_clips, test_clips = speaker_split(self.clips, protocol.test_fraction, seed)
        started = time.perf_counter()
        record: dict = {"variant": variant, "seed": seed,
                        "overrides": list(RECIPE + self.extra + overrides),
                        "corpora": list(self.corpora), "train_clips": len(train_clips)}
        if variant == "searched_heads":
            search = self.search_heads(train_clips, seed)
            record["search"] = search
            overrides = overrides + (
                "model.multigate.language_heads=[" + ", ".join(
                    f"{lang}={r['best']}" for lang, r in search["languages"].items()) + "]",)
            record["overrides"] = list(RECIPE + self.extra + overrides)
        cfg = self.config(seed, overrides)
        model = train(cfg, train_clips, lambda _msg: None).model
        routes = ("shared",) if cfg.model.multigate.language_dropout >= 1.0 else \
            ("language", "shared")
        record["scores"] = self.score_routes(model, cfg.data.labels, test_clips, routes)
        record["seconds"] = round(time.perf_counter() - started, 1)
        record["argv"] = argv
        record["commit"] = git_commit()
        self.runs.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(record, indent=1))
        means = {r: np.mean([s[r]["ua"] for s in record["scores"].values()]) for r in routes}
        self.log(f"  {variant} seed {seed}: " + ", ".join(
            f"{r} route mean UA {m:.1%}" for r, m in means.items())
            + f" ({record['seconds']:.0f} s)")
        return record

    def search_heads(self, train_clips: list, seed: int) -> dict:
        """Train the full recipe on part of the training speakers, search each language's head on
        the rest; the chosen specs and the cost."""
        from edge_ser_train.corpus import speaker_split
        from edge_ser_train.multigate.search import corpus_task, evolve
        from edge_ser_train.trainer import train

        started = time.perf_counter()
        inner_train, inner_val = speaker_split(train_clips, SEARCH_FRACTION, seed)
        cfg = self.config(seed, ())
        model = train(cfg, inner_train, lambda _msg: None).model
        trained = time.perf_counter() - started
        result: dict = {"train_seconds": round(trained, 1), "languages": {}}
        for corpus in self.corpora:
            language, task = corpus_task(model, cfg.data.labels, corpus, inner_train, inner_val,
                                         self.log)
            found = evolve(task, seed=seed)
            result["languages"][language] = {"corpus": corpus, **found.summary()}
        result["seconds_total"] = round(time.perf_counter() - started, 1)
        return result

    def score_routes(self, model, labels: tuple[str, ...], test_clips: list,
                     routes: tuple[str, ...]) -> dict:
        from edge_ser_train.evaluate import clip_features
        from edge_ser_train.trainer import predict_logits

        out = {}
        for corpus in self.corpora:
            feats, kept = clip_features([c for c in test_clips if c.corpus == corpus], self.log)
            references = np.array([labels.index(c.label) for c in kept], dtype=np.int64)
            out[corpus] = {}
            for route in routes:
                languages = [c.language for c in kept] if route == "language" else None
                predicted = predict_logits(model, feats, languages=languages).argmax(1)
                out[corpus][route] = score(references, predicted, labels).to_dict()
        return out


def render(runs: Path, corpora: tuple[str, ...]) -> str:
    """The markdown table of every measured cell: UA % per corpus through the clip's own
    language route and through the shared route, each route's mean over the corpora (mean ± sd
    over seeds where several), and its difference from `full` on the same seeds."""
    cells: dict = {}
    for path in sorted(runs.glob("*-s*.json")):
        rec = json.loads(path.read_text(encoding="utf-8"))
        cells.setdefault(rec["variant"], {})[rec["seed"]] = rec

    def by_seed(variant: str, route: str, corpus: str | None = None) -> dict[int, float]:
        """seed -> UA % (of `corpus`, else the mean over the corpora) through `route`."""
        names = [corpus] if corpus else list(corpora)
        return {seed: 100 * float(np.mean([rec["scores"][c][route]["ua"] for c in names]))
                for seed, rec in cells.get(variant, {}).items()
                if all(route in rec["scores"][c] for c in names)}

    def mean_over(variant: str, route: str, corpus: str | None = None) -> list[float]:
        return list(by_seed(variant, route, corpus).values())

    def versus_full(variant: str, route: str) -> str:
        """The mean over the seeds both have of (variant - full), seed by seed, and each."""
        ours, full = by_seed(variant, route), by_seed("full", route)
        paired = [ours[s] - full[s] for s in sorted(ours) if s in full]
        if not paired or variant == "full":
            return ""
        each = f" ({' / '.join(f'{d:+.1f}' for d in paired)})" if len(paired) > 1 else ""
        return f"{np.mean(paired):+.1f}{each}"

    def fmt(values: list[float]) -> str:
        if not values:
            return "—"
        return f"{np.mean(values):.1f} ± {np.std(values, ddof=1):.1f}" if len(values) > 1 \
            else f"{values[0]:.1f}"

    header = ["variant", "seeds"]
    for route in ("own", "shared"):
        header += [f"{c} ({route})" for c in corpora] + [f"mean ({route})", "vs full"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for variant in VARIANTS:
        if variant not in cells:
            continue
        row = [variant, ",".join(str(s) for s in sorted(cells[variant]))]
        for route in ("language", "shared"):
            row += [fmt(mean_over(variant, route, c)) for c in corpora]
            values = mean_over(variant, route)
            row.append(fmt(values))
            row.append(versus_full(variant, route))
        lines.append("| " + " | ".join(row) + " |")
    searched = [rec["search"] for rec in cells.get("searched_heads", {}).values()]
    notes = []
    for i, search in enumerate(searched):
        heads = ", ".join(f"{lang}={r['best']} (UA {100 * r['ua']:.1f} from "
                          f"{100 * r['start_ua']:.1f}, {r['evaluations']} heads, "
                          f"{r['seconds']:.0f} s)" for lang, r in search["languages"].items())
        notes.append(f"- searched heads, seed {sorted(cells['searched_heads'])[i]}: {heads}; "
                     f"search cost {search['seconds_total']:.0f} s in all, of which "
                     f"{search['train_seconds']:.0f} s the nested training.")
    intro = (
        "# Multigate ablation, selection corpora trained together\n\n"
        f"UA % on the held-out speakers of {', '.join(corpora)} (the protocol's in-domain split), "
        "one model per variant and seed trained on the other speakers of all of them; *own*: "
        "each clip through its language's gate and head, *shared*: through the shared ones "
        "(what an unseen language gets); *vs full*: the difference from `full`, seed by seed, "
        "averaged over the seeds both have (each seed's in brackets). Written by "
        "`python -m tools.studies.multigate_ablation` (its docstring says what each variant "
        "changes) from one JSON file per cell in its `--runs` folder (the committed ones: "
        "`docs/history/multigate_ablation/`).\n\n")
    return intro + "\n".join(lines) + ("\n\n" + "\n".join(notes) if notes else "") + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "study" / "mg_ablation")
    parser.add_argument("--config", type=Path, default=ROOT / "configs/train/default.yaml")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", action="append", default=[],
                        help="training config override applied to every variant")
    parser.add_argument("--out", type=Path, help="write the rendered table here")
    parser.add_argument("--render", action="store_true", help="only render --out from --runs")
    args = parser.parse_args(argv)
    corpora = load_protocol(PROTOCOL).selection
    if not args.render:
        import torch

        torch.set_num_threads(args.threads)
        study = Study(args.data, args.runs, args.config, args.threads, extra=tuple(args.set))
        for seed in args.seeds:
            for variant in args.variants:
                study.measure(variant, seed, ["tools/studies/multigate_ablation.py", *argv])
    text = render(args.runs, corpora)
    if args.out:
        write_text_atomic(args.out, text)
        print(f"wrote {args.out}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
