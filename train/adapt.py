"""Unsupervised cross-lingual adaptation, top to bottom: one short function per method.

    source-only  labelled source batches, cross-entropy (the experiment table's source models)
    DANN         + a target batch per step: a language classifier behind gradient reversal
                 learns to tell the languages apart, the reversed gradient makes them alike
    NNPM         + a memory of the source utterances' features: the memory loss on source;
                 at every epoch each target utterance is pseudo-labelled by the vote of a few
                 centroids per class of the memory, and the multilabel loss trains on the labels
    NNPM without source audio: the memory is a model package's fixed source exemplar set (or,
                 without one, its memory bank), the target loss alone trains the encoder,
                 the classifier head is frozen

Shared by all: one random view and crop per example, as in supervised training; AdamW on the
summed loss terms at the scheduled rate, the gradient norm clipped to 5; an epoch is one pass
over the target (over the source when there is none), so methods given the same data take the
same number of steps. batchnorm "separate": source and target batches pass the model apart,
each normalised by its own statistics; "mixed": one batch of both. At the end (methods that see
the target, `target_bn_stats`) every batch-norm layer's running statistics are re-estimated on
the target. The objective of NNPM is `train.nnpm`, on tensors. A start model of either family
adapts; what a multigate model does differently (every clip on the shared route, GE2E at its
low rate, every head kept by NNPM) is `train.adapt_family`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn import functional as F

from edge_ser import contract
from edge_ser_train import adapt_family, nnpm
from edge_ser_train.adapt_config import AdaptConfig
from edge_ser_train.corpus import Clip
from edge_ser_train.dann import LanguageClassifier, dann_lambda, language_loss
from edge_ser_train.inference import embed_domain, reestimate_bn_statistics
from edge_ser_train.memory import SourceMemory
from edge_ser_train.model import EmotionModel
from edge_ser_train.trainer import balanced_weights, get_lr, make_batch


@dataclass
class AdaptData:
    """Everything the loop reads: log-mel views of both sides, source labels and domains."""

    labels: tuple[str, ...]
    target_views: list[list[np.ndarray]]
    """Per target utterance: [clean (frames, N_MELS), augmented views ...]."""
    source_views: list[list[np.ndarray]] = field(default_factory=list)
    source_targets: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    """(n_source,) class indices into `labels`."""
    source_domains: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    """(n_source,) index into `domains` of each source utterance's corpus."""
    source_weights: np.ndarray | None = None
    """(n_source,) sampling probabilities (balanced over corpus and class); None = uniform."""
    domains: tuple[str, ...] = ()
    """Source domain names; the target is domain number len(domains)."""

    def __post_init__(self) -> None:
        n = len(self.source_views)
        if len(self.source_targets) != n or len(self.source_domains) != n:
            raise ValueError(f"{n} source utterances but {len(self.source_targets)} labels and "
                             f"{len(self.source_domains)} domain ids")
        if n and not self.domains:
            raise ValueError("source utterances need their domain names")

    @classmethod
    def from_clips(cls, labels: tuple[str, ...], source_clips: list[Clip],
                   source_views: list[list[np.ndarray]],
                   target_views: list[list[np.ndarray]]) -> AdaptData:
        """Labelled source clips (one domain per corpus, sampled balanced over corpus and
        class) with their views, and the target views."""
        domains = tuple(sorted({c.corpus for c in source_clips}))
        return cls(labels=tuple(labels), target_views=target_views, source_views=source_views,
                   source_targets=np.array([labels.index(c.label) for c in source_clips],
                                           dtype=np.int64),
                   source_domains=np.array([domains.index(c.corpus) for c in source_clips],
                                           dtype=np.int64),
                   source_weights=balanced_weights(source_clips) if source_clips else None,
                   domains=domains)


@dataclass
class AdaptResult:
    model: EmotionModel
    labels: tuple[str, ...]
    memory: SourceMemory | None
    pseudo: nnpm.PseudoLabels | None
    """The last pseudo multilabels of the target utterances (NNPM), in target order."""
    history: list[dict]
    seconds: float


def adapt(cfg: AdaptConfig, data: AdaptData, model: EmotionModel | None = None,
          memory: SourceMemory | None = None, log=print) -> AdaptResult:
    """`cfg.method` on `data`, from `model` (None: a new model, trained from scratch); the model
    comes back in eval mode. `memory` is the fixed memory bank NNPM adapts toward without source
    audio (`data` holding no source utterances)."""
    if not data.source_views and (cfg.method != "nnpm" or memory is None):
        raise ValueError("without source data only NNPM from a memory bank can adapt; give "
                         "source corpora or a model with a memory bank")
    if cfg.method == "source":
        return train_source_only(cfg, data, model, log)
    if not data.target_views:
        raise ValueError(f"{cfg.method} needs target utterances")
    if cfg.method == "dann":
        return adapt_dann(cfg, data, model, log)
    if model is None:
        raise ValueError("NNPM adapts a trained model (its memory must already mean the "
                         "classes): train one with method source first")
    return adapt_nnpm(cfg, data, model, memory, log)


