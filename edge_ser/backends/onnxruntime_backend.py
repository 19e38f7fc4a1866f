"""The onnxruntime backend: the package's fp32 or INT8 (QDQ) encoder on the CPU."""

from __future__ import annotations

import numpy as np

from edge_ser import contract
from edge_ser.backends.base import StateLayout
from edge_ser.package import ModelPackage


class OnnxRuntimeBackend:
    """One onnxruntime session; `run` is safe to call from several threads at once."""

    def __init__(self, package: ModelPackage, precision: str = "int8", threads: int = 1):
        import onnxruntime as ort

        if precision not in package.manifest["encoder"]["files"]:
            raise ValueError(f"onnxruntime runs the package's ONNX encoders "
                             f"({', '.join(package.manifest['encoder']['files'])}), not "
                             f"{precision!r}")
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self._layout = StateLayout(package)
        self.chunk_frames = package.chunk_frames
        self.stride = package.stride
        self.out_channels = package.embedding_channels
        self.precision = precision
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(str(package.encoder_path(precision)), options,
                                             providers=["CPUExecutionProvider"])
        self._outputs = [contract.ENCODER_OUTPUT, *self._layout.output_names]

    def init_state(self, batch: int = 1) -> list[np.ndarray]:
        return self._layout.init_state(batch)

    def run(self, feats: np.ndarray, state: list[np.ndarray]
            ) -> tuple[np.ndarray, list[np.ndarray]]:
        if self._session is None:
            raise RuntimeError("the backend is closed")
        feats, state = self._layout.check(feats, state)
        feed = {contract.ENCODER_INPUT: feats}
        feed.update(zip(self._layout.input_names, state))
        frames, *new_state = self._session.run(self._outputs, feed)
        return frames, new_state

    def close(self) -> None:
        self._session = None
