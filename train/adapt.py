"""Unsupervised cross-lingual adaptation, top to bottom: source-only, DANN and NNPM in one loop.

    data   = labelled source views (clean + augmented log-mel per utterance) and unlabelled
             target views; one random view and crop per example, as in supervised training
    step   = source batch: cross-entropy (+ NNPM memory loss, memory momentum update)
             target batch: NNPM multilabel loss (after the warm-up) | DANN language loss
    bn     = "separate": source and target batches pass the model apart, each normalised by its
             own batch statistics; "mixed": one batch holding both
    epoch  = NNPM: pseudo multilabels of every target utterance refreshed from the memory
    end    = optionally, every batch-norm layer's running statistics re-estimated on the target

Without source data (`AdaptData.source_views` empty) NNPM adapts from a fixed memory, the class
centroids a model package ships: the target loss alone trains the encoder, the classifier is
frozen so the memory and classifier keep the meaning they were trained with.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from edge_ser import contract
from edge_ser_train import nnpm
from edge_ser_train.adapt_config import AdaptConfig, NNPMConfig
from edge_ser_train.corpus import Clip
from edge_ser_train.dann import LanguageClassifier, dann_lambda, language_loss
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


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def _padded(feats_list: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(f) for f in feats_list])
    batch = torch.zeros(len(feats_list), int(lengths.max()), contract.N_MELS)
    for row, f in enumerate(feats_list):
        batch[row, :len(f)] = torch.from_numpy(f)
    return batch, lengths


def _by_length(feats_list: list[np.ndarray], batch_size: int) -> Iterator[np.ndarray]:
    """Index batches with similar lengths together (less padding in every statistic)."""
    order = np.argsort([len(f) for f in feats_list], kind="stable")
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]


@torch.no_grad()
def embed_all(model: EmotionModel, feats_list: list[np.ndarray], batch_size: int = 64
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(embeddings (n, E), logits (n, K)) of whole utterances, in input order, with the model's
    running batch-norm statistics (`embed_domain` normalises by a domain's own)."""
    embeddings = torch.empty(len(feats_list), model.classifier.in_features)
    logits = torch.empty(len(feats_list), model.classifier.out_features)
    model.eval()
    for idx in _by_length(feats_list, batch_size):
        out, emb = model(*_padded([feats_list[i] for i in idx]))
        embeddings[idx], logits[idx] = emb, out
    return embeddings, logits


@torch.no_grad()
def reestimate_bn_statistics(model: EmotionModel, feats_list: list[np.ndarray],
                             batch_size: int = 64) -> None:
    """Replace every batch-norm layer's running statistics by their average over `feats_list`
    (whole utterances): the model then normalises as a model trained on that domain would."""
    layers = batchnorm_layers(model)
    momenta = [m.momentum for m in layers]
    model.eval()
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches
        m.train()
    try:
        for idx in _by_length(feats_list, batch_size):
            model(*_padded([feats_list[i] for i in idx]))
    finally:
        for m, momentum in zip(layers, momenta):
            m.momentum = momentum
        model.eval()


