"""The adaptation table's markdown from the per-cell raw results of
tools/make_adaptation_results.py (docs/protocol.md, docs/adaptation.md).

Only measured cells are shown; a missing one is a dash, a role's mean counts the seeds where
every target of the role is measured, and the page lists the cells it lacks, so a partial run
renders as a clearly partial table.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from tools.protocol import ProtocolConfig

SYSTEMS = ("source", "source_bn", "dann", "nnpm", "nnpm_sf", "peer")
TITLES = {"source": "source-only", "source_bn": "source-only + target BN", "dann": "DANN",
          "nnpm": "NNPM, with source", "nnpm_sf": "NNPM, source-free", "peer": "eGeMAPS peer"}
GUARDED = ("dann", "nnpm", "nnpm_sf")
"""The systems `adapt` trains, each judged by the do-no-harm guard."""
HARM_UA = 0.01
"""A returned model below the start model by more than this UA is counted as harm."""
PART_TITLES = {"adapt": "adaptation set (the unlabelled clips adapted to, scored on their labels)",
               "unseen": "speakers held out of the adaptation set, heard by no system"}

SYSTEM_NOTES = (
    "*source-only*: the start model, the training recipe trained on every labelled clip of the "
    "other corpora (the leave-one-language-out model of [results.md](results.md)); *source-only "
    "+ target BN*: the same with its batch-norm statistics re-estimated on the adaptation set; "
    "*DANN*: `adapt`'s DANN with the other corpora as source; *NNPM, with source*: `edge-ser "
    "adapt --source` the other corpora; *NNPM, source-free*: `edge-ser adapt` without "
    "`--source` (the start model's source exemplar set, 24 per source corpus and class as an "
    "export writes it, as the memory); *eGeMAPS peer*: openSMILE "
    "eGeMAPSv02 functionals + logistic regression on the same source clips, not adapted. The "
    "adapted columns are the adapted models whatever the guard said; the guard's section scores "
    "what `adapt` returns.")


def read_adaptation_cells(runs: Path) -> list[dict]:
    return [json.loads(p.read_text(encoding="utf-8"))
            for p in sorted(runs.glob("adapt-*-s*-*.json"))]


def index(records: list[dict]) -> dict:
    """(target, system) -> {seed: record}."""
    out: dict = {}
    for rec in records:
        out.setdefault((rec["target"], rec["system"]), {})[rec["seed"]] = rec
    return out


def stat(values: list[float], signed: bool = False) -> str:
    if not len(values):
        return "—"
    v = 100 * np.asarray(values)
    mean = f"{v.mean():+.1f}" if signed else f"{v.mean():.1f}"
    return f"{mean} ± {v.std():.1f}" if len(v) > 1 else mean


def role_means(cells: dict, targets: tuple[str, ...], system: str, part: str) -> dict:
    """{seed: UA mean over `targets`} for the seeds where every target is measured."""
    seeds = set.intersection(*(set(cells.get((t, system), {})) for t in targets))
    return {s: float(np.mean([cells[(t, system)][s]["scores"][part]["ua"] for t in targets]))
            for s in sorted(seeds)}


def summary(cells: dict, groups: list[tuple[str, tuple[str, ...]]]) -> list[str]:
    """Per system: each role's mean UA and its gain over source-only, roles side by side."""
    head = " | ".join(f"{role} UA % | gain over source-only" for role, _ in groups)
    unseen = " | ".join(f"{role}, unseen speakers UA %" for role, _ in groups)
    lines = [f"| system | {head} | {unseen} |", "|---" * (1 + 3 * len(groups)) + "|"]
    for system in SYSTEMS:
        values, held_out = [], []
        for _, targets in groups:
            means = role_means(cells, targets, system, "adapt")
            base = role_means(cells, targets, "source", "adapt")
            values += [stat(list(means.values())),
                       stat([means[s] - base[s] for s in means if s in base], signed=True)]
            held_out.append(stat(list(role_means(cells, targets, system, "unseen").values())))
        lines.append(f"| {TITLES[system]} | " + " | ".join(values + held_out) + " |")
    return lines


def per_target(cells: dict, groups: list[tuple[str, tuple[str, ...]]], part: str) -> list[str]:
    lines = ["| target | role | " + " | ".join(TITLES[s] for s in SYSTEMS) + " | seeds |",
             "|---" * (3 + len(SYSTEMS)) + "|"]
    for role, targets in groups:
        for target in targets:
            values = [stat([r["scores"][part]["ua"] for r in cells.get((target, s), {}).values()])
                      for s in SYSTEMS]
            seeds = sorted({seed for s in SYSTEMS for seed in cells.get((target, s), {})})
            lines.append(f"| {target} | {role} | " + " | ".join(values) + " | "
                         + (", ".join(map(str, seeds)) or "—") + " |")
        values = [stat(list(role_means(cells, targets, s, part).values())) for s in SYSTEMS]
        lines.append(f"| **{role} mean** | | " + " | ".join(values) + " | |")
    return lines


