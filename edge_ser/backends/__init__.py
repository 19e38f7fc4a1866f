"""Encoder backends: onnxruntime (default, CPU), TensorRT (NVIDIA GPUs and Jetson), torch
(debugging, needs the training checkpoint). Each lives in its own module and imports its heavy
library only when created."""

from __future__ import annotations

from edge_ser.backends.base import BackendUnavailable, EncoderBackend
from edge_ser.package import ModelPackage

BACKENDS = ("onnxruntime", "tensorrt", "torch")

__all__ = ["BACKENDS", "BackendUnavailable", "EncoderBackend", "create_backend"]


def create_backend(package: ModelPackage, name: str = "onnxruntime", precision: str = "int8",
                   threads: int = 1) -> EncoderBackend:
    """A backend running `package`'s encoder at `precision` ("int8", "fp32"; TensorRT also
    "fp16"). `threads`: CPU threads of one call (onnxruntime, torch)."""
    if name == "onnxruntime":
        from edge_ser.backends.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(package, precision, threads)
    if name == "tensorrt":
        from edge_ser.backends.tensorrt_backend import TensorRTBackend

        return TensorRTBackend(package, precision)
    if name == "torch":
        from edge_ser.backends.torch_backend import TorchBackend

        return TorchBackend.from_package(package, precision, threads)
    raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
