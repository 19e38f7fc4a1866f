"""Evolutionary search over a language head's architecture (depth, width, activation).

A candidate head is trained on fixed embeddings of one language's training speakers and scored
by unweighted accuracy (mean per-class recall) on held-out speakers; a (mu + lambda) evolution
keeps the best `population` specs, mutating one gene at a time. Embeddings are computed once,
so a candidate costs a few hundred full-batch steps of a small MLP.

    python -m edge_ser_train.multigate.search --checkpoint runs/mg/model.pt --out search.json

scores the checkpoint's held-out speakers of the selection corpora (emodb, urdu, turev) only, and
prints the `model.multigate.language_heads` entries to train with, with the search's cost.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

import edge_ser
from edge_ser_train.multigate.heads import HeadSpec, build_head

DEPTHS = (0, 1, 2, 3)
WIDTHS = (32, 64, 128, 256)
ACTIVATION_CHOICES = ("relu", "gelu", "tanh", "silu")
PROTOCOL_FILE = Path(edge_ser.__file__).parent / "configs" / "protocol" / "default.yaml"
"""The measurement protocol (docs/protocol.md): heads are searched on its selection corpora only;
its confirmation corpora are never searched on."""


def protocol_selection(path: Path = PROTOCOL_FILE) -> tuple[str, ...]:
    """The `selection` corpora of a protocol file."""
    import yaml

    try:
        selection = (yaml.safe_load(path.read_text()) or {}).get("selection")
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read the protocol ({exc})") from None
    if not selection:
        raise ValueError(f"{path}: no selection corpora")
    return tuple(str(c) for c in selection)


@dataclass(frozen=True)
class SearchSpace:
    depths: tuple[int, ...] = DEPTHS
    widths: tuple[int, ...] = WIDTHS
    activations: tuple[str, ...] = ACTIVATION_CHOICES

    def random(self, rng: random.Random) -> HeadSpec:
        depth = rng.choice(self.depths)
        if depth == 0:
            return HeadSpec(0, 0, "linear")
        return HeadSpec(depth, rng.choice(self.widths), rng.choice(self.activations))

    def mutate(self, spec: HeadSpec, rng: random.Random) -> HeadSpec:
        """Change one gene (a linear head grows a hidden layer first)."""
        if spec.depth == 0:
            return HeadSpec(1, rng.choice(self.widths), rng.choice(self.activations))
        gene = rng.choice(("depth", "width", "activation"))
        if gene == "depth":
            depth = rng.choice([d for d in self.depths if d != spec.depth])
            return HeadSpec(0, 0, "linear") if depth == 0 else \
                HeadSpec(depth, spec.width, spec.activation)
        if gene == "width":
            return HeadSpec(spec.depth, rng.choice([w for w in self.widths if w != spec.width]),
                            spec.activation)
        return HeadSpec(spec.depth, spec.width,
                        rng.choice([a for a in self.activations if a != spec.activation]))


@dataclass(frozen=True)
class Task:
    """Fixed embeddings and labels: train_x (N, E), train_y (N,), val_x (M, E), val_y (M,)."""
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    n_classes: int


@dataclass
class SearchResult:
    best: HeadSpec
    best_score: float
    start_score: float
    """The best score of the starting population."""
    evaluations: int
    seconds: float
    history: list[dict] = field(default_factory=list)
    """Per generation: the best spec and score so far."""

    def summary(self) -> dict:
        """The result as JSON values, less the history."""
        return {"best": str(self.best), "ua": round(self.best_score, 4),
                "start_ua": round(self.start_score, 4), "evaluations": self.evaluations,
                "seconds": round(self.seconds, 1)}


def unweighted_accuracy(pred: torch.Tensor, ref: torch.Tensor, n_classes: int) -> float:
    recalls = [float((pred[ref == k] == k).float().mean()) for k in range(n_classes)
               if bool((ref == k).any())]
    return float(np.mean(recalls))


def score_spec(spec: HeadSpec, task: Task, steps: int = 300, lr: float = 1e-2,
               seed: int = 0) -> float:
    """Train a head of `spec` on the task's training part; its UA on the validation part."""
    torch.manual_seed(seed)
    head = build_head(spec, task.train_x.shape[1], task.n_classes, dropout=0.1)
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-3)
    head.train()
    for _ in range(steps):
        loss = F.cross_entropy(head(task.train_x), task.train_y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    head.eval()
    with torch.no_grad():
        return unweighted_accuracy(head(task.val_x).argmax(1), task.val_y, task.n_classes)


def evolve(task: Task, population: int = 6, generations: int = 5, children: int = 4,
           space: SearchSpace = SearchSpace(), start: Sequence[HeadSpec] = (), seed: int = 0,
           steps: int = 300) -> SearchResult:
    """(mu + lambda) evolution from `start` (or `population` random specs); each generation
    mutates `children` tournament-picked parents and keeps the best `population` specs."""
    started = time.perf_counter()
    rng = random.Random(seed)
    scores: dict[HeadSpec, float] = {}

    def score(spec: HeadSpec) -> float:
        if spec not in scores:
            scores[spec] = score_spec(spec, task, steps=steps, seed=seed)
        return scores[spec]

    pool = list(dict.fromkeys(start)) or list({space.random(rng) for _ in range(population)})
    pool.sort(key=lambda s: (-score(s), s))
    start_score = score(pool[0])
    history = [{"generation": 0, "best": str(pool[0]), "score": start_score}]
    for generation in range(1, generations + 1):
        for _ in range(children):
            parent = min(rng.sample(pool, min(2, len(pool))), key=lambda s: (-score(s), s))
            child = space.mutate(parent, rng)
            score(child)
            if child not in pool:
                pool.append(child)
        pool = sorted(pool, key=lambda s: (-score(s), s))[:population]
        history.append({"generation": generation, "best": str(pool[0]), "score": score(pool[0])})
    return SearchResult(pool[0], score(pool[0]), start_score, len(scores),
                        time.perf_counter() - started, history)


def language_tasks(checkpoint: str, selection: tuple[str, ...], log=print) -> dict[str, Task]:
    """One task per `selection` corpus the checkpoint was trained with: its language's gated
    embeddings of the checkpoint's training speakers (train) and held-out speakers (val)."""
    from edge_ser_train.run import load_clips, split
    from edge_ser_train.trainer import load_checkpoint

    model, cfg, _ = load_checkpoint(checkpoint)
    if cfg.model.family != "multigate":
        raise ValueError(f"{checkpoint}: model.family is {cfg.model.family!r}; the head search "
                         "needs a multigate checkpoint")
    # the checkpoint's own split (same corpora, seed and fraction): its held-out speakers
    train_clips, val_clips = split(cfg, load_clips(cfg))
    if not val_clips:
        raise ValueError(f"{checkpoint}: data.test_fraction is 0, so no held-out speakers")
    tasks = {}
    for corpus in sorted({c.corpus for c in train_clips}):
        if corpus not in selection:
            log(f"skipped {corpus}: not a selection corpus ({', '.join(selection)})")
            continue
        language, task = corpus_task(model, cfg.data.labels, corpus, train_clips, val_clips, log)
        tasks[language] = task
        log(f"{corpus}: {len(task.train_y)} training and {len(task.val_y)} held-out clips")
    return tasks


def corpus_task(model, labels: tuple[str, ...], corpus: str, train_clips: list,
                val_clips: list, log=print) -> tuple[str, Task]:
    """(language, task) of one corpus: its clips of `train_clips` and `val_clips` embedded
    through its language's gate, with their class indices."""
    from edge_ser_train.evaluate import clip_features

    parts = []
    for part in (train_clips, val_clips):
        feats, kept = clip_features([c for c in part if c.corpus == corpus], log)
        parts.append((embed_clips(model, feats, kept[0].language),
                      torch.tensor([labels.index(c.label) for c in kept])))
    return kept[0].language, Task(parts[0][0], parts[0][1], parts[1][0], parts[1][1],
                                  len(labels))


@torch.no_grad()
def embed_clips(model, feats_list: list[np.ndarray], language: str,
                batch_size: int = 32) -> torch.Tensor:
    """Embeddings (N, E) through `language`'s gate, in the order given."""
    out = []
    for start in range(0, len(feats_list), batch_size):
        chunk = feats_list[start:start + batch_size]
        lengths = torch.tensor([len(f) for f in chunk])
        batch = torch.zeros(len(chunk), int(lengths.max()), chunk[0].shape[1])
        for row, f in enumerate(chunk):
            batch[row, :len(f)] = torch.from_numpy(f)
        out.append(model.embed(batch, lengths, [language] * len(chunk)))
    return torch.cat(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m edge_ser_train.multigate.search",
        description="Search each selection language's head architecture on held-out speakers.")
    parser.add_argument("--checkpoint", required=True, help="a multigate model.pt")
    parser.add_argument("--out", help="write the result as JSON here")
    parser.add_argument("--selection", nargs="+",
                        help="corpora to search on (default: the protocol's selection corpora, "
                        "configs/protocol/default.yaml)")
    parser.add_argument("--population", type=int, default=6)
    parser.add_argument("--generations", type=int, default=5)
    parser.add_argument("--children", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    try:
        tasks = language_tasks(args.checkpoint, tuple(args.selection or protocol_selection()))
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = {"languages": {}}
    for language, task in tasks.items():
        result = evolve(task, args.population, args.generations, args.children, seed=args.seed)
        report["languages"][language] = {**result.summary(), "history": result.history}
        print(f"{language}: {result.best} UA {result.best_score:.3f} (start "
              f"{result.start_score:.3f}), {result.evaluations} heads in {result.seconds:.0f} s")
    report["seconds_total"] = round(time.perf_counter() - started, 1)
    entries = [f"{lang}={r['best']}" for lang, r in report["languages"].items()]
    print(f"model.multigate.language_heads=[{', '.join(entries)}]  "
          f"(search cost {report['seconds_total']:.0f} s, {args.threads} thread(s))")
    if args.out:
        from pathlib import Path

        from edge_ser.atomic_write import write_text_atomic

        write_text_atomic(Path(args.out), json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
