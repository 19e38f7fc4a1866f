"""The training configuration: frozen dataclasses loaded strictly from `configs/train/*.yaml`.

These defaults are the default recipe; `configs/train/default.yaml` is their documented copy (a
test holds the two equal) and `configs/train/release.yaml` the shipping model's changes to it.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_ser.config import section, setting
from edge_ser.contract import DEFAULT_LABELS
from edge_ser_train.multigate.config import MultiGateConfig


@dataclass(frozen=True)
class DataConfig:
    corpora: tuple[str, ...] = setting(
        ("../shared/data/emodb", "../shared/data/urdu", "../shared/data/turev",
         "../shared/data/nemo", "../shared/data/ased"),
        help="corpus folders, each with a labels.csv in the shared format")
    labels: tuple[str, ...] = setting(DEFAULT_LABELS, help="class names, in output order")
    test_fraction: float = setting(0.2, min=0.0, max=0.9,
                                   help="share of speakers held out per corpus; 0 = train on all")
    exclude_speakers: tuple[str, ...] = setting(
        (), help="corpus-qualified speakers never trained on (e.g. emodb:09), such as the "
        "speakers of the bundled demo recording")
    cache_dir: str = setting(".cache/features", help="where computed log-mel views are cached")
    max_clip_s: float = setting(4.0, min=0.5, max=30.0, help="longer clips are cut to this")


@dataclass(frozen=True)
class AugmentConfig:
    views: int = setting(4, min=0, max=32, help="augmented copies of each clip, cached")
    gain_db: float = setting(10.0, min=0.0, max=40.0, help="random gain within +-gain_db")
    noise_prob: float = setting(0.5, min=0.0, max=1.0)
    snr_db_min: float = setting(5.0, min=-10.0, max=60.0)
    snr_db_max: float = setting(30.0, min=-10.0, max=60.0)
    telephone_prob: float = setting(0.3, min=0.0, max=1.0,
                                    help="8 kHz, 300-3400 Hz band, mu-law round trip")
    reverb_prob: float = setting(0.2, min=0.0, max=1.0, help="synthetic room impulse response")
    speed_prob: float = setting(0.3, min=0.0, max=1.0)
    speed_max_change: float = setting(0.08, min=0.0, max=0.3, help="speed factor 1 +- this")
    freq_mask_mels: int = setting(8, min=0, max=32, help="SpecAugment frequency mask width")


@dataclass(frozen=True)
class ModelConfig:
    family: str = setting("tcn", choices=("tcn", "multigate"),
                          help="tcn: the streamable encoder alone; multigate: feature streams "
                          "with per-language gates (docs/multigate.md)")
    arch: str = setting("tcn", choices=("tcn", "gru"))
    stride: int = setting(2, min=1, max=4, help="TCN stem subsampling of the 100 Hz frames")
    norm_window_s: float = setting(1.0, min=0.0, max=10.0,
                                   help="causal running-mean normalisation window; 0 = off")
    channels: int = setting(128, min=8, max=512)
    kernel: int = setting(3, min=2, max=9)
    dilations: tuple[int, ...] = setting((1, 2, 4, 8, 1, 2, 4, 8))
    gru_layers: int = setting(2, min=1, max=4)
    embedding_dim: int = setting(128, min=8, max=1024)
    dropout: float = setting(0.2, min=0.0, max=0.9)
    multigate: MultiGateConfig = section(MultiGateConfig)


@dataclass(frozen=True)
class OptimConfig:
    seed: int = setting(0, min=0)
    epochs: int = setting(30, min=1, max=1000)
    batch_size: int = setting(32, min=2, max=4096,
                              help="examples per training batch; at least 2, as batch norm "
                              "needs two values per channel to normalise")
    lr: float = setting(3e-3, min=1e-6, max=1.0)
    weight_decay: float = setting(1e-3, min=0.0, max=1.0)
    warmup_epochs: int = setting(2, min=0, max=100)
    label_smoothing: float = setting(0.05, min=0.0, max=0.5)
    crop_s: float = setting(2.0, min=0.3, max=30.0, help="random crop length per example")
    threads: int = setting(2, min=1, max=256)
    sampling: str = setting(
        "corpus", choices=("corpus", "pooled"),
        help="batch draws: corpus = every corpus an equal share, classes balanced within it; "
        "pooled = classes balanced over all clips, corpora in proportion to their size")
    mixup: float = setting(
        0.0, min=0.0, max=1.0,
        help="share of each batch mixed with another clip of the batch (another corpus where "
        "the batch has one): log-mel frames and targets blend with a weight drawn from "
        "Beta(0.4, 0.4); 0 = off")


@dataclass(frozen=True)
class TrainConfig:
    data: DataConfig = section(DataConfig)
    augment: AugmentConfig = section(AugmentConfig)
    model: ModelConfig = section(ModelConfig)
    optim: OptimConfig = section(OptimConfig)
    out_dir: str = setting("runs/default", help="checkpoints, metrics and resolved config")
