"""Regenerate the adaptation table: unsupervised cross-lingual adaptation, every pair.

docs/adaptation.md holds the current table.

Settings: every source -> target pair of the shared corpora (6) and leave-one-language-out (two
corpora as sources, the third as target: 3). Per seed:
- per set of source corpora, one source-only model is trained from scratch on all their
  labelled clips (`SOURCE_TRAINING` below on top of `configs/adapt/table.yaml`);
- per setting, the target's speakers are split 80/20 (`speaker_split`, seeded). The 80% are the
  unlabelled adaptation set: all their clips, including those without a 4-class label, enter
  adaptation without labels. Scores: UA and WA on the labelled clips of that set (the
  recordings adapted to) and UA on the 20% speakers no method ever heard ("unseen");
- every adaptation method starts from that setting's source-only model and trains the same
  number of steps (`configs/adapt/table.yaml`): DANN (separate and mixed batch-norm batches),
  NNPM, and NNPM without source audio (the source model's memory bank as the memory, as
  `edge-ser adapt` without --source does). Also scored: the source-only model, the same with
  batch-norm statistics re-estimated on the target, and the eGeMAPS peer;
- with --ablations, NNPM variants on the 6 single-source pairs (docs/adaptation.md).

The experiment is `configs/adapt/table.yaml` (every cell's base) and the named override sets
on top of it below: `SOURCE_TRAINING`, `SYSTEMS` (the columns) and `VARIANTS` (the NNPM
ablations and candidates). The tools beside this one reuse its models and splits.

    python tools/make_adaptation_results.py --data ../shared/data [--seeds 0 1 2] [--ablations]

Seeds can run in separate processes (`--seeds 0 --raw a.json`, `--seeds 1 --raw b.json`) and be
rendered together: `--render a.json b.json`.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import json
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from edge_ser.atomic_write import write_text_atomic
from edge_ser.config import apply_overrides, from_dict, load_config, to_dict
from edge_ser.contract import N_MELS
from edge_ser.metrics import score
from edge_ser_export.config import MemoryBankConfig
from edge_ser_export.memory_bank import build_memory_bank, clip_embeddings
from edge_ser_train.adapt import AdaptData, adapt, target_pseudo_labels
from edge_ser_train.adapt_config import AdaptConfig
from edge_ser_train.corpus import labelled, read_corpus, speaker_split
from edge_ser_train.inference import embed_domain, predict, reestimate_bn_statistics
from edge_ser_train.memory import SourceMemory
from edge_ser_train.model import EmotionModel
from edge_ser_train.run import UNCOMMITTED, git_commit
from edge_ser_train.views import load_views

ROOT = Path(__file__).resolve().parent.parent
CORPORA = ("emodb", "urdu", "turev")
PAIRS = tuple(((s,), t) for s in CORPORA for t in CORPORA if s != t)
LOLO = tuple((tuple(c for c in CORPORA if c != t), t) for t in CORPORA)
SETTINGS = PAIRS + LOLO
SOURCE_TRAINING = ["method=source", "target_bn_stats=false", "optim.epochs=20",
                   "optim.lr=0.003", "optim.warmup_epochs=2"]
"""The source-only model: the supervised recipe's rate and warm-up, 20 epochs of one pass over
the sources each (the command-line training uses 30; 20 keeps the table to about an hour)."""
SYSTEMS = {  # name -> (config overrides, column title); each starts from the source model
    "dann": (["method=dann", "batchnorm=separate"], "DANN (separate BN)"),
    "dann_mixed": (["method=dann", "batchnorm=mixed", "target_bn_stats=false"],
                   "DANN (mixed BN)"),
    "dann_lr0.003": (["method=dann", "batchnorm=separate", "optim.lr=0.003"],
                     "DANN (separate BN), lr 3e-3"),
    "nnpm": (["method=nnpm"], "NNPM"),
    "nnpm_sf": (["method=nnpm"], "NNPM, no source audio"),
}
DERIVED = {"source": "source-only", "source_bn": "source-only + target BN",
           "peer": "eGeMAPS peer"}
COLUMNS = ("source", "source_bn", "dann", "dann_mixed", "dann_lr0.003", "nnpm", "nnpm_sf",
           "peer")
DEFAULT_SYSTEMS = [c for c in COLUMNS if c != "dann_lr0.003"]
"""What a run measures unless told: `dann_lr0.003` is DANN at the rate the table now uses for
every method, so it stays only to render the runs measured when the table used 1e-3."""
SYSTEM_NOTES = (
    "*source-only*: the supervised recipe on the sources; *source-only + target BN*: the same "
    "model with its batch-norm statistics re-estimated on the unlabelled target; *DANN (separate "
    "BN)*: source and target batches normalised apart, target statistics at test time; *DANN "
    "(mixed BN)*: one batch of both, the mixed running statistics at test time; *NNPM*: "
    "`docs/adaptation.md`; *NNPM, no source audio*: NNPM whose memory is the source model's memory "
    "bank (4 centroids per class, as a model package ships), with no source loss, as "
    "`edge-ser adapt` runs without `--source`; *eGeMAPS peer*: openSMILE eGeMAPSv02 "
    "functionals + logistic regression on the same source clips.")
ABLATIONS = {  # one change to NNPM as configured: name -> (overrides, description)
    "no_memory_loss": (["nnpm.memory_weight=0"], "memory loss off"),
    "single": (["nnpm.pseudo_label=single"], "single pseudo-label"),
    "k3": (["nnpm.k=3"], "k = 3"),
    "tau0.05": (["nnpm.temperature=0.05"], "temperature 0.05"),
    "tau0.2": (["nnpm.temperature=0.2"], "temperature 0.2"),
    "lr0.001": (["optim.lr=0.001"], "learning rate 1e-3"),
    "centroids4": (["nnpm.label_centroids=4"], "4 centroids per class label the target"),
}
"""What --ablations runs on the 6 pairs (docs/adaptation.md)."""
MOOT = {"k30": (["nnpm.k=30"], "k = 30")}
"""Ablations of an earlier default that the present one makes equal to it (with 2 centroids
per class all 8 vote at k = 10 as at 30); kept so that their runs render and their commands
run, left out of --ablations."""
ADOPTED = {"tau0.02": (["nnpm.temperature=0.02"], "temperature 0.02"),
           "centroids2": (["nnpm.label_centroids=2"], "2 centroids per class label the target")}
"""Changes to an earlier default that became the default (the temperature, chosen over 5
seeds: docs/adaptation_ablations_temperature_0.05.md; 2 centroids per class, the best of six
candidates over 5 seeds: docs/adaptation_candidates.md); kept so that their runs render and
their commands run."""
CANDIDATE_BASE = ["nnpm.label_centroids=4"]
"""NNPM as configured when the candidates below were measured (before `centroids2`)."""
CANDIDATES = {  # one change each from CANDIDATE_BASE, tried for a better default
    name: (CANDIDATE_BASE + overrides, description) for name, (overrides, description) in {
        "centroids8": (["nnpm.label_centroids=8"], "8 centroids per class label the target"),
        "min_share0.3": (["nnpm.min_share=0.3"], "a candidate class needs 30% of the vote"),
        "tau0.03": (["nnpm.temperature=0.03"], "temperature 0.03"),
    }.items()}
"""Run by name with --variants; measured on the 6 pairs against `CANDIDATE_BASE`, whose runs
they stay comparable with (docs/adaptation_candidates.md; the candidates of options since
retired are in that table only)."""
VARIANTS = {**ABLATIONS, **MOOT, **ADOPTED, **CANDIDATES}
"""Every named variant of NNPM, each overrides on top of NNPM as configured."""


ADAPTATION_ONLY = ("nnpm", "dann", "target")
"""Config sections source-only training does not read."""


def source_cache_key(cfg: AdaptConfig, clips) -> str:
    """A source model's cache name: a hash of its training configuration (seed included; the
    adaptation-only sections, which source-only training does not read, left out, so NNPM and
    DANN settings can vary over one cache) and of its training clips (corpus, file, label)."""
    config = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ADAPTATION_ONLY}
    spec = {"config": config,
            "clips": sorted((c.corpus, str(c.path), c.label) for c in clips)}
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:20]


def name_of(setting) -> str:
    sources, target = setting
    return f"{'+'.join(sources)}->{target}"


@dataclasses.dataclass(frozen=True)
class SettingSplit:
    """One setting's clips for one seed, and the adaptation data made of them."""

    source_clips: list
    """The source corpora's labelled clips."""
    adapt_clips: list
    """The target's adaptation set: every clip of 80% of its speakers, labelled or not."""
    unseen: list
    """The clips of the other 20% of the target's speakers, heard by no system."""
    data: AdaptData


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
        # on top of the configuration read at the start, so that a run measures one file
        # even if it is edited while the run goes on
        return from_dict(AdaptConfig, apply_overrides(to_dict(self.base),
                                                      overrides + [f"optim.seed={seed}"]))

    def source_clips(self, sources: tuple[str, ...]):
        return [c for s in sources for c in labelled(self.clips[s], self.labels)]

    def train_source(self, sources: tuple[str, ...], seed: int):
        """The source-only model of `sources` (trained once, shared by every setting); with
        --source-cache, loaded from there when a model of the same training exists."""
        clips = self.source_clips(sources)
        cfg = self.config(seed, SOURCE_TRAINING)
        cached = None
        if self.args.source_cache:
            # weights only (a state dict), read with weights_only=True: no pickled code
            cached = self.args.source_cache / f"{source_cache_key(cfg, clips)}.weights.pt"
            if cached.is_file():
                self.log(f"  source model {'+'.join(sources)} (cached: {cached.name})")
                model = EmotionModel(cfg.model, N_MELS, len(self.labels))
                model.load_state_dict(torch.load(cached, map_location="cpu", weights_only=True))
                return model.eval()
        data = AdaptData.from_clips(self.labels, clips, [self.views[c.path] for c in clips], [])
        result = adapt(cfg, data, log=lambda _: None)
        self.log(f"  source model {'+'.join(sources)} ({result.seconds:.0f} s)")
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            torch.save(result.model.state_dict(), cached.with_suffix(".tmp"))  # no pickled code
            cached.with_suffix(".tmp").replace(cached)
        return result.model

    def split(self, setting, seed: int) -> SettingSplit:
        """`setting`'s clips for `seed`: its target's speakers split 80/20."""
        sources, target = setting
        source_clips = self.source_clips(sources)
        adapt_clips, unseen = speaker_split(self.clips[target], 0.2, seed)
        data = AdaptData.from_clips(self.labels, source_clips,
                                    [self.views[c.path] for c in source_clips],
                                    [self.views[c.path] for c in adapt_clips])
        return SettingSplit(source_clips, adapt_clips, unseen, data)

    def run_setting(self, setting, seed: int, source_model, systems: dict) -> dict[str, dict]:
        split = self.split(setting, seed)
        source_clips, adapt_clips, data = split.source_clips, split.adapt_clips, split.data
        scored = {"adapt": labelled(adapt_clips, self.labels),
                  "unseen": labelled(split.unseen, self.labels)}
        out: dict[str, dict] = {}
        for name, overrides in systems.items():
            started = time.perf_counter()
            if name == "peer":
                out[name] = self.peer(source_clips, scored)
            else:
                model, result = self.system_model(name, overrides, seed, source_model, data,
                                                  source_clips)
                out[name] = self.score(model, scored)
                if result is not None and result.pseudo is not None:
                    # how right the final pseudo-labels are (diagnostic)
                    out[name]["pseudo_ua"] = self.labelled_ua(result.pseudo.top.numpy(),
                                                              adapt_clips)
            self.log(f"    {name:<18} ({time.perf_counter() - started:4.0f} s) "
                     + self.fmt(out[name]))
        return out

    def system_model(self, name: str, overrides: list[str] | None, seed: int, source_model,
                     data: AdaptData, source_clips) -> tuple:
        """(model, adaptation result or None): what system `name` (a column or an ablation,
        with its config `overrides`) makes of `source_model` for `data`'s target."""
        if name == "source":
            return source_model, None
        if name == "source_bn":
            model = copy.deepcopy(source_model)
            reestimate_bn_statistics(model, [v[0] for v in data.target_views])
            return model, None
        cfg = self.config(seed, overrides)
        memory = None
        if name == "nnpm_sf":  # the model's memory bank, no source utterances
            memory = self.package_memory(source_model, source_clips)
            data = AdaptData(labels=data.labels, target_views=data.target_views)
        result = adapt(cfg, data, model=copy.deepcopy(source_model), memory=memory,
                       log=lambda _: None)
        return result.model, result

    def package_memory(self, model, source_clips) -> SourceMemory:
        """The memory bank an export of `model` would ship (export's defaults), fixed."""
        return SourceMemory.from_bank(self.package_bank(model, source_clips), len(self.labels))

    def package_bank(self, model, source_clips,
                     cfg: MemoryBankConfig | None = None) -> dict[str, np.ndarray]:
        """The memory bank arrays an export of `model` builds from `source_clips` (`cfg`:
        export's defaults when None)."""
        feats = [self.views[c.path][0] for c in source_clips]
        targets = np.array([self.labels.index(c.label) for c in source_clips])
        return build_memory_bank(clip_embeddings(model, feats), targets, self.labels,
                                 cfg or MemoryBankConfig())

    def labelled_ua(self, per_clip: np.ndarray, clips) -> float:
        """UA of class indices `per_clip` (one per clip of `clips`, unlabelled clips included)
        on the clips that carry a label."""
        keep = [i for i, c in enumerate(clips) if c.label in self.labels]
        references = np.array([self.labels.index(clips[i].label) for i in keep])
        return score(references, np.asarray(per_clip)[keep], self.labels).ua

    def start_pseudo_ua(self, model, sources: tuple[str, ...], adapt_clips) -> float:
        """UA of the first pseudo-labels NNPM draws from the source model (diagnostic)."""
        clips = self.source_clips(sources)
        source_emb, _ = embed_domain(model, [self.views[c.path][0] for c in clips], True)
        memory = SourceMemory.from_features(
            source_emb, np.array([self.labels.index(c.label) for c in clips]), len(self.labels))
        pseudo, _ = target_pseudo_labels(self.base, model, memory,
                                         [self.views[c.path] for c in adapt_clips])
        return self.labelled_ua(pseudo.top.numpy(), adapt_clips)

    def score(self, model, scored: dict) -> dict[str, float]:
        result = {}
        for part, clips in scored.items():
            references = np.array([self.labels.index(c.label) for c in clips])
            s = score(references, predict(model, [self.views[c.path][0] for c in clips]),
                      self.labels)
            result.update({f"{part}_ua": s.ua, f"{part}_wa": s.wa})
        return result

    def peer(self, source_clips, scored: dict) -> dict[str, float]:
        from edge_ser_train.peer_egemaps import evaluate_peer

        cache = Path(self.base.source.cache_dir).parent / "egemaps"
        result = {}
        for part, clips in scored.items():
            s = evaluate_peer(source_clips, clips, self.labels, cache)
            result.update({f"{part}_ua": s.ua, f"{part}_wa": s.wa})
        return result

    @staticmethod
    def fmt(r: dict[str, float]) -> str:
        line = (f"UA {r['adapt_ua']:.1%}  WA {r['adapt_wa']:.1%}  unseen-speaker UA "
                f"{r['unseen_ua']:.1%}")
        return line + (f"  pseudo-label UA {r['pseudo_ua']:.1%}" if "pseudo_ua" in r else "")


