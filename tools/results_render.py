"""docs/results.md from the per-cell raw results of tools/make_results.py (docs/protocol.md).

Only measured cells are shown; a missing one is a dash and the page says which cells it lacks,
so a partial run renders as a clearly partial table.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from tools.protocol import KINDS, ROOT, SYSTEMS, ProtocolConfig, read_cells

METRICS = (("ua", "UA"), ("wa", "WA"), ("macro_f1", "F1"))

CALLS_SECTION = ROOT / "docs" / "results_calls.md"
"""The batch's segment-level accuracy on generated calls (tools/make_calls.py, scored by
tools/score_calls.py), included as the last section of the results."""

ADAPTATION_POINTER = (
    "Every LOLO cell is source-only: the target language is never heard. Adapting to it from "
    "its unlabelled audio (source-only, DANN and NNPM beside the peer) is measured in "
    "[adaptation.md](adaptation.md), measured by `python -m tools.make_adaptation_results "
    "--data ../shared/data`.")

CHOICES = (
    "The leave-one-language-out cells of the selection targets (emodb, urdu, turev), seed 0, "
    "were the baseline against which candidate settings were tried: 10 epochs, mixup, pooled "
    "batches and the multigate family. None of them changed the recipe measured here (*ours*), "
    "the one in place before the protocol; the multigate family, which also held on the "
    "confirmation targets measured afterwards, ships as the second bundled package `accurate` "
    "([multigate.md](multigate.md)). The confirmation targets (nemo, ased) and the in-domain "
    "table chose nothing. Each choice, with the figures it was made on, is in the decision log "
    "of [protocol.md](protocol.md#decision-log).")


def stat(values: list[float]) -> str:
    if not values:
        return "—"
    v = 100 * np.asarray(values)
    # the sample standard deviation (n - 1): a few seeds, not the whole population of them
    return f"{v.mean():.1f} ± {v.std(ddof=1):.1f}" if len(v) > 1 else f"{v.mean():.1f}"


def index(cells: list[dict]) -> dict:
    """(kind, corpus, system) -> {seed: record}."""
    out: dict = {}
    for rec in cells:
        out.setdefault((rec["kind"], rec["corpus"], rec["system"]), {})[rec["seed"]] = rec
    return out


def row(by_seed: dict, field: str = "scores") -> list[str]:
    return [stat([r[field][m] for r in by_seed.values() if field in r]) for m, _ in METRICS]


def group_mean(cells: dict, kind: str, corpora: tuple[str, ...], system: str) -> list[str]:
    """Mean over `corpora` per seed where every one is measured, then mean ± sd over seeds."""
    out = []
    for metric, _ in METRICS:
        per_seed = []
        seeds = set.intersection(*(set(cells.get((kind, c, system), {})) for c in corpora))
        for seed in sorted(seeds):
            per_seed.append(np.mean([cells[(kind, c, system)][seed]["scores"][metric]
                                     for c in corpora]))
        out.append(stat(per_seed))
    return out


def table(cells: dict, kind: str, groups: list[tuple[str, tuple[str, ...]]]) -> list[str]:
    head = " | ".join(f"{s} {label} %" for s in SYSTEMS for _, label in METRICS)
    lines = [f"| corpus | role | {head} | seeds |", "|---" * (3 + 3 * len(SYSTEMS)) + "|"]
    for role, corpora in groups:
        for corpus in corpora:
            values = [v for s in SYSTEMS for v in row(cells.get((kind, corpus, s), {}))]
            seeds = sorted({seed for s in SYSTEMS for seed in cells.get((kind, corpus, s), {})})
            lines.append(f"| {corpus} | {role} | " + " | ".join(values) + " | "
                         + (", ".join(map(str, seeds)) or "—") + " |")
        if len(groups) > 1:
            values = [v for s in SYSTEMS for v in group_mean(cells, kind, corpora, s)]
            lines.append(f"| **{role} mean** | | " + " | ".join(values) + " | |")
    if len(groups) > 1:
        everything = tuple(c for _, corpora in groups for c in corpora)
        values = [v for s in SYSTEMS for v in group_mean(cells, kind, everything, s)]
        lines.append(f"| **mean of all {len(everything)}** | | " + " | ".join(values) + " | |")
    return lines


def missing(protocol: ProtocolConfig, cells: dict) -> list[str]:
    out = []
    for kind in KINDS:
        for corpus in protocol.corpora:
            for system in SYSTEMS:
                lacking = [s for s in protocol.seeds if s not in cells.get((kind, corpus, system),
                                                                          {})]
                if lacking:
                    out.append(f"{kind} {corpus} {system} (seed {', '.join(map(str, lacking))})")
    return out


def common_sentences(protocol: ProtocolConfig, cells: dict) -> list[str]:
    corpora = sorted({e.split(":")[0] for e in protocol.common_sentences})
    if not corpora:
        return []
    names = ", ".join(e.split(":")[1] for e in protocol.common_sentences)
    lines = [f"## Common sentences ({names} of {', '.join(corpora)})", "",
             "Most ASED sentences belong to one emotion, so their words give the class away; "
             "the sentences spoken in every emotion (`common_sentences` in "
             "configs/protocol/default.yaml) can only be told apart by voice. UA % on all scored "
             "clips beside UA % on those sentences alone, from the same predictions:", "",
             "| cell | system | UA all % | UA common sentences % | common clips | seeds |",
             "|---|---|---|---|---|---|"]
    for corpus in corpora:
        for kind in KINDS:
            for system in SYSTEMS:
                by_seed = cells.get((kind, corpus, system), {})
                with_common = {s: r for s, r in by_seed.items() if "common_sentences" in r}
                if not by_seed:
                    continue
                counts = sorted({r["common_sentences"]["count"] for r in with_common.values()})
                ua_all = stat([r["scores"]["ua"] for r in by_seed.values()])
                ua_common = stat([r["common_sentences"]["ua"] for r in with_common.values()])
                lines.append(
                    f"| {kind} {corpus} | {system} | {ua_all} | {ua_common}"
                    f" | {', '.join(map(str, counts)) or '—'}"
                    f" | {', '.join(map(str, sorted(by_seed)))} |")
    return lines + [""]


def render(protocol: ProtocolConfig, runs: Path, config: Path) -> str:
    records = read_cells(runs)
    cells = index(records)
    commands = sorted({" ".join(r["argv"]) for r in records if r.get("argv")})
    imported = sorted({r["measured_by"] for r in records if r.get("measured_by")})
    commits = sorted({r["commit"][:10] for r in records})
    hours = sum(r["seconds"] for r in records) / 3600
    lacking = missing(protocol, cells)
    try:
        config_name = config.resolve().relative_to(ROOT)
    except ValueError:
        config_name = config
    lines = [
        "# Results", "",
        f"Rendered {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by `python -m "
        f"tools.make_results --render` from {len(records)} measured cells "
        f"({hours:.1f} h of this machine's CPU; code at commit {', '.join(commits) or '—'})"
        + (", measured by:" if commands else "."), "",
        *[f"    python -m {c.replace('tools/make_results.py', 'tools.make_results')}"
          for c in commands], *([""] if commands else []),
        *[f"Imported cells: {text}" for text in imported], *([""] if imported else []),
        "The protocol, and why it is built this way, is [protocol.md](protocol.md). UA = "
        "unweighted accuracy (mean per-class recall), WA = plain accuracy, F1 = macro-F1; 4 "
        "classes (angry, happy, neutral, sad), chance UA 25%. Figures are mean ± standard "
        "deviation over the seeds listed (a single seed shows no spread); a seed sets the "
        "model's initialisation, augmentation and batch draws, and in-domain also the speaker "
        "split. *Ours* is the recipe "
        f"`{config_name}`, retrained for every cell; the *peer* is openSMILE eGeMAPSv02 "
        "functionals + logistic regression on the same clips. The EMO-DB copy is cut to 2 s and "
        "nEMO and ASED are subsets (see each corpus' SOURCE.md): the numbers are not comparable "
        "to published ones.", "",
    ]
    if lacking:
        lines += [f"**Partial table**: {len(lacking)} of {2 * len(KINDS) * len(protocol.corpora)} "
                  f"(kind, corpus, system) rows lack seeds of the protocol's "
                  f"{', '.join(map(str, protocol.seeds))}: " + "; ".join(lacking) + ".", ""]
    groups = [("selection", protocol.selection), ("confirmation", protocol.confirmation)]
    lines += ["## Unseen languages: leave-one-language-out", "",
              "Train on every labelled clip of the other corpora, score every labelled clip of "
              "the target corpus, whose language the model never heard. Choices are made on the "
              "selection targets; the confirmation targets measure them unchanged.", "",
              *table(cells, "lolo", groups), "", ADAPTATION_POINTER, "",
              "## In-domain: train on 80% of one corpus' speakers, score the other 20%", "",
              *table(cells, "in_domain", groups), "",
              *common_sentences(protocol, cells),
              "## Used to choose", "", CHOICES, ""]
    text = "\n".join(lines)
    if CALLS_SECTION.is_file():
        text = text.rstrip("\n") + "\n\n" + CALLS_SECTION.read_text(encoding="utf-8").strip()
    return text + "\n"