@torch.no_grad()
def embed_domain(model: EmotionModel, feats_list: list[np.ndarray], own_statistics: bool
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(embeddings, logits) of whole utterances of one domain, in input order.

    own_statistics: batch norm normalises with this domain's statistics, averaged over all of
    `feats_list` (on a copy of the model), as a model used on that domain does; else with the
    model's running statistics. Statistics of single inference batches would differ from batch
    to batch (`embed_all` groups utterances by length, and length goes with emotion)."""
    if own_statistics:
        model = copy.deepcopy(model)
        reestimate_bn_statistics(model, feats_list)
    return embed_all(model, feats_list)


def _forward_pair(model: EmotionModel, source, target, mode: str):
    """Model outputs of a source and a target batch, each (feats, lengths) or None."""
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


class _Losses:
    """Running means of the named loss terms within an epoch."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, terms: dict[str, torch.Tensor]) -> None:
        for name, value in terms.items():
            self.sums[name] = self.sums.get(name, 0.0) + float(value.detach())
        self.count += 1

    def means(self) -> dict[str, float]:
        return {k: round(v / max(1, self.count), 4) for k, v in self.sums.items()}


def adapt(cfg: AdaptConfig, data: AdaptData, model: EmotionModel | None = None,
          memory: SourceMemory | None = None, log=print) -> AdaptResult:
    """Train (model None: from scratch) or adapt `model` with `cfg.method`; returns it in eval
    mode. `memory` is the fixed source memory of the source-free case (no source views)."""
    started = time.perf_counter()
    torch.manual_seed(cfg.optim.seed)
    torch.set_num_threads(cfg.optim.threads)
    rng = np.random.default_rng(cfg.optim.seed)
    labels, n_classes = data.labels, len(data.labels)
    n_source, n_target = len(data.source_views), len(data.target_views)
    source_free = n_source == 0
    method = cfg.method
    if source_free and (method != "nnpm" or memory is None):
        raise ValueError("without source data only NNPM from a memory bank can adapt; give "
                         "source corpora or a model with a memory bank")
    from_scratch = model is None
    if from_scratch:
        if source_free:
            raise ValueError("training from scratch needs labelled source data")
        model = EmotionModel(cfg.model, contract.N_MELS, n_classes)
        clean = np.concatenate([v[0] for v in data.source_views])
        model.encoder.input_norm.set_stats(torch.from_numpy(clean.mean(0)),
                                           torch.from_numpy(clean.std(0)))
    if model.classifier.out_features != n_classes:
        raise ValueError(f"the model has {model.classifier.out_features} classes, the data "
                         f"{n_classes} ({', '.join(labels)})")
    uses_target = method != "source"
    if uses_target and n_target == 0:
        raise ValueError(f"{method} needs target utterances")
    source_targets = torch.as_tensor(data.source_targets, dtype=torch.long)
    target_clean = [v[0] for v in data.target_views]

    if method == "nnpm" and not source_free:
        source_emb, _ = embed_domain(model, [v[0] for v in data.source_views],
                                     own_statistics=cfg.batchnorm == "separate")
        memory = SourceMemory.from_features(source_emb, source_targets, n_classes)
    language_clf = None
    params = [p for p in model.parameters()]
    adversarial = method == "dann" or (method == "nnpm" and not source_free
                                       and cfg.nnpm.adversarial_weight > 0)
    if adversarial:
        language_clf = LanguageClassifier(model.classifier.in_features, len(data.domains) + 1,
                                          cfg.dann.hidden)
        params += list(language_clf.parameters())
    # a head trained from scratch must learn; nnpm.classifier_lr is for adapting a trained one
    head_lr = (1.0 if method != "nnpm" or from_scratch else 0.0 if source_free
               else cfg.nnpm.classifier_lr)
    groups = adaptation_param_groups(model, params, head_lr)
    params = [p for g in groups for p in g["params"]]
    optimizer = torch.optim.AdamW(groups, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    # mean teacher (nnpm.teacher_momentum): labels the target and, with nnpm.teacher_is_model,
    # is the model returned
    teacher = (copy.deepcopy(model) if method == "nnpm" and cfg.nnpm.teacher_momentum > 0
               else None)

    batch = cfg.optim.batch_size
    # an epoch is one pass over the larger side (or the target), whatever the method, so that
    # source-only, DANN and NNPM given the same data take the same number of steps
    larger = max(n_source, n_target) if cfg.epoch_steps == "larger" else (n_target or n_source)
    steps_per_epoch = max(1, larger // batch)
    total_steps = steps_per_epoch * cfg.optim.epochs
    warmup_steps = steps_per_epoch * cfg.optim.warmup_epochs
    crop_frames = int(cfg.optim.crop_s * contract.FRAMES_PER_S)
    mask = cfg.augment.freq_mask_mels
    warmup = 0 if source_free else cfg.nnpm.warmup_epochs
    vote_views = cfg.nnpm.vote_views_without_source if source_free else cfg.nnpm.vote_views
    target_domain = torch.full((batch,), len(data.domains), dtype=torch.long)
    pseudo = weights = first_shares = None
    history: list[dict] = []
    step = 0
    n_refreshes = len(range(warmup, cfg.optim.epochs, cfg.nnpm.refresh_epochs))
    for epoch in range(cfg.optim.epochs):
        nnpm_on = method == "nnpm" and epoch >= warmup
        if nnpm_on and (epoch - warmup) % cfg.nnpm.refresh_epochs == 0:
            refresh = (epoch - warmup) // cfg.nnpm.refresh_epochs
            share = nnpm.scheduled_share(cfg.nnpm.select_share, cfg.nnpm.select_share_end,
                                         refresh, n_refreshes)
            if source_free and not cfg.nnpm.select_without_source:
                share = 1.0
            labeller, label_memory = ((model, memory) if teacher is None else
                                      (teacher, teacher_memory(cfg, teacher, data, memory)))
            pseudo, weights = target_pseudo_labels(cfg, labeller, label_memory,
                                                   data.target_views, share, first_shares,
                                                   vote_views)
            if first_shares is None:
                first_shares = pseudo.shares
        ramp = min(1.0, (epoch - warmup + 1) / (cfg.nnpm.ramp_epochs + 1)) if nnpm_on else 0.0
        model.train()
        if language_clf is not None:
            language_clf.train()
        losses, correct, seen = _Losses(), 0, 0
        for _ in range(steps_per_epoch):
            for group in optimizer.param_groups:
                group["lr"] = get_lr(step, total_steps, warmup_steps, cfg.optim.lr)
                if "lr_scale" in group:
                    group["lr"] *= group["lr_scale"]
            src = tgt = src_idx = tgt_idx = None
            if not source_free:
                src_idx = rng.choice(n_source, size=batch, p=data.source_weights)
                src = make_batch(data.source_views, src_idx, crop_frames, mask, rng)
            if method == "dann" or nnpm_on:
                tgt_idx = rng.choice(n_target, size=batch)
                tgt = make_batch(data.target_views, tgt_idx, crop_frames, mask, rng)
            out_s, out_t = _forward_pair(model, src, tgt, cfg.batchnorm)
            terms: dict[str, torch.Tensor] = {}
            if out_s is not None:
                y = source_targets[src_idx]
                terms["ce"] = F.cross_entropy(out_s[0], y,
                                              label_smoothing=cfg.optim.label_smoothing)
                correct += int((out_s[0].argmax(1) == y).sum())
                seen += len(y)
            if method == "nnpm" and out_s is not None and cfg.nnpm.memory_weight > 0:
                terms["mem"] = cfg.nnpm.memory_weight * nnpm.memory_loss(
                    out_s[1], y, memory, cfg.nnpm.temperature, torch.as_tensor(src_idx))
            if nnpm_on and cfg.nnpm.source_weight != 1.0:
                for name in ("ce", "mem"):
                    if name in terms:
                        terms[name] = cfg.nnpm.source_weight * terms[name]
            if nnpm_on:
                idx = torch.as_tensor(tgt_idx)
                terms.update(_target_terms(cfg.nnpm, out_t, pseudo.sets[idx], weights[idx],
                                           memory, ramp * cfg.nnpm.target_weight))
            if language_clf is not None and out_t is not None:
                final = cfg.dann.weight if method == "dann" else cfg.nnpm.adversarial_weight
                lam = dann_lambda(step / max(1, total_steps), final, cfg.dann.gamma)
                emb = torch.cat([out_s[1], out_t[1]])
                domains = torch.cat([torch.as_tensor(data.source_domains[src_idx]),
                                     target_domain[:len(tgt_idx)]])
                terms["lang"] = language_loss(language_clf, emb, domains, lam)
            loss = sum(terms.values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            optimizer.step()
            if method == "nnpm" and out_s is not None:
                memory.update(torch.as_tensor(src_idx), out_s[1], cfg.nnpm.memory_momentum)
            if teacher is not None:
                ema_update(teacher, model, cfg.nnpm.teacher_momentum)
            losses.add(terms)
            step += 1
        entry = {"epoch": epoch + 1, **losses.means(),
                 "train_acc": round(correct / seen, 4) if seen else None,
                 "seconds": round(time.perf_counter() - started, 1)}
        if nnpm_on and pseudo is not None:
            entry["pseudo"] = {**pseudo.stats(labels),
                               "selected_share": round(float((weights > 0).float().mean()), 3)}
        history.append(entry)
        log(_progress_line(entry, cfg.optim.epochs, started))
    model.eval()
    for p in model.classifier.parameters():
        p.requires_grad_(True)
    if teacher is not None and cfg.nnpm.teacher_is_model:  # the mean teacher is the result
        model = teacher
        model.eval()
    else:
        teacher = None  # the student is: its own memory labels the final pseudo-labels
    if uses_target and cfg.target_bn_stats:
        reestimate_bn_statistics(model, target_clean)
    if method == "nnpm":
        label_memory = memory if teacher is None else teacher_memory(cfg, model, data, memory)
        pseudo, _ = target_pseudo_labels(cfg, model, label_memory, data.target_views,
                                         cfg.nnpm.select_share_end, first_shares, vote_views)
    return AdaptResult(model, labels, memory, pseudo, history, time.perf_counter() - started)


def adaptation_param_groups(model: EmotionModel, params: list[nn.Parameter],
                            classifier_lr: float) -> list[dict]:
    """AdamW parameter groups of `params` (the model's and any extra module's).

    classifier_lr 1: one group, every parameter at the scheduled rate. 0: the classifier head is
    frozen (`requires_grad` off until the loop ends, left out of the optimizer). Between: the
    head is a second group whose rate is that multiple of the scheduled one (`lr_scale`)."""
    if classifier_lr >= 1.0:
        return [{"params": list(params)}]
    head = {id(p) for p in model.classifier.parameters()}
    rest = [p for p in params if id(p) not in head]
    if classifier_lr <= 0.0:
        for p in model.classifier.parameters():
            p.requires_grad_(False)
        return [{"params": rest}]
    return [{"params": rest},
            {"params": [p for p in params if id(p) in head], "lr_scale": classifier_lr}]


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """Mean teacher step: every teacher weight <- momentum * itself + (1 - momentum) * the
    student's; buffers (batch-norm running statistics) are copied from the student."""
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"teacher momentum must be in [0, 1), got {momentum}")
    for t, s in zip(teacher.parameters(), student.parameters(), strict=True):
        t.mul_(momentum).add_(s.detach(), alpha=1.0 - momentum)
    for t, s in zip(teacher.buffers(), student.buffers(), strict=True):
        t.copy_(s)


def teacher_memory(cfg: AdaptConfig, teacher: EmotionModel, data: AdaptData,
                   memory: SourceMemory) -> SourceMemory:
    """The memory the mean teacher labels the target against: its own embeddings of the clean
    source utterances (normalised as the first memory is), so teacher features are compared
    with slots of the same network; without source audio, the fixed memory itself."""
    if not data.source_views:
        return memory
    features, _ = embed_domain(teacher, [v[0] for v in data.source_views],
                               own_statistics=cfg.batchnorm == "separate")
    return SourceMemory.from_features(features, memory.labels, memory.n_classes)


def _target_terms(cfg: NNPMConfig, out_t, sets: torch.Tensor, weights: torch.Tensor,
                  memory: SourceMemory, scale: float) -> dict[str, torch.Tensor]:
    """NNPM's loss terms on a target batch: the multilabel loss on the classifier and on the
    memory's class probabilities, and the optional diversity term."""
    logits, embedding = out_t
    terms = {"ml": scale * nnpm.multilabel_loss(logits, sets, weights)}
    if cfg.memory_target_weight > 0:
        log_p = nnpm.class_log_probs(memory.similarities(embedding), memory.labels,
                                     memory.n_classes, cfg.temperature)
        terms["ml_mem"] = scale * cfg.memory_target_weight * nnpm.multilabel_loss(
            log_p, sets, weights)
    if cfg.diversity_weight > 0:
        terms["div"] = scale * cfg.diversity_weight * nnpm.diversity_loss(logits)
    return terms


def target_pseudo_labels(cfg: AdaptConfig, model: EmotionModel, memory: SourceMemory,
                         target_views: list[list[np.ndarray]], share: float = 1.0,
                         first_shares: torch.Tensor | None = None, views: bool = False
                         ) -> tuple[nnpm.PseudoLabels, torch.Tensor]:
    """Pseudo multilabels and loss weights of every target utterance under the current model.

    `target_views` holds per utterance its clean log-mel and its augmented views. The memory
    (its slots, or with `nnpm.label_memory` centroids a few centroids per class of them)
    votes on the clean clip, or with `views` (`nnpm.vote_views`, `vote_views_without_source`)
    on every view, the shares averaged, and optionally mixed with the classifier's
    probabilities (`nnpm.classifier_vote`), optionally re-read from class prototypes of the
    target's own features (`nnpm.target_prototypes`); the shares are smoothed over the
    target's own neighbour graph (`nnpm.propagation`) and blended with `first_shares`, the first
    refresh's (`nnpm.anchor`) and optionally rebalanced over the classes
    (`nnpm.equipartition`); with `nnpm.agreement` only utterances the classifier predicts
    as their pseudo class stay eligible; then per pseudo class only its `share` most
    confident eligible utterances get a weight."""
    own = cfg.batchnorm == "separate"
    c = cfg.nnpm
    if c.label_memory == "centroids" and not memory.fixed:
        memory = memory.centroids(c.label_centroids)

    def vote(features: torch.Tensor) -> torch.Tensor:
        return nnpm.knn_class_shares(memory.similarities(features), memory.labels,
                                     memory.n_classes, c.k, c.temperature)

    features, logits = embed_domain(model, [v[0] for v in target_views], own_statistics=own)
    shares = vote(features)
    if views:
        # each view set normalised by its own statistics, as the clean clips are by theirs
        n_views = min(len(v) for v in target_views)
        for i in range(1, n_views):
            shares = shares + vote(embed_domain(model, [v[i] for v in target_views], own)[0])
        shares = shares / n_views
    if c.classifier_vote > 0:
        shares = ((1.0 - c.classifier_vote) * shares
                  + c.classifier_vote * torch.softmax(logits, dim=1).to(shares.dtype))
    shares = nnpm.target_prototype_shares(shares, features, c.target_prototypes,
                                          c.temperature)
    shares = nnpm.propagate_shares(shares, features, c.propagation_k, c.propagation,
                                   c.temperature)
    shares = nnpm.anchored_shares(shares, first_shares, c.anchor)
    if c.equipartition:
        shares = nnpm.equipartitioned_shares(shares)
    pseudo = nnpm.pseudo_multilabels(shares, c.pseudo_label, c.min_share)
    eligible = logits.argmax(1) == pseudo.top if c.agreement else None
    keep = nnpm.select_confident(pseudo, share, eligible)
    weights = (nnpm.class_balanced_weights(pseudo, keep) if c.balance_classes
               else pseudo.confidence * keep)
    return pseudo, weights


def _progress_line(entry: dict, epochs: int, started: float) -> str:
    elapsed = time.perf_counter() - started
    eta = elapsed / entry["epoch"] * (epochs - entry["epoch"])
    terms = "  ".join(f"{k} {v:.3f}" for k, v in entry.items()
                      if k in ("ce", "mem", "ml", "ml_mem", "div", "lang"))
    line = f"epoch {entry['epoch']:3d}/{epochs}  {terms}"
    if entry.get("train_acc") is not None:
        line += f"  source acc {entry['train_acc']:.1%}"
    if "pseudo" in entry:
        p = entry["pseudo"]
        line += (f"  pseudo: set size {p['mean_set_size']:.2f}, confidence "
                 f"{p['mean_confidence']:.2f}")
    return line + f"  ({elapsed:.0f} s, about {eta:.0f} s left)"


def predict(model: EmotionModel, feats_list: list[np.ndarray]) -> np.ndarray:
    """Class indices (n,) of whole utterances with the model's running statistics."""
    _, logits = embed_all(model, feats_list)
    return logits.argmax(1).numpy()
