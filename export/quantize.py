"""Stage 2: static post-training INT8 quantization in explicit QDQ form.

Calibration feeds what the encoder meets in use: log-mel chunks of real training-speaker speech,
each with the state the fp32 encoder carried into it from the chunks before (not zeros), so the
ranges of the state inputs and of everything that reads them are realistic.

onnxruntime's `quantize_static` writes QuantizeLinear/DequantizeLinear pairs around every Conv,
MatMul and Gemm: int8 weights with per-output-channel scales, int8 activations, both symmetric
(zero point 0, as TensorRT requires), float biases. The same graph runs in onnxruntime on a CPU
and builds into a TensorRT INT8 engine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

from edge_ser import contract
from edge_ser.engine_build.onnx_metadata import set_metadata
from edge_ser_export.config import CalibrationConfig

_METHODS = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
            "entropy": CalibrationMethod.Entropy}


@torch.no_grad()
def calibration_chunks(encoder, feats_list: list[np.ndarray], chunk_frames: int
                       ) -> list[dict[str, np.ndarray]]:
    """One feed per chunk of every clip: {feats (1, chunk, mels), state_in_i (batch 1)}.

    Each clip runs through the fp32 encoder chunk by chunk from the initial state; a chunk's
    feed holds the state the encoder carried into it. Trailing partial chunks are dropped."""
    feeds = []
    for feats in feats_list:
        state = encoder.init_state(1)
        for start in range(0, len(feats) - chunk_frames + 1, chunk_frames):
            chunk = torch.from_numpy(np.ascontiguousarray(feats[start:start + chunk_frames]))[None]
            feed = {contract.ENCODER_INPUT: chunk.numpy()}
            feed.update({f"{contract.STATE_INPUT_PREFIX}{i}": s.numpy().copy()
                         for i, s in enumerate(state)})
            feeds.append(feed)
            _, state = encoder.forward_chunk(chunk, state)
    return feeds


def batch_feeds(feeds: list[dict[str, np.ndarray]], batch_axes: dict[str, int], batch: int,
                seed: int) -> list[dict[str, np.ndarray]]:
    """Shuffle single-chunk feeds (seeded) and stack them along each tensor's batch axis."""
    order = np.random.default_rng(seed).permutation(len(feeds))
    batches = []
    for start in range(0, len(order), batch):
        rows = [feeds[i] for i in order[start:start + batch]]
        batches.append({name: np.concatenate([r[name] for r in rows], axis=batch_axes[name])
                        for name in rows[0]})
    return batches


class _Reader(CalibrationDataReader):
    def __init__(self, batches: list[dict[str, np.ndarray]]):
        self._batches = batches
        self._next = 0

    def get_next(self):
        if self._next >= len(self._batches):
            return None
        self._next += 1
        return self._batches[self._next - 1]

    def __len__(self):
        return len(self._batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._next = start_index


MERGE_EVERY = 8


def _avoid_empty_last_merge(batches: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """onnxruntime's calibrator fails ("No data is collected") when the number of batches is a
    multiple of its merge interval: its final merge then has nothing left to merge. Joining the
    last two batches (along the batch axis) keeps every chunk and avoids that count."""
    if len(batches) < 2 or len(batches) % MERGE_EVERY:
        return batches
    last, before = batches[-1], batches[-2]
    joined = {name: np.concatenate([before[name], last[name]]) for name in last}
    return batches[:-2] + [joined]


def quantize_int8(fp32_path: Path, int8_path: Path, batches: list[dict[str, np.ndarray]],
                  cfg: CalibrationConfig) -> dict:
    """Write the QDQ INT8 encoder; returns the settings for the manifest."""
    extra = {
        "ActivationSymmetric": True,
        "WeightSymmetric": True,
        "QuantizeBias": False,  # TensorRT imports no int32 DequantizeLinear: keep biases float
        "CalibMaxIntermediateOutputs": MERGE_EVERY,  # bounded memory: ranges merge every 8
        "CalibTensorRangeSymmetric": True,
    }
    batches = _avoid_empty_last_merge(batches)
    if cfg.method == "percentile":
        extra["CalibPercentile"] = cfg.percentile
    quantize_static(str(fp32_path), str(int8_path), _Reader(batches),
                    quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    op_types_to_quantize=["Conv", "MatMul", "Gemm"],
                    calibrate_method=_METHODS[cfg.method], extra_options=extra)
    source = onnx.load(str(fp32_path))
    model = onnx.load(str(int8_path))
    metadata = {p.key: p.value for p in source.metadata_props}
    metadata[contract.METADATA_PREFIX + "precision"] = '"int8"'
    set_metadata(model, metadata)
    model.producer_name = "edge-ser"
    model.doc_string = "edge-ser streamable emotion encoder (INT8, explicit QDQ)"
    onnx.save(model, str(int8_path))
    summary = {"method": f"static post-training, {cfg.method} calibration",
               "format": "QDQ", "weights": "int8 symmetric, per output channel",
               "activations": "int8 symmetric, per tensor", "bias": "float32",
               "calibration_batches": len(batches),
               "calibration_chunks": int(sum(next(iter(b.values())).shape[0] for b in batches))}
    recurrent = {op: sum(n.op_type == op for n in model.graph.node) for op in ("LSTM", "GRU")}
    if any(recurrent.values()):
        # QDQ has no form for a recurrent op's gates and carried state that TensorRT builds
        # into INT8 kernels; their inputs and weights stay float32.
        summary["float32_ops"] = {op: n for op, n in recurrent.items() if n}
        summary["recurrent"] = "LSTM and GRU in float32; Conv, MatMul and Gemm in INT8"
    return summary