def run(args, log=print) -> dict:
    exp = Experiment(args, log)
    results: dict = {"seeds": list(args.seeds), "main": {}, "ablations": {},
                     "pseudo_start": {}}
    main_systems = {n: SYSTEMS[n][0] if n in SYSTEMS else None for n in args.systems}
    settings = [s for s in SETTINGS if not args.only or name_of(s) in args.only]
    for seed in args.seeds:
        for sources in dict.fromkeys(s for s, _ in settings):  # each source set once, in order
            source_model = exp.train_source(sources, seed)
            for setting in (s for s in settings if s[0] == sources):
                name = name_of(setting)
                log(f"== seed {seed}: {name}")
                adapt_clips = speaker_split(exp.clips[setting[1]], 0.2, seed)[0]
                start_ua = exp.start_pseudo_ua(source_model, sources, adapt_clips)
                results["pseudo_start"].setdefault(name, []).append(start_ua)
                log(f"    first pseudo-labels: UA {start_ua:.1%}")
                for system, r in exp.run_setting(setting, seed, source_model,
                                                 main_systems).items():
                    results["main"].setdefault(name, {}).setdefault(system, []).append(r)
                names = args.variants or (list(ABLATIONS) if setting in PAIRS else [])
                if names and (args.ablations or args.variants):
                    variants = {n: SYSTEMS["nnpm"][0] + VARIANTS[n][0] for n in names}
                    log(f"== seed {seed}: {name}, NNPM ablations")
                    for system, r in exp.run_setting(setting, seed, source_model,
                                                     variants).items():
                        results["ablations"].setdefault(name, {}).setdefault(
                            system, []).append(r)
                save_raw(args.raw, results)
    return results


