"""The onnxruntime backend: the package's fp32 or INT8 (QDQ) encoder on the CPU."""

from __future__ import annotations

import threading

import numpy as np

from edge_ser import contract
from edge_ser.backends import conv2d_layout, segment_graph
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
        self._encoder_path = package.encoder_path(precision)
        self._options = options
        self._segment_session = None
        self._segment_checked = False
        self._segment_lock = threading.Lock()
        self.segment_status: dict | str | None = None
        """After the first `runs_segments`: the parity figures of the whole-segment encoder, or
        why it is not used."""

    @property
    def runs_segments(self) -> bool:
        """Whether `run_segment` is available. The first call derives the whole-segment graph
        (`segment_graph`) and checks it against the streaming encoder; streams that never ask
        (live input) never pay for it."""
        if not self._segment_checked:
            with self._segment_lock:  # threads sharing the backend derive it once
                if not self._segment_checked:
                    self._load_segment_session()
                    self._segment_checked = True
        return self._segment_session is not None

    def _load_segment_session(self) -> None:
        if self.precision != "fp32":
            # In the QDQ graph the carried state is quantized between chunks; a whole segment
            # skips that, so it is not the same computation (0.3 apart on speech, measured).
            self.segment_status = (f"{self.precision} encoder: its state is re-quantized "
                                   "between chunks, so only fp32 runs whole segments")
            return
        try:
            graph = segment_graph.segment_graph(self._encoder_path)
        except Exception as exc:  # any failure means: stay with the streaming chunks
            self.segment_status = f"{type(exc).__name__}: {exc}"
            return
        try:  # the 2-D layout first (about twice as fast), the graph as derived if it fails
            graph_2d, rewritten = conv2d_layout.as_conv2d(graph, contract.ENCODER_INPUT)
            self.segment_status = {**self._checked_segment_session(graph_2d),
                                   "layout": {"conv2d": rewritten}}
            return
        except Exception as exc:
            layout = f"1-D: the 2-D layout failed ({type(exc).__name__}: {exc})"
        try:
            self.segment_status = {**self._checked_segment_session(graph), "layout": layout}
        except Exception as exc:
            self._segment_session = None
            self.segment_status = f"{type(exc).__name__}: {exc}"

    def _checked_segment_session(self, graph: bytes) -> dict:
        """Use `graph` for whole segments once it matches the streaming encoder (its parity
        figures); SegmentGraphError, and no segment session, when it does not."""
        import onnxruntime as ort

        self._segment_session = ort.InferenceSession(graph, self._options,
                                                     providers=["CPUExecutionProvider"])
        try:
            return segment_graph.check_parity(self, segment_graph.probe_clips(self.chunk_frames))
        except Exception:
            self._segment_session = None
            raise

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

    def run_segment(self, feats: np.ndarray, state: list[np.ndarray]) -> np.ndarray:
        if self._session is None:
            raise RuntimeError("the backend is closed")
        if self._segment_session is None:
            reason = self.segment_status or "not loaded: ask runs_segments first"
            raise RuntimeError(f"no whole-segment encoder ({reason}); use run() chunk by chunk")
        feats, state = self._layout.check(feats, state, whole_segment=True)
        feed = {contract.ENCODER_INPUT: feats}
        feed.update(zip(self._layout.input_names, state))
        return self._segment_session.run([contract.ENCODER_OUTPUT], feed)[0]

    def close(self) -> None:
        self._session = None
        self._segment_session = None
