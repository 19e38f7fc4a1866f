"""The adaptation configuration: frozen dataclasses loaded strictly from `configs/adapt/*.yaml`.

The sections `augment`, `model` and `optim` are the training ones (`train.config`), so an
adapted model is trained with exactly the recipe a supervised one is. `model` is used only when
the model is trained from scratch (the experiment table); `edge-ser adapt --model` keeps the
architecture of the model it starts from. Why each default is what it is: `docs/nnpm.md`.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_ser.config import ConfigError, section, setting
from edge_ser.contract import DEFAULT_LABELS
from edge_ser_train.config import AugmentConfig, ModelConfig, OptimConfig

METHODS = ("source", "dann", "nnpm")
"""source: labelled source data only; dann: + a language classifier behind gradient reversal;
nnpm: + the source memory, its memory loss and pseudo multilabels on the target."""


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
    temperature: float = setting(0.05, min=1e-3, max=10.0,
                                 help="cosine-similarity temperature of the memory loss and of "
                                 "the neighbour weights")
    memory_weight: float = setting(1.0, min=0.0, max=100.0,
                                   help="weight of the memory loss on source; 0 = off")
    k: int = setting(10, min=1, max=10_000, help="nearest memory slots per target feature")
    pseudo_label: str = setting("multi", choices=("multi", "single"),
                                help="multi: the set of likely classes; single: the top class")
    min_share: float = setting(0.2, min=0.0, max=1.0,
                               help="a class joins the multilabel when it holds at least this "
                               "share of the neighbours' weight")
    target_weight: float = setting(1.0, min=0.0, max=100.0,
                                   help="weight of the multilabel loss on target")
    memory_target_weight: float = setting(
        1.0, min=0.0, max=100.0, help="weight of the same multilabel loss on the memory's class "
        "probabilities of target features (pulls them toward slots of their candidate classes)")
    warmup_epochs: int = setting(10, min=0, max=1000,
                                 help="epochs on source alone before the target loss starts")
    ramp_epochs: int = setting(2, min=0, max=1000,
                               help="the target weight rises linearly over these epochs")
    refresh_epochs: int = setting(1, min=1, max=1000,
                                  help="pseudo multilabels are recomputed this often")
    balance_classes: bool = setting(True, help="weight target clips so every pseudo class "
                                    "carries the same total weight")
    select_share: float = setting(1.0, min=0.01, max=1.0,
                                  help="per pseudo class, the most confident share of its target "
                                  "clips that is trained on at the first refresh (the rest weigh "
                                  "0); 1 = every clip")
    select_share_end: float = setting(1.0, min=0.01, max=1.0,
                                      help="the selected share at the last refresh; it grows "
                                      "linearly from select_share over the refreshes")
    select_without_source: bool = setting(
        False, help="confident selection also without source audio (a memory bank of a few "
        "centroids); off: every pseudo-label is trained on in the source-free mode")
    anchor: float = setting(0.0, min=0.0, max=1.0,
                            help="each refresh's vote shares are blended with the first "
                            "refresh's (the starting model's): a * first + (1 - a) * now; 0 = off")
    vote_views: bool = setting(False, help="with source audio, a target clip's memory vote is "
                               "averaged over its augmented views as well as the clean clip "
                               "(test-time augmentation of the pseudo-labels)")
    vote_views_without_source: bool = setting(
        False, help="the same without source audio (a memory bank of a few centroids), where "
        "every pseudo-label is trained on")
    equipartition: bool = setting(
        False, help="the vote shares are rebalanced (Sinkhorn-Knopp) so that every class holds "
        "the same total share over the target, before the labels are read from them: a class "
        "the source model over-predicts there gives up its least certain clips")
    label_memory: str = setting(
        "slots", choices=("slots", "centroids"),
        help="what the target is labelled against at each refresh: slots = the k nearest "
        "memory slots (one per source utterance); centroids = per class, "
        "label_centroids spherical k-means centroids of the current slots (as a package's "
        "memory bank), every centroid voting")
    label_centroids: int = setting(4, min=1, max=256,
                                   help="centroids per class with label_memory: centroids")
    classifier_vote: float = setting(
        0.0, min=0.0, max=1.0, help="weight of the classifier's class probabilities (target "
        "statistics, whole clip) in the vote shares: (1 - w) * memory vote + w * classifier; "
        "0 = the memory alone")
    source_weight: float = setting(
        1.0, min=0.0, max=100.0, help="scale of the source losses (cross-entropy and memory "
        "loss) once the target loss is on; 1 = as in the warm-up")
    target_prototypes: int = setting(
        0, min=0, max=20, help="rounds of re-reading the vote shares from per-class prototypes "
        "of the target's own features (share-weighted means, cosine softmax at `temperature`); "
        "0 = off")
    adversarial_weight: float = setting(
        0.0, min=0.0, max=100.0, help="with source audio, DANN's language classifier behind "
        "gradient reversal is trained alongside (its final lambda; dann.gamma and dann.hidden "
        "as for DANN), aligning the domains while the pseudo multilabels teach the classes; "
        "0 = off")
    agreement: bool = setting(False, help="train only on target clips whose pseudo-label (the "
                              "memory vote's top class) is also the classifier's prediction")
    propagation: float = setting(0.0, min=0.0, max=0.99,
                                 help="label propagation over the target's own nearest-"
                                 "neighbour graph: weight alpha of the neighbours' shares; 0 = off")
    propagation_k: int = setting(10, min=1, max=10_000,
                                 help="nearest target neighbours of the propagation graph")
    diversity_weight: float = setting(0.0, min=0.0, max=100.0,
                                      help="weight of the batch prediction-entropy term that "
                                      "keeps target predictions from collapsing to one class")
    classifier_lr: float = setting(1.0, min=0.0, max=1.0,
                                   help="the classifier head's learning rate as a multiple of "
                                   "optim.lr while adapting a trained model with source audio; 0 = "
                                   "frozen, as without source audio; 1 = off (the head trains "
                                   "like the rest; always so from scratch)")
    teacher_momentum: float = setting(0.0, min=0.0, max=0.9999,
                                      help="mean teacher: an exponential moving average of the "
                                      "weights (this momentum per step) labels the target "
                                      "against a memory of its own source features and is the "
                                      "adapted model returned; 0 = off")
    teacher_is_model: bool = setting(True, help="with a mean teacher: the teacher is the adapted "
                                     "model (true) or only labels the target and the student "
                                     "trained on its labels is (false)")


@dataclass(frozen=True)
class DANNConfig:
    weight: float = setting(1.0, min=0.0, max=100.0, help="final gradient-reversal lambda")
    gamma: float = setting(10.0, min=0.1, max=100.0,
                           help="lambda = weight * (2 / (1 + exp(-gamma * progress)) - 1)")
    hidden: int = setting(64, min=4, max=4096, help="hidden units of the language classifier")


@dataclass(frozen=True)
class AdaptConfig:
    method: str = setting("nnpm", choices=METHODS)
    batchnorm: str = setting("separate", choices=("separate", "mixed"),
                             help="separate: source and target batches are normalised with "
                             "their own statistics; mixed: one batch of both")
    target_bn_stats: bool = setting(True, help="after training, re-estimate every batch-norm "
                                    "layer's running statistics on the target alone")
    epoch_steps: str = setting("larger", choices=("larger", "target"),
                               help="an epoch is one pass over the larger side (source or "
                               "target), or over the target alone (time set by the target)")
    source: SourceConfig = section(SourceConfig)
    target: TargetConfig = section(TargetConfig)
    augment: AugmentConfig = section(AugmentConfig)
    model: ModelConfig = section(ModelConfig)
    optim: OptimConfig = section(OptimConfig)
    nnpm: NNPMConfig = section(NNPMConfig)
    dann: DANNConfig = section(DANNConfig)

    def __post_init__(self) -> None:
        if self.target.min_segment_s > self.target.max_segment_s:
            raise ConfigError(f"'target.min_segment_s' = {self.target.min_segment_s} is longer "
                              f"than 'target.max_segment_s' = {self.target.max_segment_s}")
        if self.method == "nnpm" and self.nnpm.warmup_epochs >= self.optim.epochs:
            raise ConfigError(f"'nnpm.warmup_epochs' = {self.nnpm.warmup_epochs} leaves no "
                              f"adaptation epoch of 'optim.epochs' = {self.optim.epochs}")