def save_raw(path: Path, results: dict) -> None:
    """The raw numbers so far (a long run that stops keeps what it measured)."""
    write_text_atomic(path, json.dumps(results, indent=1))


def merge(parts: list[dict]) -> dict:
    """Raw results of several runs as one: runs of different seeds side by side, and a later
    run's result for the same seed, setting and system replacing an earlier one (a re-run of
    some systems updates a full table)."""
    seeds: list[int] = []
    cells: dict[tuple[str, str, str], dict[int, dict]] = {}
    starts: dict[str, dict[int, float]] = {}
    for part in parts:
        seeds += [s for s in part["seeds"] if s not in seeds]
        for table in ("main", "ablations"):
            for setting, systems in part.get(table, {}).items():
                for system, rows in systems.items():  # rows follow the run's seed order
                    cells.setdefault((table, setting, system), {}).update(
                        zip(part["seeds"], rows))
        for setting, values in part.get("pseudo_start", {}).items():
            starts.setdefault(setting, {}).update(zip(part["seeds"], values))
    merged: dict = {"seeds": seeds, "main": {}, "ablations": {}, "pseudo_start": {}}
    for (table, setting, system), by_seed in cells.items():
        merged[table].setdefault(setting, {})[system] = [by_seed[s] for s in seeds
                                                         if s in by_seed]
    for setting, by_seed in starts.items():
        merged["pseudo_start"][setting] = [by_seed[s] for s in seeds if s in by_seed]
    return merged


