"""The multi-gating emotion model: streams -> per-language gate -> weighted sum -> language head.

    log-mel (B, T, 64) -> stream branches -> (B, S, E)
        -> gate of each clip's route -> weights (B, S) -> embedding (B, E) = sum of weighted streams
        -> head of each clip's route -> logits (B, K)

A clip's route is its language's own gate and head when the model was trained on that language,
else the shared pair; `languages=None` routes every clip to the shared pair (a language never
seen, as in leave-one-language-out). It has the interface of `EmotionModel`: `forward` gives
(logits, embedding), `embed` the embedding the memory bank scores, `encoder` the TCN stream's
encoder (input statistics, compute count).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from edge_ser_train.config import ModelConfig
from edge_ser_train.encoder import TCNEncoder
from edge_ser_train.multigate import ge2e
from edge_ser_train.multigate.contrastive import CentroidSoftmaxLoss
from edge_ser_train.multigate.gates import Gate, LanguageRouter, select_by_route
from edge_ser_train.multigate.heads import build_head, parse_language_heads, parse_spec
from edge_ser_train.multigate.streams import MFCC, PooledBranch, Prosody, RecurrentBranch


@dataclass
class MultiGateOutput:
    streams: torch.Tensor
    """(B, S, E) one vector per stream."""
    weights: torch.Tensor
    """(B, S) gate weights, each row sums to 1."""
    routes: torch.Tensor
    """(B,) route per clip: a language index, or `router.shared`."""
    embedding: torch.Tensor
    """(B, E)"""
    logits: torch.Tensor
    """(B, K)"""


class MultiGateModel(nn.Module):
    def __init__(self, cfg: ModelConfig, n_mels: int, n_classes: int,
                 languages: Sequence[str] = ()):
        super().__init__()
        mg = cfg.multigate
        if "tcn" not in mg.streams or len(set(mg.streams)) != len(mg.streams):
            raise ValueError(f"model.multigate.streams = {list(mg.streams)}: must include tcn "
                             "(it carries the input statistics) and name each stream once")
        self.stream_names = tuple(mg.streams)
        self.router = LanguageRouter(tuple(languages))
        self.language_dropout = mg.language_dropout
        dim = cfg.embedding_dim
        self.encoder = TCNEncoder(n_mels, cfg.channels, cfg.kernel, cfg.dilations, cfg.dropout,
                                  cfg.stride, round(cfg.norm_window_s * 100))
        branches = {"tcn": PooledBranch(cfg.channels, dim)}
        if "mfcc" in mg.streams:
            self.mfcc = MFCC(n_mels, mg.n_mfcc)
            branches["mfcc"] = RecurrentBranch(mg.n_mfcc, mg.branch_channels, dim, cfg.dropout)
        if "prosody" in mg.streams:
            self.prosody = Prosody(n_mels)
            branches["prosody"] = RecurrentBranch(self.prosody.out_dim, mg.branch_channels, dim,
                                                  cfg.dropout)
        if "ge2e" in mg.streams:
            self.ge2e_mel = ge2e.MelRebin()
            self.ge2e = ge2e.GE2ENetwork()
            branches["ge2e"] = PooledBranch(self.ge2e.out_dim, dim)
        self.branches = nn.ModuleDict({name: branches[name] for name in self.stream_names})
        n_routes = len(self.router.languages) + 1
        self.gates = nn.ModuleList(Gate(len(self.stream_names), dim, mg.gate_hidden)
                                   for _ in range(n_routes))
        specs = parse_language_heads(mg.language_heads)
        default = parse_spec(mg.head)
        self.heads = nn.ModuleList(
            build_head(specs.get(lang, default), dim, n_classes, cfg.dropout)
            for lang in (*self.router.languages, None))
        self.contrastive = CentroidSoftmaxLoss(n_classes)
        self.contrastive_weight = mg.contrastive_weight
        self.ge2e_lr_scale = mg.ge2e_lr_scale

    @property
    def languages(self) -> tuple[str, ...]:
        return self.router.languages

    def load_pretrained(self, source: str) -> None:
        """Load the GE2E stream's pretrained weights ('package', a path, or 'random': none)."""
        if "ge2e" in self.stream_names and source != "random":
            ge2e.load_pretrained(self.ge2e, source)

    def stream_vectors(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """feats (B, T, mels), lengths (B,) -> (B, S, E) in `stream_names` order."""
        out = []
        for name in self.stream_names:
            if name == "tcn":
                frames = self.encoder(feats)
                valid = torch.div(lengths, self.encoder.stride, rounding_mode="floor")
                out.append(self.branches[name](frames, valid))
            elif name == "ge2e":
                frames, _ = self.ge2e.forward_frames(self.ge2e_mel(feats))
                out.append(self.branches[name](frames, lengths))
            else:
                frame_feats = getattr(self, name)(feats)
                out.append(self.branches[name](frame_feats, lengths))
        return torch.stack(out, dim=1)

    def parts(self, feats: torch.Tensor, lengths: torch.Tensor,
              languages: Sequence[str | None] | None = None) -> MultiGateOutput:
        streams = self.stream_vectors(feats, lengths)
        dropout = self.language_dropout if self.training else 0.0
        routes = self.router.routes(languages, len(feats), dropout)
        weights = select_by_route(torch.stack([g(streams) for g in self.gates]), routes)
        embedding = (weights.unsqueeze(-1) * streams).sum(dim=1)
        logits = select_by_route(torch.stack([h(embedding) for h in self.heads]), routes)
        return MultiGateOutput(streams, weights, routes, embedding, logits)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor,
                languages: Sequence[str | None] | None = None):
        """Returns (logits (B, K), embedding (B, E)); languages=None: the shared route."""
        out = self.parts(feats, lengths, languages)
        return out.logits, out.embedding

    def embed(self, feats: torch.Tensor, lengths: torch.Tensor,
              languages: Sequence[str | None] | None = None) -> torch.Tensor:
        return self.parts(feats, lengths, languages).embedding

    def head(self, pooled: torch.Tensor):
        """The `tcn` family's head takes one mean+std vector; this family pools each stream by
        attention and gates them, which its export runs from per-stream pooled vectors
        (`edge_ser_export.multigate_head`, `edge_ser.gated_scoring`)."""
        raise NotImplementedError("model.family=multigate: no head over one pooled vector; "
                                  "its package runs the per-stream pooling and the shared "
                                  "gate and head (edge_ser_export.multigate_head)")

    def aux_loss(self, embedding: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The weighted emotion-centroid loss on the embedding (added to cross-entropy)."""
        if self.contrastive_weight == 0.0:
            return embedding.sum() * 0.0
        return self.contrastive_weight * self.contrastive(embedding, targets)

    def optimizer_groups(self) -> list[dict]:
        """Parameter groups: the GE2E network learns at `lr_scale` times the main rate."""
        slow = list(self.ge2e.parameters()) if "ge2e" in self.stream_names else []
        slow_ids = {id(p) for p in slow}
        groups = [{"params": [p for p in self.parameters() if id(p) not in slow_ids],
                   "lr_scale": 1.0}]
        if slow:
            groups.append({"params": slow, "lr_scale": self.ge2e_lr_scale})
        return groups
