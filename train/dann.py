"""DANN, the baseline: a language classifier behind a gradient-reversal layer.

    embedding (B, E) -> GRL(lambda) -> Linear(E, H) -> ReLU -> Linear(H, L) = language logits

The language classifier learns to tell the L languages (each source corpus and the target)
apart; the reversed gradient trains the encoder to make them indistinguishable. lambda follows
the usual ramp from 0 to `weight` over training (Ganin & Lempitsky, 2015):
`lambda(p) = weight * (2 / (1 + exp(-gamma * p)) - 1)`, p = training progress in [0, 1], so the
untrained language classifier's noisy gradient does not reach the encoder early on.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class _GradientReversal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, lam: float) -> torch.Tensor:
        ctx.lam = lam
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.lam * grad, None


def grad_reverse(x: torch.Tensor, lam: float) -> torch.Tensor:
    """Identity forward; the gradient is multiplied by -lam on the way back."""
    return _GradientReversal.apply(x, lam)


def dann_lambda(progress: float, weight: float = 1.0, gamma: float = 10.0) -> float:
    """The gradient-reversal coefficient at training progress `progress` in [0, 1]."""
    progress = min(max(progress, 0.0), 1.0)
    return weight * (2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0)


class LanguageClassifier(nn.Module):
    """Predicts the language (domain) of an embedding through a gradient-reversal layer."""

    def __init__(self, embedding_dim: int, n_languages: int, hidden: int = 64):
        super().__init__()
        if n_languages < 2:
            raise ValueError(f"a language classifier needs at least 2 languages, got "
                             f"{n_languages}")
        self.net = nn.Sequential(nn.Linear(embedding_dim, hidden), nn.ReLU(),
                                 nn.Linear(hidden, n_languages))

    def forward(self, embedding: torch.Tensor, lam: float) -> torch.Tensor:
        """embedding (B, E) -> language logits (B, L); gradients reach the embedding reversed."""
        return self.net(grad_reverse(embedding, lam))


def language_loss(classifier: LanguageClassifier, embedding: torch.Tensor,
                  languages: torch.Tensor, lam: float) -> torch.Tensor:
    """Cross-entropy of the language classifier on `embedding` (B, E) with ids `languages` (B,)."""
    return F.cross_entropy(classifier(embedding, lam), languages)