def restrict(results: dict, settings: list[str], systems: list[str] | None,
             variants: list[str] | None = None) -> dict:
    """Merged raw numbers cut to the settings named (all if none), in the main table to
    `systems` (all if None), and among the ablations to `variants` (all if None). A part of a
    table can so be rendered on its own, e.g. the 6 pairs over more seeds than the rest ran."""
    keep = set(settings) or {name_of(s) for s in SETTINGS}
    cut = {**results, "pseudo_start": {k: v for k, v in results.get("pseudo_start", {}).items()
                                       if k in keep}}
    cut["main"] = {k: {s: rows for s, rows in by.items() if systems is None or s in systems}
                   for k, by in results["main"].items() if k in keep}
    cut["ablations"] = {k: {v: rows for v, rows in by.items() if not variants or v in variants}
                        for k, by in results.get("ablations", {}).items() if k in keep}
    return cut


def stat(values: list[float]) -> str:
    v = 100 * np.asarray(values)
    return f"{v.mean():.1f} ± {v.std():.1f}" if len(v) > 1 else f"{v.mean():.1f}"


def mean_over(table: dict, system: str, key: str, settings) -> float:
    return float(np.mean([np.mean([r[key] for r in table[name_of(s)][system]])
                          for s in settings]))


def speaker_confound(data: Path, labels: tuple[str, ...]) -> list[str]:
    """Markdown rows: how much each corpus' emotions go with its speakers. Where nearly every
    speaker has one emotion, clusters of a target's unlabelled utterances are speakers, and a
    method that labels clusters labels whole speakers right or wrong together."""
    rows = []
    for corpus in CORPORA:
        clips = labelled(read_corpus(data / corpus), labels)
        by_speaker: dict[str, dict[str, int]] = {}
        for c in clips:
            counts = by_speaker.setdefault(c.speaker, {})
            counts[c.label] = counts.get(c.label, 0) + 1
        majority = sum(max(v.values()) for v in by_speaker.values()) / len(clips)
        single = sum(len(v) == 1 for v in by_speaker.values())
        rows.append(f"| {corpus} | {len(clips)} | {len(by_speaker)} | {100 * majority:.0f}% | "
                    f"{single} |")
    return rows


