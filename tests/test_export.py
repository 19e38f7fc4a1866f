"""Export of small random models: ONNX round trip, parity, the graph rules TensorRT needs."""

import pytest

pytest.importorskip("torch", reason="needs torch: the [train] extra")

import json
from collections import Counter

import numpy as np
import onnx
import torch
from onnx import helper

from edge_ser import contract
from edge_ser.backends.onnxruntime_backend import OnnxRuntimeBackend
from edge_ser.config import load_config
from edge_ser.engine_build.config import TensorRTConfig
from edge_ser.engine_build.fp16 import to_fp16
from edge_ser.engine_build.graph_checks import (
    GraphCheckError,
    check_deployable,
    check_io_shapes,
    check_qdq,
)
from edge_ser.engine_build.parity import random_feats, stream_parity
from edge_ser.engine_build.tensorrt_build import PROFILES, profile_shapes, trtexec_command
from edge_ser.package import load_package
from edge_ser.scoring import WindowScorer, encode_clip, stats_pool
from edge_ser_export import steps
from edge_ser_export.config import ExportConfig
from edge_ser_export.torch_reference import TorchBackend
from edge_ser_train.config import TrainConfig
from edge_ser_train.model import EmotionModel

LABELS = ("angry", "happy", "neutral", "sad")
FP32_TOLERANCE = 1e-4  # float32 sums in another order; ~1e-5 seen over hundreds of chunks


