"""Encoder backends: onnxruntime (default, CPU) and TensorRT (NVIDIA GPUs and Jetson). Each lives
in its own module and imports its heavy library only when created. (The training checkpoint's
torch encoder, a reference for parity checks, is `edge_ser_export.torch_reference`.)"""

from __future__ import annotations

from edge_ser.backends.base import BackendUnavailable, EncoderBackend
from edge_ser.package import ModelPackage

BACKENDS = ("onnxruntime", "tensorrt")

__all__ = ["BACKENDS", "BackendUnavailable", "EncoderBackend", "create_backend",
           "default_precision"]


def default_precision(backend: str) -> str:
    """The precision each backend runs best at: INT8 on TensorRT (tensor cores, the reason the
    QDQ graph exists); fp32 on onnxruntime, where this small network's INT8 kernels
    are slower than fp32 on x86 CPUs (docs/benchmarks.md) and fp32 is exact."""
    return "int8" if backend == "tensorrt" else "fp32"


def create_backend(package: ModelPackage, name: str = "onnxruntime",
                   precision: str | None = None, threads: int = 1) -> EncoderBackend:
    """A backend running `package`'s encoder at `precision` ("int8", "fp32"; TensorRT also
    "fp16"; None: `default_precision(name)`). `threads`: CPU threads of one call."""
    precision = precision or default_precision(name)
    if name == "onnxruntime":
        from edge_ser.backends.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(package, precision, threads)
    if name == "tensorrt":
        from edge_ser.backends.tensorrt_backend import TensorRTBackend

        return TensorRTBackend(package, precision)
    raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
