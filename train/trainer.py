"""Supervised multi-corpus training, top to bottom.

    views  = cached log-mel views of every training clip (clean + augmented)
    sample = balanced over (corpus, class), one random view, one random crop, a frequency mask
    model  = EmotionModel; AdamW; linear warm-up then cosine decay (`get_lr`)
    save   = a checkpoint of plain tensors and values, loadable with weights_only=True
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from edge_ser import contract
from edge_ser.config import to_dict
from edge_ser_train.config import TrainConfig
from edge_ser_train.corpus import Clip
from edge_ser_train.model import EmotionModel, MultiGateModel, build_model
from edge_ser_train.views import load_views

CHECKPOINT_FORMAT = 1


@dataclass
class TrainResult:
    model: EmotionModel
    labels: tuple[str, ...]
    history: list[dict]
    seconds: float


def get_lr(step: int, total_steps: int, warmup_steps: int, peak_lr: float) -> float:
    """Linear warm-up to `peak_lr`, then cosine decay to 1% of it."""
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return peak_lr * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))


def balanced_weights(clips: list[Clip], sampling: str = "corpus") -> np.ndarray:
    """Sampling weights. `corpus`: every (corpus, class) pair the same share within its corpus,
    and every corpus the same share overall. `pooled`: every class the same share of the pooled
    clips, each corpus in proportion to its clips of that class."""
    if sampling == "pooled":
        class_counts = Counter(c.label for c in clips)
        weights = np.array([1.0 / class_counts[c.label] for c in clips])
        return weights / weights.sum()
    pair_counts = Counter((c.corpus, c.label) for c in clips)
    classes_per_corpus = Counter(corpus for corpus, _ in pair_counts)
    weights = np.array([1.0 / (pair_counts[(c.corpus, c.label)] * classes_per_corpus[c.corpus])
                        for c in clips])
    return weights / weights.sum()


def make_batch(views: list[list[np.ndarray]], indices: np.ndarray, crop_frames: int,
               freq_mask_mels: int, rng: np.random.Generator):
    """Stack one random view and crop per index; returns (feats (B, T, M), lengths (B,))."""
    chosen = []
    for i in indices:
        feats = views[i][rng.integers(len(views[i]))]
        if len(feats) > crop_frames:
            start = rng.integers(len(feats) - crop_frames + 1)
            feats = feats[start:start + crop_frames]
        chosen.append(feats)
    lengths = np.array([len(f) for f in chosen])
    batch = np.zeros((len(chosen), lengths.max(), contract.N_MELS), dtype=np.float32)
    for row, feats in enumerate(chosen):
        batch[row, :len(feats)] = feats
        if freq_mask_mels > 0:
            width = rng.integers(1, freq_mask_mels + 1)
            lo = rng.integers(contract.N_MELS - width + 1)
            # Masked bands take the clip's mean level, not silence, so the mask adds no new cue.
            batch[row, :len(feats), lo:lo + width] = feats[:, lo:lo + width].mean()
    return torch.from_numpy(batch), torch.from_numpy(lengths)


MIXUP_ALPHA = 0.4


def mix_batch(feats: torch.Tensor, lengths: torch.Tensor, soft: torch.Tensor,
              corpora: list[str], share: float, rng: np.random.Generator):
    """Blend `share` of the rows with a partner row, from another corpus where the batch has
    one: log-mel frames (over the shorter of the two lengths, which the row keeps) and one-hot
    targets by one weight ~ Beta(MIXUP_ALPHA, MIXUP_ALPHA). Returns (feats, lengths, soft)."""
    feats, lengths, soft = feats.clone(), lengths.clone(), soft.clone()
    originals, original_soft, original_lengths = feats.clone(), soft.clone(), lengths.clone()
    for row in np.flatnonzero(rng.random(len(corpora)) < share):
        others = [j for j in range(len(corpora)) if corpora[j] != corpora[row]]
        partner = int(rng.choice(others or [j for j in range(len(corpora)) if j != row]))
        weight = float(rng.beta(MIXUP_ALPHA, MIXUP_ALPHA))
        n = int(min(original_lengths[row], original_lengths[partner]))
        feats[row, :n] = weight * originals[row, :n] + (1.0 - weight) * originals[partner, :n]
        feats[row, n:] = 0.0
        lengths[row] = n
        soft[row] = weight * original_soft[row] + (1.0 - weight) * original_soft[partner]
    return feats, lengths, soft


def train(cfg: TrainConfig, clips: list[Clip], log=print) -> TrainResult:
    """Train an EmotionModel on labelled `clips`; returns the model in eval mode."""
    started = time.perf_counter()
    torch.manual_seed(cfg.optim.seed)
    torch.set_num_threads(cfg.optim.threads)
    rng = np.random.default_rng(cfg.optim.seed)
    labels = cfg.data.labels
    targets = torch.tensor([labels.index(c.label) for c in clips])

    views = load_views(clips, cfg.augment.views, cfg.augment, cfg.data.max_clip_s,
                       cfg.data.cache_dir, workers=cfg.optim.threads)
    log(f"views ready for {len(clips)} clips in {time.perf_counter() - started:.0f} s")

    model = build_model(cfg.model, contract.N_MELS, len(labels),
                        tuple(sorted({c.language for c in clips})), pretrained=True)
    clean = np.concatenate([v[0] for v in views])
    model.encoder.input_norm.set_stats(torch.from_numpy(clean.mean(0)),
                                       torch.from_numpy(clean.std(0)))

    multigate = cfg.model.family == "multigate"
    params = model.optimizer_groups() if multigate else model.parameters()
    optimizer = torch.optim.AdamW(params, lr=cfg.optim.lr,
                                  weight_decay=cfg.optim.weight_decay)
    weights = balanced_weights(clips, cfg.optim.sampling)
    steps_per_epoch = max(1, len(clips) // cfg.optim.batch_size)
    total_steps = steps_per_epoch * cfg.optim.epochs
    warmup_steps = steps_per_epoch * cfg.optim.warmup_epochs
    crop_frames = int(cfg.optim.crop_s * contract.FRAMES_PER_S)
    history = []
    step = 0
    for epoch in range(cfg.optim.epochs):
        model.train()
        losses, correct, seen = [], 0, 0
        for _ in range(steps_per_epoch):
            idx = rng.choice(len(clips), size=cfg.optim.batch_size, p=weights)
            feats, lengths = make_batch(views, idx, crop_frames, cfg.augment.freq_mask_mels, rng)
            for group in optimizer.param_groups:
                group["lr"] = (get_lr(step, total_steps, warmup_steps, cfg.optim.lr)
                               * group.get("lr_scale", 1.0))
            wanted = targets[idx]
            if cfg.optim.mixup > 0:
                feats, lengths, wanted = mix_batch(
                    feats, lengths, F.one_hot(wanted, len(labels)).float(),
                    [clips[i].corpus for i in idx], cfg.optim.mixup, rng)
            logits, emb = model(feats, lengths, [clips[i].language for i in idx])
            loss = F.cross_entropy(logits, wanted, label_smoothing=cfg.optim.label_smoothing)
            if multigate:
                loss = loss + model.aux_loss(emb, targets[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            losses.append(loss.item())
            correct += int((logits.argmax(1) == targets[idx]).sum())
            seen += len(idx)
            step += 1
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)),
                        "train_acc": correct / seen})
        log(f"epoch {epoch + 1:3d}/{cfg.optim.epochs}  loss {np.mean(losses):.3f}  "
            f"train acc {correct / seen:.1%}  ({time.perf_counter() - started:.0f} s)")
    model.eval()
    return TrainResult(model, labels, history, time.perf_counter() - started)


@torch.no_grad()
def predict_logits(model: EmotionModel, feats_list: list[np.ndarray],
                   batch_size: int = 64,
                   languages: list[str | None] | None = None) -> np.ndarray:
    """Whole-clip logits (n, K) for a list of (frames, mels) arrays; `languages` (one per array)
    routes a multigate model's clips through their language's gate and head, None through the
    shared ones (what every clip of an unseen language takes)."""
    model.eval()
    out = []
    order = np.argsort([len(f) for f in feats_list])  # similar lengths together: less padding
    for start in range(0, len(order), batch_size):
        chunk = [feats_list[i] for i in order[start:start + batch_size]]
        lengths = torch.tensor([len(f) for f in chunk])
        batch = torch.zeros(len(chunk), int(lengths.max()), contract.N_MELS)
        for row, f in enumerate(chunk):
            batch[row, :len(f)] = torch.from_numpy(f)
        routes = None if languages is None else \
            [languages[i] for i in order[start:start + batch_size]]
        logits, _ = model(batch, lengths, routes)
        out.append(logits.numpy())
    logits = np.concatenate(out)
    result = np.empty_like(logits)
    result[order] = logits
    return result


def save_checkpoint(result: TrainResult, cfg: TrainConfig, path: str | Path,
                    extra: dict | None = None) -> None:
    """Plain tensors and values only, so `torch.load(..., weights_only=True)` reads it."""
    payload = {"format": CHECKPOINT_FORMAT, "state_dict": result.model.state_dict(),
               "config": to_dict(cfg), "labels": list(result.labels),
               "history": result.history, "extra": extra or {}}
    if isinstance(result.model, MultiGateModel):
        payload["languages"] = list(result.model.languages)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def load_checkpoint(path: str | Path) -> tuple[EmotionModel, TrainConfig, dict]:
    """Load a checkpoint written by `save_checkpoint` (weights_only: no pickled code runs)."""
    from edge_ser.config import from_dict

    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: checkpoint format {payload.get('format')!r}, expected "
                         f"{CHECKPOINT_FORMAT}")
    cfg = from_dict(TrainConfig, payload["config"])
    model = build_model(cfg.model, contract.N_MELS, len(payload["labels"]),
                        tuple(payload.get("languages", ())))
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, cfg, payload
