"""Settings of the multi-gating family: the `model.multigate` section of the training config."""

from __future__ import annotations

from dataclasses import dataclass

from edge_ser.config import setting

STREAMS = ("tcn", "mfcc", "prosody", "ge2e")
"""Feature streams the model can combine; `tcn` is always present (it owns input statistics)."""


@dataclass(frozen=True)
class MultiGateConfig:
    streams: tuple[str, ...] = setting(
        STREAMS, choices=STREAMS,
        help="feature streams to combine; must include tcn, each at most once")
    branch_channels: int = setting(64, min=8, max=512,
                                   help="conv and GRU width of the mfcc and prosody branches")
    n_mfcc: int = setting(20, min=4, max=64, help="cepstral coefficients of the mfcc stream")
    gate_hidden: int = setting(64, min=4, max=1024, help="hidden width of each gate MLP")
    language_dropout: float = setting(
        0.3, min=0.0, max=1.0,
        help="chance that a training clip uses the shared gate and head instead of its "
        "language's own, so the shared pair learns to serve unseen languages")
    head: str = setting("1x128:relu",
                        help="default head of every language and the shared head: "
                        "DEPTHxWIDTH:ACTIVATION, e.g. 2x64:gelu; 0x0:linear = one linear layer")
    language_heads: tuple[str, ...] = setting(
        (), help="per-language head overrides, LANGUAGE=DEPTHxWIDTH:ACTIVATION (from the search)")
    contrastive_weight: float = setting(
        0.05, min=0.0, max=0.1,
        help="weight of the emotion-centroid (GE2E softmax) loss on the embedding; 0 = off")
    ge2e_weights: str = setting(
        "package",
        help="GE2E speaker-encoder weights: 'package' = pretrained.pt of the installed "
        "resemblyzer package, a path to that file, or 'random' (untrained; for tests)")
    ge2e_lr_scale: float = setting(0.01, min=0.0, max=1.0,
                                   help="learning rate of the GE2E network relative to the rest")