def short_commit(commit: str) -> str:
    """The first 10 hex digits, keeping the mark of uncommitted changes."""
    return commit[:10] + (UNCOMMITTED if commit.endswith(UNCOMMITTED) else "")


def render(results: dict, commands: list[str], config_name: str, seconds: float | None,
           confound: list[str] | None = None, measured_at: list[str] | None = None,
           commit: str | None = None, variants: list[str] | None = None) -> str:
    """The markdown table; `commit`: the code rendering it (default: this checkout's now);
    `variants`: the ablation rows in their order (default: every one measured, as `VARIANTS`)."""
    names = {**{k: d for k, (_, d) in SYSTEMS.items()}, **DERIVED}
    main = results["main"]
    settings = [s for s in SETTINGS if name_of(s) in main]
    systems = [s for s in COLUMNS if all(s in main[name_of(x)] for x in settings)]
    seeds = sorted(results["seeds"])
    took = f", {seconds / 3600:.1f} h on this machine's CPU" if seconds else ""
    if measured_at:
        took += ", measured at commit " + ", ".join(short_commit(c) for c in measured_at)
    lines = [
        "# Unsupervised cross-lingual adaptation",
        "",
        f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC (commit "
        f"{short_commit(commit or git_commit())}{took}) by",
        "",
        "```bash",
        *commands,
        "```",
        "",
        "Per seed and set of source corpora one source-only model is trained from scratch on all "
        "their labelled clips; every adaptation method starts from that model and trains the "
        f"same number of steps (`configs/adapt/{config_name}`). The target's labels are never "
        "used in training. For each seed the target's speakers are split 80/20: the 80% are the "
        "unlabelled adaptation set (all their clips, also those without a 4-class label), "
        "scored by UA and WA on its labelled clips; *unseen UA* scores the other 20% speakers, "
        f"heard by no system. Figures are mean ± standard deviation over seeds "
        f"{', '.join(map(str, seeds))} (a seed sets the target split and the initialisation), "
        "in %. 4 classes, chance 25%. The EMO-DB copy is cut to 2 s, so its numbers are not "
        "comparable to published ones.",
        "",
        SYSTEM_NOTES,
    ]
    headers = []
    for s in systems:  # a column measured on fewer seeds says so
        runs = min(len(main[name_of(x)][s]) for x in settings)
        headers.append(names[s] + (f" ({runs} of {len(seeds)} seeds)" if runs < len(seeds)
                                   else ""))
    for metric, title in (("adapt_ua", "Target UA (adaptation set)"),
                          ("adapt_wa", "Target WA (adaptation set)"),
                          ("unseen_ua", "Target UA, unseen target speakers")):
        lines += ["", f"## {title}", "",
                  "| setting | " + " | ".join(headers) + " |",
                  "|---" * (len(systems) + 1) + "|"]
        for setting in settings:
            cells = [stat([r[metric] for r in main[name_of(setting)][s]]) for s in systems]
            lines.append(f"| {name_of(setting)} | " + " | ".join(cells) + " |")
        shown: list[list] = []
        for group, members in (("mean of the 6 pairs", PAIRS), ("mean of the 3 LOLO", LOLO),
                               ("mean of all", SETTINGS)):
            members = [m for m in members if name_of(m) in main]
            if members and members not in shown:  # "all" is the pairs when only they ran
                shown.append(members)
                cells = [f"{100 * mean_over(main, s, metric, members):.1f}" for s in systems]
                lines.append(f"| **{group}** | " + " | ".join(cells) + " |")
    if {"nnpm", "source", "dann"} <= set(systems):
        pairs = [p for p in PAIRS if name_of(p) in main]
        lines += ["", "## NNPM against the baselines", ""]
        groups = [("the 6 single-source pairs", pairs)]
        if settings != pairs:
            groups.append(("all settings", settings))
        for group, members in groups:
            nn = mean_over(main, "nnpm", "adapt_ua", members)
            lines.append(f"- Over {group}: NNPM's mean target UA is "
                         f"{100 * (nn - mean_over(main, 'source', 'adapt_ua', members)):+.1f} "
                         f"points from source-only and "
                         f"{100 * (nn - mean_over(main, 'dann', 'adapt_ua', members)):+.1f} from "
                         "DANN (separate BN); the aim is at least +5 over both.")
        if "nnpm_sf" in systems:
            gap = mean_over(main, "nnpm_sf", "adapt_ua", settings) - mean_over(
                main, "nnpm", "adapt_ua", settings)
            lines.append(f"- Without source audio (memory bank only) NNPM is {100 * gap:+.1f} "
                         "points from full NNPM over all settings.")
        wins = sum(np.mean([r["adapt_ua"] for r in main[name_of(s)]["nnpm"]])
                   > np.mean([r["adapt_ua"] for r in main[name_of(s)]["source"]])
                   for s in settings)
        lines.append(f"- NNPM is above source-only in {wins} of {len(settings)} settings.")
        lines += ["", "## Pseudo-label quality (UA of the pseudo-labels' top class on the "
                  "labelled adaptation clips)", "",
                  "| setting | first (source model) | last (NNPM) | NNPM, no source audio, last |",
                  "|---|---|---|---|"]
        for setting in settings:
            name = name_of(setting)
            first = results.get("pseudo_start", {}).get(name, [])
            cells = [stat(first) if first else "-"]
            for system in ("nnpm", "nnpm_sf"):
                rows = [r["pseudo_ua"] for r in main[name].get(system, []) if "pseudo_ua" in r]
                cells.append(stat(rows) if rows else "-")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if confound:
        lines += ["", "## Emotion and speaker in the target corpora", "",
                  "| corpus | 4-class clips | speakers | clips in their speaker's most frequent "
                  "emotion | speakers with one emotion only |", "|---|---|---|---|---|",
                  *confound]
    ablations = results.get("ablations") or {}
    if ablations:
        pairs = [p for p in PAIRS if name_of(p) in ablations]
        intro = ("Each row changes one setting of NNPM; the first row is NNPM as configured "
                 "at the commits its runs were measured at (the header)."
                 if "nnpm" in systems else "Each row is a variant of NNPM (`VARIANTS` in "
                 "`tools/make_adaptation_results.py`), in the order the render named them.")
        lines += ["", "## NNPM ablations (target UA, adaptation set, the 6 pairs)", "", intro,
                  "", "| variant | " + " | ".join(name_of(p) for p in pairs)
                  + " | mean | unseen speakers, mean |", "|---" * (len(pairs) + 3) + "|"]
        rows = [("nnpm", "NNPM", main)] + [(n, VARIANTS[n][1], ablations)
                                            for n in variants or VARIANTS]
        for key, title, table in rows:
            if not all(key in table.get(name_of(p), {}) for p in pairs):
                continue
            runs = min(len(table[name_of(p)][key]) for p in pairs)
            if runs < len(seeds):  # a variant measured on fewer seeds says so
                title += f" ({runs} of {len(seeds)} seeds)"
            cells = [stat([r["adapt_ua"] for r in table[name_of(p)][key]]) for p in pairs]
            mean = 100 * mean_over(table, key, "adapt_ua", pairs)
            unseen = 100 * mean_over(table, key, "unseen_ua", pairs)
            lines.append(f"| {title} | " + " | ".join(cells) + f" | {mean:.1f} | {unseen:.1f} |")
    return "\n".join(lines) + "\n"


PROGRAM = "python tools/make_adaptation_results.py "


def experiment_arguments(parser: argparse.ArgumentParser) -> None:
    """The options `Experiment` and a run over seeds read (shared with the tools beside this
    one, which reuse its models and splits)."""
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--config", type=Path, default=ROOT / "configs/adapt/table.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--source-cache", type=Path, default=None, metavar="DIR",
                        help="keep the source-only models here and reuse them when their "
                        "training configuration, seed and clips are the same")
    parser.add_argument("--set", action="append", default=[], help="config override")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    experiment_arguments(parser)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "adaptation_results.md")
    parser.add_argument("--raw", type=Path, default=None,
                        help="raw numbers of this run (default: --out with .json)")
    parser.add_argument("--render", type=Path, nargs="+", metavar="RAW_JSON",
                        help="only render --out from the raw numbers of earlier runs")
    parser.add_argument("--systems", nargs="+", default=None, choices=COLUMNS,
                        help="the columns to run (default: all but dann_lr0.003); with "
                        "--render, the columns to keep (default: every one measured)")
    parser.add_argument("--only", nargs="+", default=[], metavar="SETTING",
                        help="run (with --render: keep) only these settings, e.g. "
                        "emodb->urdu emodb+turev->urdu")
    parser.add_argument("--ablations", action="store_true",
                        help="also run the NNPM ablations on the 6 single-source pairs")
    parser.add_argument("--variants", nargs="+", default=[], choices=list(VARIANTS),
                        metavar="ABLATION", help="run only these NNPM ablations, on every "
                        "setting run (not only the pairs); with --render, the ablation rows to "
                        "keep, in this order")
    args = parser.parse_args()
    unknown = [s for s in args.only if s not in {name_of(x) for x in SETTINGS}]
    if unknown:
        parser.error(f"unknown setting {unknown[0]!r}; one of "
                     + ", ".join(name_of(s) for s in SETTINGS))
    args.raw = args.raw or args.out.with_suffix(".json")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    commit = git_commit()  # before this run writes anything: the code it runs
    if args.render:
        parts = [json.loads(p.read_text()) for p in args.render]
        results = restrict(merge(parts), args.only, args.systems, args.variants)
        seconds = sum(p.get("seconds", 0.0) for p in parts) or None
        commands = [PROGRAM + shlex.join(p.get("argv", [])) for p in parts]
        commands.append(PROGRAM + shlex.join(sys.argv[1:]))
        measured_at = list(dict.fromkeys(p["commit"] for p in parts if p.get("commit")))
        write_text_atomic(args.raw, json.dumps(results, indent=1))
    else:
        args.systems = args.systems or DEFAULT_SYSTEMS
        started = time.perf_counter()
        results = run(args)
        seconds = time.perf_counter() - started
        results.update(seconds=seconds, argv=sys.argv[1:], commit=commit)
        save_raw(args.raw, results)
        commands = [PROGRAM + shlex.join(sys.argv[1:])]
        measured_at = [results["commit"]] if results["commit"] else []
    labels = load_config(AdaptConfig, args.config, args.set).source.labels
    confound = speaker_confound(args.data, labels) if (args.data / CORPORA[0]).is_dir() else None
    write_text_atomic(args.out, render(results, commands, args.config.name, seconds, confound,
                                       measured_at, commit, args.variants))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