def guard_table(cells: dict, groups: list[tuple[str, tuple[str, ...]]]) -> list[str]:
    lines = ["| system | targets | cells | verdict right | said worse | start UA % | adapted "
             "UA % | returned UA % | returned worse than start by > 1 UA |",
             "|---|---|---|---|---|---|---|---|---|"]
    everything = ("all", tuple(t for _, targets in groups for t in targets))
    for system in GUARDED:
        for role, targets in [*groups, everything]:
            guards = [r["guard"] for t in targets for r in cells.get((t, system), {}).values()
                      if "guard" in r]
            if not guards:
                continue
            right = sum(g["right"] for g in guards)
            worse = sum(g["estimate"] == "worse" for g in guards)
            harm = sum(g["returned_ua"] < g["start_ua"] - HARM_UA for g in guards)
            means = [f"{100 * np.mean([g[k] for g in guards]):.1f}"
                     for k in ("start_ua", "adapted_ua", "returned_ua")]
            lines.append(f"| {TITLES[system]} | {role} | {len(guards)} | {right} "
                         f"({right / len(guards):.0%}) | {worse} | " + " | ".join(means)
                         + f" | {harm} |")
    return lines


def missing(protocol: ProtocolConfig, cells: dict) -> list[str]:
    out = []
    for target in protocol.corpora:
        for system in SYSTEMS:
            lacking = [s for s in protocol.seeds if s not in cells.get((target, system), {})]
            if lacking:
                out.append(f"{target} {system} (seed {', '.join(map(str, lacking))})")
    return out


def render(protocol: ProtocolConfig, runs: Path) -> str:
    records = read_adaptation_cells(runs)
    cells = index(records)
    commands = sorted({" ".join(r["argv"]) for r in records if r.get("argv")})
    commits = sorted({r["commit"][:10] for r in records})
    hours = sum(r["seconds"] for r in records) / 3600
    lacking = missing(protocol, cells)
    total = len(protocol.corpora) * len(SYSTEMS) * len(protocol.seeds)
    groups = [("selection", protocol.selection), ("confirmation", protocol.confirmation)]
    lines = [
        "# Unsupervised adaptation to an unheard language", "",
        f"Rendered {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by `python -m "
        f"tools.make_adaptation_results --render` from {len(records)} measured cells "
        f"({hours:.1f} h of this machine's CPU, each start model's training in its "
        f"source-only cell; code at commit {', '.join(commits) or '—'})"
        + (", measured by:" if commands else "."), "",
        *[f"    {c}" for c in commands], *([""] if commands else []),
        "Leave-one-language-out under the protocol ([protocol.md](protocol.md)): for each target "
        "corpus the start model is trained on the other corpora; the target's speakers are split "
        f"{100 - 100 * protocol.test_fraction:.0f}/{100 * protocol.test_fraction:.0f} by seed: "
        "every clip of the larger part, labelled or not, is the unlabelled adaptation set, the "
        "other speakers are heard by no system. The target's labels are never used but to "
        "score. Choices are made on the selection targets; the confirmation targets measure "
        "them unchanged. UA in % (4 classes, chance 25%), mean ± standard deviation over the "
        "seeds listed; a role's mean is the mean over its targets per seed.", "",
        SYSTEM_NOTES, "",
    ]
    if lacking:
        lines += [f"**Partial table**: {total - sum(map(len, cells.values()))} of {total} cells "
                  f"(targets x systems x seeds {', '.join(map(str, protocol.seeds))}) are not "
                  "measured: " + "; ".join(lacking) + ".", ""]
    lines += ["## By role: target UA on the adaptation set, and on unseen speakers", "",
              *summary(cells, groups), ""]
    for part, title in PART_TITLES.items():
        lines += [f"## Per target: UA %, {title}", "", *per_target(cells, groups, part), ""]
    lines += ["## The do-no-harm guard", "",
              "`adapt` keeps the adapted model when the guard (train/adapt_guard.py) estimates "
              "it \"not worse\" than the start model, else returns the start model. A verdict "
              "is right when it says \"not worse\" and the adapted UA (adaptation set) is at "
              "least the start model's, or \"worse\" and it is below. *Returned UA* is the UA of "
              "what `adapt` returns; the last column counts the cells where that is more than "
              f"{100 * HARM_UA:.0f} UA point below the start model.", "",
              *guard_table(cells, groups), ""]
    return "\n".join(lines)