def small_model(arch: str = "tcn", seed: int = 0) -> EmotionModel:
    torch.manual_seed(seed)
    overrides = [f"model.arch={arch.split('-')[0]}", "model.channels=16",
                 "model.embedding_dim=8", "model.dilations=[1,2,4]", "model.gru_layers=1",
                 f"model.norm_window_s={0.2 if arch == 'tcn-norm' else 0}"]
    model = EmotionModel(load_config(TrainConfig, None, overrides).model, contract.N_MELS,
                         len(LABELS))
    with torch.no_grad():  # non-trivial normalisation and BatchNorm statistics
        model.encoder.input_norm.set_stats(torch.randn(contract.N_MELS) - 6.0,
                                           torch.rand(contract.N_MELS) + 2.0)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.normal_(0.0, 0.3)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def clips(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [random_feats(int(rng.integers(60, 200)), seed=seed * 1000 + i) for i in range(n)]


def export_config(**overrides) -> ExportConfig:
    sets = ["calibration.batch=16", "memory_bank.centroids_per_class=2"]
    sets += [f"{k}={v}" for k, v in overrides.items()]
    return load_config(ExportConfig, None, sets)


@pytest.fixture(scope="module")
def small_package(tmp_path_factory):
    model = small_model("tcn")
    root = tmp_path_factory.mktemp("pkg") / "small"
    feats = clips(24, seed=1)
    targets = np.arange(len(feats)) % len(LABELS)
    steps.write_package(model, root, LABELS, export_config(), feats[:12], feats, targets,
                        provenance={"checkpoint": {"file": "", "sha256": ""}})
    return model, load_package(root)


def test_round_trip_loads_and_carries_the_contract(small_package):
    model, package = small_package
    assert package.labels == LABELS
    assert package.chunk_frames == export_config().encoder.chunk_frames == 20
    assert package.stride == model.encoder.stride
    assert package.embedding_channels == 16
    meta = {p.key: p.value for p in onnx.load(str(package.encoder_path("int8"))).metadata_props}
    assert json.loads(meta[contract.METADATA_PREFIX + "labels"]) == list(LABELS)
    assert json.loads(meta[contract.METADATA_PREFIX + "sample_rate_hz"]) == 16000
    assert json.loads(meta[contract.METADATA_PREFIX + "precision"]) == "int8"
    for name in ("encoder.onnx", "encoder.int8.onnx", "head.npz", "memory_bank.npz",
                 "initial_state.npz"):
        assert len(package.manifest["files"][name]["sha256"]) == 64


def test_graphs_pass_the_deployment_checks(small_package):
    _, package = small_package
    spec = package.manifest["encoder"]
    fp32 = onnx.load(str(package.encoder_path("fp32")))
    assert check_deployable(fp32, spec, quantized=False)["opset"] >= 17
    summary = check_deployable(onnx.load(str(package.encoder_path("int8"))), spec, quantized=True)
    convs = sum(n.op_type == "Conv" for n in fp32.graph.node)
    assert summary["quantized_ops"] == convs > 0
    # fixed chunk shapes leave no shape arithmetic for TensorRT to resolve
    assert not {"Shape", "Gather"} & {n.op_type for n in fp32.graph.node}


@pytest.mark.parametrize("arch", ["tcn", "gru", "tcn-norm"])
def test_fp32_parity_over_many_chunks(tmp_path, arch):
    model = small_model(arch)
    cfg = export_config()
    spec = steps.write_fp32(model, tmp_path, LABELS, cfg, {})
    onnx_backend = OnnxRuntimeBackend(steps.draft_package(tmp_path, spec, LABELS), "fp32")
    reference = TorchBackend(model.encoder, cfg.encoder.chunk_frames)
    speech = random_feats(150 * cfg.encoder.chunk_frames, seed=3)
    for batch in (1, 3):
        report = stream_parity(reference, onnx_backend, speech, batch=batch)
        assert report.chunks == 150
        assert report.max_abs_frames < FP32_TOLERANCE
        assert report.max_abs_state < FP32_TOLERANCE


def test_runtime_path_matches_the_torch_model(small_package):
    """encode_clip + stats_pool + WindowScorer (numpy) = EmotionModel on the whole clip."""
    model, package = small_package
    backend = OnnxRuntimeBackend(package, "fp32")
    scorer = WindowScorer.from_package(package)
    for feats in clips(4, seed=7):
        pooled = stats_pool(encode_clip(backend, feats))
        with torch.no_grad():
            logits, _ = model(torch.from_numpy(feats)[None], torch.tensor([len(feats)]))
        expected = torch.softmax(logits, 1).numpy()
        np.testing.assert_allclose(scorer.score_pooled(pooled[None]).classifier_probs, expected,
                                   atol=1e-4)


def test_int8_runs_close_to_fp32(small_package):
    _, package = small_package
    speech = random_feats(100 * package.chunk_frames, seed=5)
    report = stream_parity(OnnxRuntimeBackend(package, "fp32"),
                           OnnxRuntimeBackend(package, "int8"), speech)
    assert report.rel_rms_frames < 0.25


def _without_weight_dq(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose first Conv reads a float weight directly (no DequantizeLinear)."""
    broken = onnx.ModelProto()
    broken.CopyFrom(model)
    conv = next(n for n in broken.graph.node if n.op_type == "Conv")
    weight = np.ones((1,), dtype=np.float32)
    broken.graph.initializer.append(onnx.numpy_helper.from_array(weight, "float_weight"))
    conv.input[1] = "float_weight"
    return broken


def test_qdq_check_refuses_a_conv_without_quantized_weight(small_package):
    _, package = small_package
    int8 = onnx.load(str(package.encoder_path("int8")))
    with pytest.raises(GraphCheckError, match="weight input is not fed by DequantizeLinear"):
        check_qdq(_without_weight_dq(int8))
    with pytest.raises(GraphCheckError, match="data input is not fed by DequantizeLinear"):
        check_qdq(onnx.load(str(package.encoder_path("fp32"))))


def test_operator_check_refuses_what_tensorrt_cannot_import(small_package):
    _, package = small_package
    model = onnx.load(str(package.encoder_path("fp32")))
    out = model.graph.output[0].name
    model.graph.node.append(helper.make_node("NonZero", [out], ["nz"]))
    with pytest.raises(GraphCheckError, match="NonZero"):
        check_deployable(model, package.manifest["encoder"], quantized=False)


def test_only_the_declared_batch_axis_may_be_dynamic(small_package):
    _, package = small_package
    model = onnx.load(str(package.encoder_path("fp32")))
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "time"
    with pytest.raises(GraphCheckError, match="dynamic axes"):
        check_io_shapes(model, package.manifest["encoder"])


def test_tensorrt_profiles_follow_the_manifest(small_package, tmp_path):
    _, package = small_package
    spec = package.manifest["encoder"]
    graph_inputs = {i.name for i in onnx.load(str(package.encoder_path("int8"))).graph.input}
    for profile in PROFILES:
        shapes = profile_shapes(package, profile)
        assert set(shapes) == graph_inputs
        batches = spec["profiles"][profile]
        for name, (low, opt, high) in shapes.items():
            declared = (spec["input"]["shape"] if name == spec["input"]["name"] else
                        next(s["shape"] for s in spec["state"] if s["input"] == name))
            axis = declared.index(contract.BATCH_DIM)
            assert (low[axis], opt[axis], high[axis]) == (batches["min"], batches["opt"],
                                                          batches["max"])
            fixed = [d for d in declared if d != contract.BATCH_DIM]
            assert [d for i, d in enumerate(high) if i != axis] == fixed
    command = trtexec_command(package, "int8", package.encoder_path("int8"),
                              tmp_path / "e.engine", tmp_path / "cache", TensorRTConfig())
    assert "--stronglyTyped" in command and "--profile=1" in command
    assert command.count("--minShapes=") == 2
    assert f"{contract.ENCODER_INPUT}:1x{package.chunk_frames}x{contract.N_MELS}" in command


def test_fp16_graph_keeps_float32_io_and_the_numbers(small_package):
    _, package = small_package
    fp32 = onnx.load(str(package.encoder_path("fp32")))
    half = to_fp16(fp32)
    types = Counter(i.data_type for i in half.graph.initializer)
    assert onnx.TensorProto.FLOAT not in types and onnx.TensorProto.FLOAT16 in types
    check_io_shapes(half, package.manifest["encoder"])  # float32 I/O, same shapes
    from onnx.reference import ReferenceEvaluator

    backend = OnnxRuntimeBackend(package, "fp32")
    feats = random_feats(package.chunk_frames, seed=9)[None]
    state = backend.init_state(1)
    expected, _ = backend.run(feats, state)
    feed = {contract.ENCODER_INPUT: feats, **dict(zip(
        [s["input"] for s in package.state_specs()], state))}
    got = ReferenceEvaluator(half).run([contract.ENCODER_OUTPUT], feed)[0]
    assert np.abs(got - expected).max() < 0.05 * (np.abs(expected).max() + 1.0)


def test_calibration_batch_count_never_leaves_the_last_merge_empty():
    from edge_ser_export.quantize import MERGE_EVERY, _avoid_empty_last_merge

    batches = [{"feats": np.full((1, 2), i, dtype=np.float32)} for i in range(2 * MERGE_EVERY)]
    joined = _avoid_empty_last_merge(batches)
    assert len(joined) % MERGE_EVERY != 0
    assert sum(b["feats"].shape[0] for b in joined) == len(batches)  # no chunk dropped
    assert _avoid_empty_last_merge(batches[:5]) == batches[:5]
