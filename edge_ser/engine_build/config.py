"""The configuration of `export trt`: frozen dataclasses, loaded strictly from YAML."""

from __future__ import annotations

from dataclasses import dataclass

from edge_ser.config import section, setting


@dataclass(frozen=True)
class TensorRTConfig:
    workspace_mib: int = setting(512, min=16, max=65_536)
    optimization_level: int = setting(3, min=0, max=5)
    fp16_max_rel_rms: float = setting(0.02, min=0.0, max=10.0,
                                      help="fp16 engine vs onnxruntime fp32, RMS ratio")
    int8_max_rel_rms: float = setting(0.10, min=0.0, max=10.0,
                                      help="int8 engine vs onnxruntime int8, RMS ratio")


@dataclass(frozen=True)
class EngineBuildConfig:
    """`export trt --config YAML`: a `tensorrt:` section (the optimization profiles come from
    the package's manifest, written by `export package`)."""

    tensorrt: TensorRTConfig = section(TensorRTConfig)