def train_source_only(cfg: AdaptConfig, data: AdaptData, model: EmotionModel | None,
                      log=print) -> AdaptResult:
    run = _Run(cfg, data, model)
    optimizer, params = run.optimizer()
    for _ in range(cfg.optim.epochs):
        run.model.train()
        for _ in range(run.steps_per_epoch):
            run.set_lr(optimizer)
            src_idx, src = run.source_batch()
            out_s, _ = forward_pair(run.model, src, None, cfg.batchnorm)
            run.step(optimizer, params, run.source_terms(out_s, src_idx))
        run.end_epoch(log)
    return run.result()


def adapt_dann(cfg: AdaptConfig, data: AdaptData, model: EmotionModel | None,
               log=print) -> AdaptResult:
    run = _Run(cfg, data, model)
    language_clf = LanguageClassifier(adapt_family.embedding_dim(run.model),
                                      len(data.domains) + 1, cfg.dann.hidden)
    optimizer, params = run.optimizer(list(language_clf.parameters()))
    for _ in range(cfg.optim.epochs):
        run.model.train()
        language_clf.train()
        for _ in range(run.steps_per_epoch):
            run.set_lr(optimizer)
            src_idx, src = run.source_batch()
            tgt_idx, tgt = run.target_batch()
            out_s, out_t = forward_pair(run.model, src, tgt, cfg.batchnorm)
            terms = run.source_terms(out_s, src_idx)
            lam = dann_lambda(run.steps / max(1, run.total_steps), cfg.dann.weight,
                              cfg.dann.gamma)
            # the languages: each source utterance's corpus, and the target after them
            domains = torch.cat([torch.as_tensor(data.source_domains[src_idx]),
                                 torch.full((len(tgt_idx),), len(data.domains),
                                            dtype=torch.long)])
            terms["lang"] = language_loss(language_clf, torch.cat([out_s[1], out_t[1]]),
                                          domains, lam)
            run.step(optimizer, params, terms)
        run.end_epoch(log)
    if cfg.target_bn_stats:
        reestimate_bn_statistics(run.model, [v[0] for v in data.target_views])
    return run.result()


def adapt_nnpm(cfg: AdaptConfig, data: AdaptData, model: EmotionModel,
               memory: SourceMemory | None = None, log=print) -> AdaptResult:
    """With source utterances, the memory starts as their features (each domain normalised by
    its own statistics with separate batch norm) and follows the encoder; without, `memory` is
    the fixed memory bank and only the target loss trains."""
    run = _Run(cfg, data, model)
    c = cfg.nnpm
    with_source = bool(data.source_views)
    if with_source:
        features, _ = embed_domain(run.model, [v[0] for v in data.source_views],
                                   own_statistics=cfg.batchnorm == "separate")
        memory = SourceMemory.from_features(features, data.source_targets, len(data.labels))
    # the head stays as trained: target features move to where it already means the class
    heads = adapt_family.head_modules(run.model)
    for p in (p for head in heads for p in head.parameters()):
        p.requires_grad_(False)
    optimizer, params = run.optimizer()
    for epoch in range(cfg.optim.epochs):
        pseudo, weights = target_pseudo_labels(cfg, run.model, memory, data.target_views)
        scale = nnpm.ramp(epoch, c.ramp_epochs)
        run.model.train()
        for _ in range(run.steps_per_epoch):
            run.set_lr(optimizer)
            src_idx, src = run.source_batch() if with_source else (None, None)
            tgt_idx, tgt = run.target_batch()
            out_s, out_t = forward_pair(run.model, src, tgt, cfg.batchnorm)
            terms = {}
            if with_source:
                terms.update(run.source_terms(out_s, src_idx))
                if c.memory_weight > 0:
                    terms["mem"] = c.memory_weight * nnpm.memory_loss(
                        out_s[1], run.source_targets[src_idx], memory, c.temperature,
                        torch.as_tensor(src_idx))
            idx = torch.as_tensor(tgt_idx)
            terms.update(nnpm.target_loss_terms(*out_t, pseudo.sets[idx], weights[idx], memory,
                                                c.temperature, scale))
            run.step(optimizer, params, terms)
            if with_source:
                memory.update(torch.as_tensor(src_idx), out_s[1], c.memory_momentum)
        run.end_epoch(log, pseudo=pseudo.stats(data.labels))
    run.model.eval()
    for p in (p for head in heads for p in head.parameters()):
        p.requires_grad_(True)
    if cfg.target_bn_stats:
        reestimate_bn_statistics(run.model, [v[0] for v in data.target_views])
    pseudo, _ = target_pseudo_labels(cfg, run.model, memory, data.target_views)
    return run.result(memory, pseudo)


