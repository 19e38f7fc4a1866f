"""The adaptation configuration: frozen dataclasses loaded strictly from `configs/adapt/*.yaml`.

The sections `augment`, `model` and `optim` are the training ones (`train.config`), so an
adapted model is trained with the recipe a supervised one is (`optim` with fine-tuning's
defaults). `model` is used only when a model is trained from scratch (the experiment table's
source-only models); `edge-ser adapt --model` keeps the architecture of the model it starts
from. These defaults are the defaults: `configs/adapt/default.yaml` is their documented copy
(a test holds the two equal). Why each default is what it is: `docs/adaptation.md`.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_ser.config import ConfigError, section, setting
from edge_ser.contract import DEFAULT_LABELS
from edge_ser_train.config import AugmentConfig, ModelConfig, OptimConfig

METHODS = ("source", "dann", "nnpm")
"""source: labelled source data only; dann: + a language classifier behind gradient reversal;
nnpm: + the source memory, its memory loss and pseudo multilabels on the target (or, without
source audio, the model's memory bank and the pseudo multilabels alone)."""


@dataclass(frozen=True)
class SourceConfig:
    corpora: tuple[str, ...] = setting(
        (), help="labelled source corpus folders (labels.csv in the shared format); empty = "
        "adapt from the model's own memory bank, no source audio")
    labels: tuple[str, ...] = setting(DEFAULT_LABELS, help="class names, in output order")
    cache_dir: str = setting(".cache/features", help="where computed log-mel views are cached")
    max_clip_s: float = setting(4.0, min=0.5, max=30.0, help="longer clips are cut to this")


@dataclass(frozen=True)
class TargetConfig:
    """How unlabelled target recordings become training segments."""

    max_segment_s: float = setting(4.0, min=1.0, max=30.0,
                                   help="speech segments are cut to at most this long")
    min_segment_s: float = setting(0.5, min=0.1, max=10.0,
                                   help="shorter speech segments are not used")
    min_segments: int = setting(20, min=2, max=100_000,
                                help="fewer usable speech segments than this is an error")
    max_segments: int = setting(3000, min=10, max=1_000_000,
                                help="a seeded random subset is used beyond this many")
    views: int = setting(2, min=0, max=32, help="augmented copies of each target segment")


@dataclass(frozen=True)
class NNPMConfig:
    memory_momentum: float = setting(0.5, min=0.0, max=0.999,
                                     help="slot <- normalise(m * slot + (1 - m) * feature)")
    temperature: float = setting(0.02, min=1e-3, max=10.0,
                                 help="cosine-similarity temperature of the memory's class "
                                 "probabilities and of the neighbour weights")
    memory_weight: float = setting(1.0, min=0.0, max=100.0,
                                   help="weight of the memory loss on source; 0 = off")
    k: int = setting(10, min=1, max=10_000,
                     help="nearest memory centroids (or bank centroids) per target feature")
    pseudo_label: str = setting("multi", choices=("multi", "single"),
                                help="multi: the set of likely classes; single: the top class")
    min_share: float = setting(0.2, min=0.0, max=1.0,
                               help="a class joins the multilabel when it holds at least this "
                               "share of the neighbours' weight")
    label_centroids: int = setting(2, min=1, max=256,
                                   help="with source audio, the target is labelled against this "
                                   "many spherical k-means centroids per class of the live "
                                   "memory slots (without, against the model's memory bank)")
    ramp_epochs: int = setting(1, min=0, max=1000,
                               help="the target loss weight rises linearly over these epochs")


@dataclass(frozen=True)
class DANNConfig:
    weight: float = setting(1.0, min=0.0, max=100.0, help="final gradient-reversal lambda")
    gamma: float = setting(10.0, min=0.1, max=100.0,
                           help="lambda = weight * (2 / (1 + exp(-gamma * progress)) - 1)")
    hidden: int = setting(64, min=4, max=4096, help="hidden units of the language classifier")


@dataclass(frozen=True)
class GuardConfig:
    """Whether `adapt` keeps the adapted model or the one it started from
    (`edge_ser_train.adapt_guard`: the checks, the rule and why each limit is what it is)."""

    enabled: bool = setting(True, help="keep the start model's weights when a check sees harm; "
                            "false (or --keep-adapted): the checks are only recorded")
    max_balance_drop: float = setting(
        0.1, min=0.0, max=1.0, help="harm: the normalised entropy of the predicted class shares "
        "on the target falls by more than this from the start model's")
    min_anchor_kept: float = setting(
        0.5, min=0.0, max=1.0, help="harm: on the anchors (target clips whose class the start "
        "model's classifier and memory agree on) the adapted model keeps less than this share "
        "of the way from chance to all of them")
    max_source_drop: float = setting(
        0.05, min=0.0, max=1.0, help="harm (with --source): UA on the labelled source clips "
        "falls by more than this from the start model's")


@dataclass(frozen=True)
class AdaptOptimConfig(OptimConfig):
    """The training recipe's optimiser settings, with fine-tuning's defaults: a trained model
    is adapted for a few epochs at the training rate, without a warm-up."""

    epochs: int = setting(5, min=1, max=1000)
    warmup_epochs: int = setting(0, min=0, max=100)


@dataclass(frozen=True)
class AdaptConfig:
    method: str = setting("nnpm", choices=METHODS)
    batchnorm: str = setting("separate", choices=("separate", "mixed"),
                             help="separate: source and target batches are normalised with "
                             "their own statistics; mixed: one batch of both")
    target_bn_stats: bool = setting(True, help="after training, re-estimate every batch-norm "
                                    "layer's running statistics on the target alone")
    source: SourceConfig = section(SourceConfig)
    target: TargetConfig = section(TargetConfig)
    augment: AugmentConfig = section(AugmentConfig)
    model: ModelConfig = section(ModelConfig)
    optim: AdaptOptimConfig = section(AdaptOptimConfig)
    nnpm: NNPMConfig = section(NNPMConfig)
    dann: DANNConfig = section(DANNConfig)
    guard: GuardConfig = section(GuardConfig)

    def __post_init__(self) -> None:
        if self.target.min_segment_s > self.target.max_segment_s:
            raise ConfigError(f"'target.min_segment_s' = {self.target.min_segment_s} is longer "
                              f"than 'target.max_segment_s' = {self.target.max_segment_s}")
