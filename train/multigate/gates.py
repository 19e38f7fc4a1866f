"""Per-language gates over the feature streams, a shared gate for every other language, and the
routing of each clip to one of them (with language dropout while training).

    stream vectors (B, S, E) -> gate g(b) of clip b's route -> weights (B, S), rows sum to 1
    embedding = sum_s weights[:, s] * streams[:, s]  (B, E)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class Gate(nn.Module):
    """A small MLP over the concatenated stream vectors -> a softmax over the streams."""

    def __init__(self, n_streams: int, dim: int, hidden: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(n_streams * dim, hidden), nn.ReLU(),
                                 nn.Linear(hidden, n_streams))

    def forward(self, streams: torch.Tensor) -> torch.Tensor:
        """streams (B, S, E) -> weights (B, S)."""
        return self.mlp(streams.flatten(1)).softmax(dim=-1)


class LanguageRouter:
    """Maps languages to route indices: 0..L-1 the known languages, L the shared route.

    Immutable; the random draw for language dropout comes from torch's generator, so the
    trainer's seed fixes it."""

    def __init__(self, languages: Sequence[str]):
        if len(set(languages)) != len(languages):
            raise ValueError(f"languages listed twice: {list(languages)}")
        self.languages = tuple(languages)
        self.shared = len(self.languages)
        self._index = {lang: i for i, lang in enumerate(self.languages)}

    def routes(self, languages: Sequence[str | None] | None, batch: int,
               dropout: float = 0.0) -> torch.Tensor:
        """Route index (B,) per clip: its language's own, or the shared one for a language
        without a gate (or None), and, with probability `dropout`, the shared one anyway."""
        if languages is None:
            return torch.full((batch,), self.shared, dtype=torch.long)
        if len(languages) != batch:
            raise ValueError(f"{len(languages)} languages for a batch of {batch} clips")
        routes = torch.tensor([self._index.get(lang, self.shared) for lang in languages],
                              dtype=torch.long)
        if dropout > 0.0:
            routes = torch.where(torch.rand(batch) < dropout,
                                 torch.full_like(routes, self.shared), routes)
        return routes


def select_by_route(per_route: torch.Tensor, routes: torch.Tensor) -> torch.Tensor:
    """per_route (R, B, ...) outputs of every route for every clip -> (B, ...) each clip's own."""
    return per_route[routes.to(per_route.device), torch.arange(per_route.shape[1])]
