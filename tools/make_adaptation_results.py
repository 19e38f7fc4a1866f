"""Regenerate docs/adaptation_results.md: unsupervised cross-lingual adaptation, every pair.

Settings: every source -> target pair of the shared corpora (6) and leave-one-language-out (two
corpora as sources, the third as target: 3). Per setting and seed:
- the target's speakers are split 80/20 (`speaker_split`, seeded). The 80% are the unlabelled
  adaptation set: all their clips, including those without a 4-class label, enter adaptation
  without labels. Scores: UA and WA on the labelled clips of that set (the recordings adapted
  to) and UA on the 20% speakers no method ever heard ("unseen").
- systems, all trained from scratch with `configs/adapt/table.yaml` on every labelled clip of
  the sources: source-only; source-only with batch-norm statistics re-estimated on the target;
  DANN (separate and mixed batch-norm batches); NNPM; the eGeMAPS peer.
- with --ablations, NNPM variants on the 6 single-source pairs (docs/nnpm.md).

    python tools/make_adaptation_results.py --data ../shared/data [--seeds 0 1 2] [--ablations]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge_ser.atomic_write import write_text_atomic  # noqa: E402
from edge_ser.config import load_config  # noqa: E402
from edge_ser.metrics import score  # noqa: E402
from train.adapt import AdaptData, adapt, predict, reestimate_bn_statistics  # noqa: E402
from train.adapt_config import AdaptConfig  # noqa: E402
from train.corpus import labelled, read_corpus, speaker_split  # noqa: E402
from train.run import git_commit  # noqa: E402
from train.views import load_views  # noqa: E402

CORPORA = ("emodb", "urdu", "turev")
PAIRS = tuple(((s,), t) for s in CORPORA for t in CORPORA if s != t)
LOLO = tuple((tuple(c for c in CORPORA if c != t), t) for t in CORPORA)
SETTINGS = PAIRS + LOLO
SYSTEMS = {  # name -> (config overrides, column title)
    "source": (["method=source", "target_bn_stats=false"], "source-only"),
    "dann": (["method=dann", "batchnorm=separate"], "DANN (separate BN)"),
    "dann_mixed": (["method=dann", "batchnorm=mixed", "target_bn_stats=false"],
                   "DANN (mixed BN)"),
    "nnpm": (["method=nnpm"], "NNPM"),
}
DERIVED = {"source_bn": "source-only + target BN", "peer": "eGeMAPS peer"}
SYSTEM_NOTES = (
    "*source-only*: the supervised recipe on the sources; *source-only + target BN*: the same "
    "model with its batch-norm statistics re-estimated on the unlabelled target; *DANN (separate "
    "BN)*: source and target batches normalised apart, target statistics at test time; *DANN "
    "(mixed BN)*: one batch of both, the mixed running statistics at test time; *NNPM*: "
    "`docs/nnpm.md`; *eGeMAPS peer*: openSMILE eGeMAPSv02 functionals + logistic regression on "
    "the same source clips.")
ABLATIONS = {  # NNPM variants: name -> (overrides, description)
    "no_memory_loss": (["nnpm.memory_weight=0"], "memory loss off"),
    "single": (["nnpm.pseudo_label=single"], "single pseudo-label"),
    "no_memory_target": (["nnpm.memory_target_weight=0"], "no multilabel loss on the memory"),
    "k3": (["nnpm.k=3"], "k = 3"),
    "k30": (["nnpm.k=30"], "k = 30"),
    "tau0.02": (["nnpm.temperature=0.02"], "temperature 0.02"),
    "tau0.2": (["nnpm.temperature=0.2"], "temperature 0.2"),
    "mixed_bn": (["batchnorm=mixed", "target_bn_stats=false"], "mixed batch-norm batches"),
}


def name_of(setting) -> str:
    sources, target = setting
    return f"{'+'.join(sources)}->{target}"


class Experiment:
    def __init__(self, args, log=print):
        self.args = args
        self.log = log
        self.base = load_config(AdaptConfig, args.config, args.set)
        self.labels = self.base.source.labels
        self.clips = {c: read_corpus(args.data / c) for c in CORPORA}
        self.views = {}
        for corpus, clips in self.clips.items():
            started = time.perf_counter()
            views = load_views(clips, self.base.augment.views, self.base.augment,
                               self.base.source.max_clip_s, self.base.source.cache_dir,
                               workers=self.base.optim.threads)
            self.views.update({c.path: v for c, v in zip(clips, views)})
            log(f"{corpus}: {len(clips)} clips ready ({time.perf_counter() - started:.0f} s)")

    def config(self, seed: int, overrides: list[str]) -> AdaptConfig:
        return load_config(AdaptConfig, self.args.config,
                           self.args.set + overrides + [f"optim.seed={seed}"])

    def run_setting(self, setting, seed: int, systems: dict) -> dict[str, dict[str, float]]:
        sources, target = setting
        source_clips = [c for s in sources for c in labelled(self.clips[s], self.labels)]
        adapt_clips, unseen = speaker_split(self.clips[target], 0.2, seed)
        scored = {"adapt": labelled(adapt_clips, self.labels),
                  "unseen": labelled(unseen, self.labels)}
        data = AdaptData.from_clips(self.labels, source_clips,
                                    [self.views[c.path] for c in source_clips],
                                    [self.views[c.path] for c in adapt_clips])
        out = {}
        for name, overrides in systems.items():
            if name == "peer":
                out[name] = self.peer(source_clips, scored)
                continue
            result = adapt(self.config(seed, overrides), data, log=lambda _: None)
            out[name] = self.score(result.model, scored)
            if name == "source" and "source_bn" in self.args.systems:
                reestimate_bn_statistics(result.model, [v[0] for v in data.target_views])
                out["source_bn"] = self.score(result.model, scored)
            self.log(f"    {name:<18} ({result.seconds:4.0f} s) " + self.fmt(out[name]))
        if "source_bn" in out:
            self.log(f"    {'source_bn':<18}        " + self.fmt(out["source_bn"]))
        return out

    def score(self, model, scored: dict) -> dict[str, float]:
        result = {}
        for part, clips in scored.items():
            references = np.array([self.labels.index(c.label) for c in clips])
            s = score(references, predict(model, [self.views[c.path][0] for c in clips]),
                      self.labels)
            result.update({f"{part}_ua": s.ua, f"{part}_wa": s.wa})
        return result

    def peer(self, source_clips, scored: dict) -> dict[str, float]:
        from train.peer_egemaps import evaluate_peer

        cache = Path(self.base.source.cache_dir).parent / "egemaps"
        result = {}
        for part, clips in scored.items():
            s = evaluate_peer(source_clips, clips, self.labels, cache)
            result.update({f"{part}_ua": s.ua, f"{part}_wa": s.wa})
        self.log(f"    {'peer':<18}        " + self.fmt(result))
        return result

    @staticmethod
    def fmt(r: dict[str, float]) -> str:
        return (f"UA {r['adapt_ua']:.1%}  WA {r['adapt_wa']:.1%}  unseen-speaker UA "
                f"{r['unseen_ua']:.1%}")


def run(args) -> dict:
    exp = Experiment(args)
    results: dict = {"main": {}, "ablations": {}}
    main_systems = {n: SYSTEMS[n][0] for n in args.systems if n in SYSTEMS}
    if "peer" in args.systems:
        main_systems["peer"] = None
    settings = [s for s in SETTINGS if not args.only or name_of(s) in args.only]
    for seed in args.seeds:
        for setting in settings:
            exp.log(f"== seed {seed}: {name_of(setting)}")
            for system, r in exp.run_setting(setting, seed, main_systems).items():
                results["main"].setdefault(name_of(setting), {}).setdefault(system, []).append(r)
            save_partial(args, results)
        if not args.ablations:
            continue
        for setting in (s for s in settings if s in PAIRS):
            exp.log(f"== seed {seed}: {name_of(setting)}, NNPM ablations")
            variants = {n: SYSTEMS["nnpm"][0] + o for n, (o, _) in ABLATIONS.items()}
            for system, r in exp.run_setting(setting, seed, variants).items():
                results["ablations"].setdefault(name_of(setting), {}).setdefault(
                    system, []).append(r)
            save_partial(args, results)
    return results


def save_partial(args, results: dict) -> None:
    """The raw numbers so far (a long run that stops keeps what it measured)."""
    write_text_atomic(args.out.with_suffix(".json"), json.dumps(results, indent=1))


def stat(values: list[float]) -> str:
    v = 100 * np.asarray(values)
    return f"{v.mean():.1f} ± {v.std():.1f}" if len(v) > 1 else f"{v.mean():.1f}"


def mean_over(table: dict, system: str, key: str, settings) -> float:
    return float(np.mean([np.mean([r[key] for r in table[name_of(s)][system]])
                          for s in settings]))


def render(results: dict, args, seconds: float) -> str:
    names = {**{k: d for k, (_, d) in SYSTEMS.items()}, **DERIVED}
    main = results["main"]
    systems = [s for s in ("source", "source_bn", "dann", "dann_mixed", "nnpm", "peer")
               if s in args.systems]
    settings = [s for s in SETTINGS if name_of(s) in main]
    cmd = "python tools/make_adaptation_results.py " + " ".join(args.argv)
    lines = [
        "# Unsupervised cross-lingual adaptation",
        "",
        f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by `{cmd}` (commit "
        f"{git_commit()[:10]}, {seconds / 3600:.1f} h on this machine's CPU).",
        "",
        "Every model is trained from scratch on all labelled clips of the source corpora "
        f"(`{args.config.name}`); the target's labels are never used in training. For each seed "
        "the target's speakers are split 80/20: the 80% are the unlabelled adaptation set (all "
        "their clips, also those without a 4-class label), scored by UA and WA on its "
        "labelled clips; *unseen UA* scores the other 20% speakers, heard by no system. "
        f"Figures are mean ± standard deviation over seeds {', '.join(map(str, args.seeds))} "
        "(a seed sets the target split and the initialisation), in %. 4 classes, chance 25%. "
        "The EMO-DB copy is cut to 2 s, so its numbers are not comparable to published ones.",
        "",
        SYSTEM_NOTES,
        "",
        "## Target UA (adaptation set)",
        "",
        "| setting | " + " | ".join(names[s] for s in systems) + " |",
        "|---" * (len(systems) + 1) + "|",
    ]
    for metric, title in (("adapt_ua", None), ("adapt_wa", "Target WA (adaptation set)"),
                          ("unseen_ua", "Target UA, unseen target speakers")):
        if title:
            lines += ["", f"## {title}", "",
                      "| setting | " + " | ".join(names[s] for s in systems) + " |",
                      "|---" * (len(systems) + 1) + "|"]
        for setting in settings:
            cells = [stat([r[metric] for r in main[name_of(setting)][s]]) for s in systems]
            lines.append(f"| {name_of(setting)} | " + " | ".join(cells) + " |")
        for group, members in (("mean of the 6 pairs", PAIRS), ("mean of the 3 LOLO", LOLO),
                               ("mean of all", SETTINGS)):
            members = [m for m in members if name_of(m) in main]
            if members:
                cells = [f"{100 * mean_over(main, s, metric, members):.1f}" for s in systems]
                lines.append(f"| **{group}** | " + " | ".join(cells) + " |")
    if {"nnpm", "source", "dann"} <= set(systems):
        gain_src = 100 * (mean_over(main, "nnpm", "adapt_ua", settings)
                          - mean_over(main, "source", "adapt_ua", settings))
        gain_dann = 100 * (mean_over(main, "nnpm", "adapt_ua", settings)
                           - mean_over(main, "dann", "adapt_ua", settings))
        lines += ["", f"NNPM's mean target UA over the {len(settings)} settings is "
                  f"{gain_src:+.1f} points from source-only and {gain_dann:+.1f} from DANN "
                  "(separate BN); the aim is at least +5 over both."]
    ablations = results.get("ablations") or {}
    if ablations:
        pairs = [p for p in PAIRS if name_of(p) in ablations]
        lines += ["", "## NNPM ablations (target UA, adaptation set, the 6 pairs)", "",
                  "Each row changes one setting of NNPM; the first row is NNPM as configured.",
                  "", "| variant | " + " | ".join(name_of(p) for p in pairs) + " | mean |",
                  "|---" * (len(pairs) + 2) + "|"]
        rows = [("nnpm", "NNPM", main)] + [(n, d, ablations) for n, (_, d) in ABLATIONS.items()]
        for key, title, table in rows:
            if not all(key in table.get(name_of(p), {}) for p in pairs):
                continue
            cells = [stat([r["adapt_ua"] for r in table[name_of(p)][key]]) for p in pairs]
            mean = 100 * mean_over(table, key, "adapt_ua", pairs)
            lines.append(f"| {title} | " + " | ".join(cells) + f" | {mean:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "adaptation_results.md")
    parser.add_argument("--config", type=Path, default=ROOT / "configs/adapt/table.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--systems", nargs="+", default=[*SYSTEMS, *DERIVED],
                        choices=[*SYSTEMS, *DERIVED])
    parser.add_argument("--only", nargs="+", default=[], metavar="SETTING",
                        help="run only these settings, e.g. emodb->urdu emodb+turev->urdu")
    parser.add_argument("--ablations", action="store_true",
                        help="also run the NNPM ablations on the 6 single-source pairs")
    parser.add_argument("--set", action="append", default=[], help="config override")
    args = parser.parse_args()
    args.argv = sys.argv[1:]
    unknown = [s for s in args.only if s not in {name_of(x) for x in SETTINGS}]
    if unknown:
        parser.error(f"unknown setting {unknown[0]!r}; one of "
                     + ", ".join(name_of(s) for s in SETTINGS))
    started = time.perf_counter()
    results = run(args)
    seconds = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_partial(args, results)
    write_text_atomic(args.out, render(results, args, seconds))
    print(f"wrote {args.out} in {seconds / 60:.0f} min")


if __name__ == "__main__":
    main()