def target_pseudo_labels(cfg: AdaptConfig, model: EmotionModel, memory: SourceMemory,
                         target_views: list[list[np.ndarray]]
                         ) -> tuple[nnpm.PseudoLabels, torch.Tensor]:
    """Pseudo multilabels of every target utterance under the current model, and their loss
    weights (class-balanced confidences).

    The voters are `nnpm.label_centroids` spherical k-means centroids per class of the live
    memory's slots or of a package's exemplar set (a fixed memory bank votes as it is). Each
    of a target utterance's views (`target_views`: per utterance the clean log-mel and its
    augmented views) is embedded, each view set normalised by its own statistics with separate
    batch norm, and the k nearest voters' class shares are averaged over the views."""
    c = cfg.nnpm
    if memory.labels_through_centroids:
        memory = memory.centroids(c.label_centroids)
    own_statistics = cfg.batchnorm == "separate"
    n_views = min(len(v) for v in target_views)
    shares = None
    for i in range(n_views):
        features, _ = embed_domain(model, [v[i] for v in target_views], own_statistics)
        vote = nnpm.knn_class_shares(memory.similarities(features), memory.labels,
                                     memory.n_classes, c.k, c.temperature)
        shares = vote if shares is None else shares + vote
    pseudo = nnpm.pseudo_multilabels(shares / n_views, c.pseudo_label, c.min_share)
    return pseudo, nnpm.class_balanced_weights(pseudo)


Batch = tuple[torch.Tensor, torch.Tensor]
"""(log-mel (B, T, N_MELS), lengths (B,))."""


def forward_pair(model: EmotionModel, source: Batch | None, target: Batch | None, mode: str):
    """Model outputs (logits, embedding) of a source and a target batch (either may be None):
    apart ("separate"), or as one batch normalised together ("mixed")."""
    if source is None or target is None or mode == "separate":
        out_s = model(*source) if source is not None else None
        out_t = model(*target) if target is not None else None
        return out_s, out_t
    (xs, ls), (xt, lt) = source, target
    frames = max(xs.shape[1], xt.shape[1])
    feats = torch.cat([F.pad(xs, (0, 0, 0, frames - xs.shape[1])),
                       F.pad(xt, (0, 0, 0, frames - xt.shape[1]))])
    logits, emb = model(feats, torch.cat([ls, lt]))
    n = len(xs)
    return (logits[:n], emb[:n]), (logits[n:], emb[n:])


