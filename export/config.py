"""The export configuration: frozen dataclasses loaded strictly from `configs/export/*.yaml`."""

from __future__ import annotations

from dataclasses import dataclass

from edge_ser import contract
from edge_ser.config import section, setting


@dataclass(frozen=True)
class EncoderExportConfig:
    chunk_frames: int = setting(20, min=1, max=400,
                                help="encoder input frames per call; a multiple of the stride")
    opset: int = setting(contract.ONNX_OPSET, min=17, max=21, help="ONNX opset")


@dataclass(frozen=True)
class ParityConfig:
    chunks: int = setting(200, min=100, max=100_000,
                          help="consecutive chunks, state carried, compared at every stage")
    fp32_atol: float = setting(1e-4, min=0.0, max=1.0,
                               help="max |torch - onnxruntime| of fp32 frames and state")
    int8_max_rel_rms: float = setting(0.25, min=0.0, max=10.0,
                                      help="max RMS(int8 - fp32) / RMS(fp32) of the frames")


@dataclass(frozen=True)
class CalibrationConfig:
    clips: int = setting(300, min=4, max=100_000,
                         help="training-speaker clips whose chunks calibrate INT8 ranges")
    method: str = setting("minmax", choices=("minmax", "percentile", "entropy"))
    percentile: float = setting(99.999, min=90.0, max=100.0, help="for method=percentile")
    batch: int = setting(64, min=1, max=4096, help="chunks per calibration batch")
    seed: int = setting(0, min=0)


@dataclass(frozen=True)
class GateConfig:
    max_ua_drop_points: float = setting(1.0, min=0.0, max=100.0,
                                        help="export fails if INT8 UA is lower than fp32 UA by "
                                             "more than this many points (classifier or fused)")
    min_agreement: float = setting(0.95, min=0.0, max=1.0,
                                   help="for unlabelled speech (an adapted model): export fails "
                                   "if INT8 predicts the fp32 class on fewer of the clips")
    test_fraction: float = setting(0.2, min=0.05, max=0.9,
                                   help="held-out speaker share of the fixed split")
    seed: int = setting(0, min=0, help="seed of the fixed held-out speaker split")


@dataclass(frozen=True)
class MemoryBankConfig:
    centroids_per_class: int = setting(4, min=1, max=256)
    temperature: float = setting(0.1, min=1e-3, max=10.0,
                                 help="softmax temperature of the per-class cosine scores")
    top_k: int = setting(2, min=1, max=256, help="per class, mean of the top_k best centroids")
    kmeans_iterations: int = setting(50, min=1, max=1000)
    seed: int = setting(0, min=0)
    max_bytes: int = setting(32_768, min=1024, max=10_000_000,
                             help="memory_bank.npz larger than this fails the export")


@dataclass(frozen=True)
class AdaptationMemoryConfig:
    """The source exemplar set (`adaptation_memory.npz`): source evidence for `adapt` without
    source audio, beside the runtime's memory bank (which it leaves as it is)."""

    enabled: bool = setting(True, help="write adaptation_memory.npz into the package")
    per_class_per_language: int = setting(
        24, min=1, max=4096, help="exemplars per source corpus and class (fewer where a corpus "
        "has fewer clips of the class, and fewer everywhere when max_bytes needs it)")
    selection: str = setting("kmeans", choices=("kmeans", "sample"),
                             help="kmeans: spherical k-means prototypes of the clips' "
                             "embeddings; sample: a seeded sample of the clips' embeddings")
    kmeans_iterations: int = setting(50, min=1, max=1000)
    seed: int = setting(0, min=0)
    max_bytes: int = setting(262_144, min=1024, max=10_000_000,
                             help="the set is made smaller (fewer per corpus and class) until "
                             "adaptation_memory.npz fits; export fails if one each does not")


@dataclass(frozen=True)
class FusionConfig:
    memory_weight: float = setting(0.3, min=0.0, max=1.0,
                                   help="w in softmax((1-w) log p_classifier + w log p_memory)")


@dataclass(frozen=True)
class ProfileConfig:
    """TensorRT optimization profiles, in batch sizes; recorded in the manifest."""

    stream_max: int = setting(1, min=1, max=64,
                              help="profile 0 (streaming): batches 1..stream_max")
    batch_min: int = setting(1, min=1, max=4096)
    batch_opt: int = setting(16, min=1, max=4096)
    batch_max: int = setting(64, min=1, max=4096, help="profile 1 (bulk): min/opt/max batch")


@dataclass(frozen=True)
class PackageConfig:
    name: str = setting("default", help="package name recorded in the manifest")
    max_total_bytes: int = setting(2_000_000, min=1024, max=10**10,
                                   help="a package larger than this fails the export")
    multigate_max_total_bytes: int = setting(
        40_000_000, min=1024, max=10**10,
        help="the same for a multigate package: the GE2E LSTM alone is 5.7 MB in float32, "
        "in both encoders and the checkpoint")
    latency_runs: int = setting(500, min=10, max=1_000_000,
                                help="chunks timed per precision (onnxruntime, one thread)")


@dataclass(frozen=True)
class ExportConfig:
    encoder: EncoderExportConfig = section(EncoderExportConfig)
    parity: ParityConfig = section(ParityConfig)
    calibration: CalibrationConfig = section(CalibrationConfig)
    gate: GateConfig = section(GateConfig)
    memory_bank: MemoryBankConfig = section(MemoryBankConfig)
    adaptation_memory: AdaptationMemoryConfig = section(AdaptationMemoryConfig)
    fusion: FusionConfig = section(FusionConfig)
    profiles: ProfileConfig = section(ProfileConfig)
    package: PackageConfig = section(PackageConfig)
