"""Target UA of the adaptation systems as their model packages would score the target.

    python -m tools.adaptation_package_scores --data ../shared/data --seeds 0 1 2 --threads 1

The adaptation table (`tools/make_adaptation_results.py`) scores each system by its classifier
head. A model package, what `edge-ser adapt` writes and every command runs, scores a clip three
ways (`edge_ser.scoring.WindowScorer`): the classifier head, the memory bank, and the two fused
at the export's `fusion.memory_weight`. This tool scores the table's models (the same source
models, splits and adaptations) all three ways on the labelled clips of each target's
adaptation set, with the memory bank each system's package carries: built from the source
clips through the system's model, as `export package` and `edge-ser adapt --source` build it;
for NNPM without source audio, the start model's bank, which `edge-ser adapt` without
`--source` ships unchanged. Embeddings are fp32 torch of whole clips, the numbers the fp32
runtime gives (`export sweep` uses the same). The start models are the table's (--runs/start);
the adapted models are trained again, as the table trains them (the table keeps no weights).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from edge_ser.atomic_write import write_text_atomic
from edge_ser.config import load_config
from edge_ser.metrics import score
from edge_ser.scoring import WindowScorer
from edge_ser_export.config import ExportConfig
from edge_ser_export.evaluate import HEADS, head_predictions
from edge_ser_export.head import head_arrays
from edge_ser_export.memory_bank import build_memory_bank, clip_embeddings
from edge_ser_export.sweep import pooled_whole_clips
from tools.adaptation_render import TITLES
from tools.make_adaptation_results import (
    AdaptationTable,
    table_arguments,
    targets_of,
    with_threads,
)

ROOT = Path(__file__).resolve().parent.parent

PACKAGE_SYSTEMS = ("source", "source_bn", "dann", "nnpm", "nnpm_sf")


def package_scorer(model, bank: dict[str, np.ndarray], cfg: ExportConfig) -> WindowScorer:
    """The scorer a package exported from `model` with memory bank `bank` runs."""
    with torch.no_grad():
        head = head_arrays(model)
    return WindowScorer(head, bank["centroids"], bank["centroid_labels"],
                        model.classifier.out_features, cfg.memory_bank.temperature,
                        cfg.memory_bank.top_k, cfg.fusion.memory_weight)


def head_uas(scorer: WindowScorer, pooled: np.ndarray, references: np.ndarray,
             labels: tuple[str, ...]) -> dict[str, float]:
    """UA of each way the package scores: classifier, memory bank, fused."""
    predictions = head_predictions(scorer, pooled)
    return {head: score(references, predictions[head], labels).ua for head in HEADS}


def render(results: dict, settings: list[str], systems: list[str], memory_weight: float) -> str:
    """Markdown: per system and head, the mean UA over seeds per setting and over settings."""
    head = "| system | way | " + " | ".join(settings) + " | mean |"
    lines = [head, "|---" * (len(settings) + 3) + "|"]
    for system in systems:
        title = TITLES[system]
        for way in HEADS:
            per = [100 * float(np.mean([seed[way] for seed in results[s][system]]))
                   for s in settings]
            name = f"fused (w = {memory_weight})" if way == "fused" else way
            lines.append(f"| {title} | {name} | " + " | ".join(f"{v:.1f}" for v in per)
                         + f" | {np.mean(per):.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    table_arguments(parser)
    parser.add_argument("--export-config", type=Path,
                        default=ROOT / "configs/export/default.yaml")
    parser.add_argument("--systems", nargs="+", default=list(PACKAGE_SYSTEMS),
                        choices=PACKAGE_SYSTEMS)
    parser.add_argument("--raw", type=Path, default=None,
                        help="also write the per-seed UAs here (JSON)")
    args = with_threads(parser.parse_args(argv))
    table = AdaptationTable(args, log=lambda _: None)
    export_cfg = load_config(ExportConfig, args.export_config)
    labels = table.labels
    systems = [s for s in PACKAGE_SYSTEMS if s in args.systems]
    results: dict[str, dict[str, list[dict]]] = {}
    for target in targets_of(args, table.protocol):
        per_system = results.setdefault(target, {s: [] for s in systems})
        for seed in args.seeds or table.protocol.seeds:
            start, _ = table.start(target, seed)
            _, feats, parts, references = table.scored(target, seed)
            keep = [i for i, part in enumerate(parts) if part == "adapt"]
            feats, references = [feats[i] for i in keep], references[keep]
            _, source_clips, _ = table.harness.split("lolo", target, seed)
            source_feats = [v[0] for v in table.views(source_clips,
                                                      table.adapt_config("nnpm", seed))]
            source_targets = np.array([labels.index(c.label) for c in source_clips])
            for system in systems:
                model, _ = table.system_model(system, target, seed)
                model.eval()
                # without source audio the package keeps the start model's bank
                bank = start.bank if system == "nnpm_sf" else build_memory_bank(
                    clip_embeddings(model, source_feats), source_targets, labels,
                    export_cfg.memory_bank)
                uas = head_uas(package_scorer(model, bank, export_cfg),
                               pooled_whole_clips(model, feats), references, labels)
                per_system[system].append(uas)
                print(f"{target} seed {seed} {system}: "
                      + ", ".join(f"{h} {100 * v:.1f}" for h, v in uas.items()), flush=True)
        if args.raw:
            write_text_atomic(args.raw, json.dumps(results, indent=1))
    print("\n# Target UA (adaptation set) by the package's ways of scoring\n")
    print(render(results, list(results), systems, export_cfg.fusion.memory_weight))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