class _Run:
    """The steps every method shares: seeding, the model, the step schedule, random batches,
    the optimiser step and the per-epoch record."""

    def __init__(self, cfg: AdaptConfig, data: AdaptData, model: EmotionModel | None):
        self.started = time.perf_counter()
        self.cfg, self.data = cfg, data
        torch.manual_seed(cfg.optim.seed)
        torch.set_num_threads(cfg.optim.threads)
        self.rng = np.random.default_rng(cfg.optim.seed)
        self.model = model if model is not None else new_model(cfg, data)
        n_classes = len(data.labels)
        if adapt_family.n_classes(self.model) != n_classes:
            raise ValueError(f"the model has {adapt_family.n_classes(self.model)} classes, the "
                             f"data {n_classes} ({', '.join(data.labels)})")
        self.source_targets = torch.as_tensor(data.source_targets, dtype=torch.long)
        # batches are drawn with replacement, always `batch_size` of them (>= 2, for batch norm)
        self.batch_size = cfg.optim.batch_size
        self.steps_per_epoch = max(1, len(data.target_views or data.source_views)
                                   // self.batch_size)
        self.total_steps = self.steps_per_epoch * cfg.optim.epochs
        self.warmup_steps = self.steps_per_epoch * cfg.optim.warmup_epochs
        self.crop_frames = int(cfg.optim.crop_s * contract.FRAMES_PER_S)
        self.steps = 0
        self.history: list[dict] = []
        self._sums: dict[str, float] = {}
        self._correct = self._seen = self._batches = 0

    def optimizer(self, extra: list = ()) -> tuple[torch.optim.Optimizer, list]:
        """AdamW over the model's trainable parameters and `extra`, and those parameters."""
        groups = adapt_family.optimizer_groups(self.model, extra)
        optimizer = torch.optim.AdamW(groups, lr=self.cfg.optim.lr,
                                      weight_decay=self.cfg.optim.weight_decay)
        return optimizer, [p for group in groups for p in group["params"]]

    def set_lr(self, optimizer: torch.optim.Optimizer) -> None:
        lr = get_lr(self.steps, self.total_steps, self.warmup_steps, self.cfg.optim.lr)
        for group in optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"] if "lr_scale" in group else lr

    def source_batch(self) -> tuple[np.ndarray, Batch]:
        """Indices and batch of source utterances, sampled balanced over corpus and class."""
        idx = self.rng.choice(len(self.data.source_views), size=self.batch_size,
                              p=self.data.source_weights)
        return idx, self._batch(self.data.source_views, idx)

    def target_batch(self) -> tuple[np.ndarray, Batch]:
        idx = self.rng.choice(len(self.data.target_views), size=self.batch_size)
        return idx, self._batch(self.data.target_views, idx)

    def _batch(self, views: list[list[np.ndarray]], idx: np.ndarray) -> Batch:
        return make_batch(views, idx, self.crop_frames, self.cfg.augment.freq_mask_mels,
                          self.rng)

    def cross_entropy(self, out_s, src_idx: np.ndarray) -> torch.Tensor:
        """The source loss; counts the batch's right answers for the epoch's accuracy."""
        y = self.source_targets[src_idx]
        self._correct += int((out_s[0].argmax(1) == y).sum())
        self._seen += len(y)
        return F.cross_entropy(out_s[0], y, label_smoothing=self.cfg.optim.label_smoothing)

    def source_terms(self, out_s, src_idx: np.ndarray) -> dict[str, torch.Tensor]:
        """The source loss terms: cross-entropy ("ce"), and the family's others."""
        return {"ce": self.cross_entropy(out_s, src_idx),
                **adapt_family.source_aux_terms(self.model, out_s[1],
                                                self.source_targets[src_idx])}

    def step(self, optimizer: torch.optim.Optimizer, params: list,
             terms: dict[str, torch.Tensor]) -> None:
        """One optimiser step on the sum of the loss terms (in their order)."""
        loss = sum(terms.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        optimizer.step()
        for name, value in terms.items():
            self._sums[name] = self._sums.get(name, 0.0) + float(value.detach())
        self._batches += 1
        self.steps += 1

    def end_epoch(self, log, **extra) -> None:
        """Record the epoch's mean loss terms and source accuracy, and print them."""
        entry = {"epoch": len(self.history) + 1,
                 **{k: round(v / max(1, self._batches), 4) for k, v in self._sums.items()},
                 "train_acc": round(self._correct / self._seen, 4) if self._seen else None,
                 "seconds": round(time.perf_counter() - self.started, 1), **extra}
        self.history.append(entry)
        self._sums, self._correct, self._seen, self._batches = {}, 0, 0, 0
        log(_progress_line(entry, self.cfg.optim.epochs, self.started))

    def result(self, memory: SourceMemory | None = None,
               pseudo: nnpm.PseudoLabels | None = None) -> AdaptResult:
        self.model.eval()
        return AdaptResult(self.model, self.data.labels, memory, pseudo, self.history,
                           time.perf_counter() - self.started)


def new_model(cfg: AdaptConfig, data: AdaptData) -> EmotionModel:
    """An untrained model whose input normalisation is the clean source views' statistics."""
    if not data.source_views:
        raise ValueError("training from scratch needs labelled source data")
    if cfg.model.family != "tcn":
        raise ValueError(f"model.family = {cfg.model.family}: adapt trains only the tcn family "
                         "from scratch; train a multigate model with `train`")
    model = EmotionModel(cfg.model, contract.N_MELS, len(data.labels))
    clean = np.concatenate([v[0] for v in data.source_views])
    model.encoder.input_norm.set_stats(torch.from_numpy(clean.mean(0)),
                                       torch.from_numpy(clean.std(0)))
    return model


def _progress_line(entry: dict, epochs: int, started: float) -> str:
    elapsed = time.perf_counter() - started
    eta = elapsed / entry["epoch"] * (epochs - entry["epoch"])
    terms = "  ".join(f"{k} {v:.3f}" for k, v in entry.items()
                      if k in ("ce", "aux", "mem", "ml", "ml_mem", "lang"))
    line = f"epoch {entry['epoch']:3d}/{epochs}  {terms}"
    if entry.get("train_acc") is not None:
        line += f"  source acc {entry['train_acc']:.1%}"
    if "pseudo" in entry:
        p = entry["pseudo"]
        line += (f"  pseudo: set size {p['mean_set_size']:.2f}, confidence "
                 f"{p['mean_confidence']:.2f}")
    return line + f"  ({elapsed:.0f} s, about {eta:.0f} s left)"
