"""Export of a small random multigate model to a package, and the runtime over it: every state
explicit in the ONNX graph, chunked runtime equal to the whole-clip torch model, INT8 with the
recurrent ops in float32, and `Stream` producing labelled segments."""

import pytest

pytest.importorskip("torch", reason="needs torch: the [train] extra")

import json
from collections import Counter

import numpy as np
import onnx
import torch
from synth import concat, feed, silence, voiced

from edge_ser import attention_windowing, contract
from edge_ser.backends.onnxruntime_backend import OnnxRuntimeBackend
from edge_ser.config import load_config
from edge_ser.engine_build.graph_checks import check_deployable
from edge_ser.engine_build.parity import random_feats, stream_parity
from edge_ser.events import SegmentResult, WindowUpdate
from edge_ser.family import AttentionPooling, pooling_for, scorer_for
from edge_ser.gated_scoring import GatedScorer
from edge_ser.package import PackageError, load_package
from edge_ser.recognizer import Recognizer
from edge_ser.runtime_config import RuntimeConfig
from edge_ser.scoring import encode_clip
from edge_ser_export import steps
from edge_ser_export.config import ExportConfig
from edge_ser_export.multigate_head import head_arrays, head_parity
from edge_ser_export.package_builder import fp32_parity
from edge_ser_export.torch_reference import TorchBackend
from edge_ser_train.config import TrainConfig
from edge_ser_train.model import build_model

LABELS = ("angry", "happy", "neutral", "sad")
FP32_TOLERANCE = 1e-4
LANGUAGES = ("de", "tr")


def tiny_model(*overrides: str):
    torch.manual_seed(0)
    cfg = load_config(TrainConfig, None, [
        "model.family=multigate", "model.channels=16", "model.dilations=[1, 2]",
        "model.embedding_dim=16", "model.multigate.branch_channels=8",
        "model.multigate.gate_hidden=8", "model.multigate.ge2e_weights=random",
        "model.multigate.head=1x12:gelu", *overrides]).model
    model = build_model(cfg, contract.N_MELS, len(LABELS), LANGUAGES, pretrained=True)
    with torch.no_grad():  # non-trivial BatchNorm statistics and input normalisation
        model.encoder.input_norm.set_stats(torch.randn(contract.N_MELS) - 6.0,
                                           torch.rand(contract.N_MELS) + 2.0)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.normal_(0.0, 0.3)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def clips(n: int, seed: int) -> list[np.ndarray]:
    """Random log-mel clips of an even number of frames (whole stride groups)."""
    rng = np.random.default_rng(seed)
    return [random_feats(2 * int(rng.integers(30, 100)), seed=seed * 1000 + i) for i in range(n)]


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    model = tiny_model()
    root = tmp_path_factory.mktemp("mg") / "pkg"
    feats = clips(12, seed=1)
    cfg = load_config(ExportConfig, None, ["calibration.batch=16",
                                           "memory_bank.centroids_per_class=2"])
    steps.write_package(model, root, LABELS, cfg, feats[:6], feats,
                        np.arange(len(feats)) % len(LABELS),
                        provenance={"checkpoint": {"file": "", "sha256": ""}})
    return model, load_package(root)


def test_the_graph_carries_every_state_explicitly(package):
    model, pkg = package
    manifest = pkg.manifest
    assert manifest["family"] == "multigate" and manifest["head"]["route"] == "shared"
    graph = onnx.load(str(pkg.encoder_path("fp32")))
    inputs = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
              for i in graph.graph.input}
    outputs = {o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim]
               for o in graph.graph.output}
    states = [s["shape"] for s in pkg.state_specs()]
    assert len(inputs) == len(outputs) == 1 + len(states)
    for spec in pkg.state_specs():
        assert inputs[spec["input"]] == outputs[spec["output"]] == spec["shape"]
    n_tcn = len(model.encoder.init_state(1))
    # after the TCN caches: mfcc conv cache + GRU, prosody conv cache + GRU + energy, LSTM h, c
    assert states[n_tcn:] == [["batch", 20, 4], [1, "batch", 8], ["batch", 5, 4],
                              [1, "batch", 8], ["batch", 2], [3, "batch", 256],
                              [3, "batch", 256]]
    ops = Counter(n.op_type for n in graph.graph.node)
    assert ops["LSTM"] == 3 and ops["GRU"] == 2
    row = sum(1 + s["dim"] for s in manifest["head"]["streams"])
    assert outputs[contract.ENCODER_OUTPUT] == ["batch", pkg.out_frames, row]
    assert [s["name"] for s in manifest["head"]["streams"]] == ["tcn", "mfcc", "prosody", "ge2e"]


def test_chunked_runtime_equals_the_whole_clip_torch_model(package):
    model, pkg = package
    backend = OnnxRuntimeBackend(pkg, "fp32")
    pooling = pooling_for(pkg, backend.out_channels)
    scorer = scorer_for(pkg)
    assert isinstance(pooling, AttentionPooling) and isinstance(scorer, GatedScorer)
    feats = clips(4, seed=7) + [random_feats(400, seed=3)]  # 400 frames: 20 chunks
    for clip in feats:
        pooled = pooling.pool_frames(encode_clip(backend, clip))
        embedding = scorer.embed(pooled[None])
        with torch.no_grad():
            whole = model.parts(torch.from_numpy(clip)[None], torch.tensor([len(clip)]))
        assert np.abs(embedding - whole.embedding.numpy()).max() < FP32_TOLERANCE
        assert np.abs(scorer.logits(embedding) - whole.logits.numpy()).max() < FP32_TOLERANCE


def test_onnx_equals_torch_chunk_by_chunk_with_batches(package):
    model, pkg = package
    reference = TorchBackend(steps.streamed_part(model), pkg.chunk_frames)
    backend = OnnxRuntimeBackend(pkg, "fp32")
    speech = random_feats(pkg.chunk_frames * 30, seed=5)
    for batch in (1, 3):
        report = stream_parity(reference, backend, speech, batch=batch)
        assert report.max_abs_frames < FP32_TOLERANCE and report.max_abs_state < FP32_TOLERANCE
        assert report.max_scaled_state <= report.max_abs_state
    # the export's check: states judged relative to their size (the LSTM cell state grows)
    parity = fp32_parity(reference, backend, speech, load_config(ExportConfig, None, []), True)
    assert parity["fp32_state_criterion"] == "max_scaled_state"
    assert parity["fp32_worst_abs"] < FP32_TOLERANCE


def test_the_numpy_head_equals_the_shared_route(package):
    model, _ = package
    arrays, spec = head_arrays(model)
    assert spec["activation"] == "gelu" and spec["layers"] == 2
    assert head_parity(model, arrays, spec) < 1e-5


def test_int8_quantizes_convs_and_linears_and_keeps_the_recurrent_ops_float(package):
    _, pkg = package
    spec = pkg.manifest["encoder"]
    graph = onnx.load(str(pkg.encoder_path("int8")))
    summary = check_deployable(graph, spec, True)  # QDQ on every Conv/MatMul/Gemm
    assert summary["quantized_ops"] >= 10
    assert pkg.manifest["quantization"]["float32_ops"] == {"LSTM": 3, "GRU": 2}
    recurrent = [n for n in graph.graph.node if n.op_type in ("LSTM", "GRU")]
    producers = {o: n.op_type for n in graph.graph.node for o in n.output}
    assert all(producers.get(n.input[1]) != "DequantizeLinear" for n in recurrent)
    fp32, int8 = OnnxRuntimeBackend(pkg, "fp32"), OnnxRuntimeBackend(pkg, "int8")
    report = stream_parity(fp32, int8, random_feats(pkg.chunk_frames * 20, seed=9))
    assert report.rel_rms_frames < 0.25


def test_a_stream_over_the_package_gives_labelled_segments(package):
    _, pkg = package
    config = load_config(RuntimeConfig, None, ["speech_check.enabled=false",
                                               "tracker.min_similarity=-1"])
    recognizer = Recognizer.from_options(pkg.root, precision="fp32", config=config)
    audio = concat(silence(0.5), voiced(2.6, 140.0), silence(1.2), voiced(2.4, 210.0, seed=2),
                   silence(1.0))
    events = feed(recognizer.create_stream(16_000), audio, [1600])
    results = [e for e in events if isinstance(e, SegmentResult)]
    windows = [e for e in events if isinstance(e, WindowUpdate)]
    assert len(results) == 2 and windows
    assert all(r.label in LABELS and abs(sum(r.probs.values()) - 1) < 1e-5 for r in results)
    assert all(w.end_s - w.start_s == pytest.approx(config.window.window_s) for w in windows)
    # files: one encoder call per segment (the graph's time axis is free) gives the same results
    assert recognizer.backend.runs_segments, recognizer.backend.segment_status
    whole = [e for e in feed(recognizer.create_stream(16_000, whole_segments=True), audio,
                             [16_000]) if isinstance(e, SegmentResult)]
    assert [r.label for r in whole] == [r.label for r in results]
    for a, b in zip(whole, results):
        assert max(abs(a.probs[k] - b.probs[k]) for k in LABELS) < 1e-4


def test_windows_from_merged_blocks_equal_direct_pooling():
    rng = np.random.default_rng(0)
    layout = attention_windowing.RowLayout((3, 2))
    rows = rng.standard_normal((97, layout.row_width)).astype(np.float32)
    rows[:, layout.logit_cols] *= 30.0  # logits far apart: exponentials span many decades
    state = attention_windowing.init_state(layout, window_frames=20, hop_frames=6)
    windows = []
    for start in range(0, 97, 7):
        windows += attention_windowing.push(state, rows[start:start + 7])
    assert [(a, b) for a, b, _ in windows] == [(6 * k, 6 * k + 20) for k in range(13)]
    for first, end, pooled in windows:
        logits = rows[first:end, layout.logit_cols].astype(np.float64)
        w = np.exp(logits - logits.max(0))
        w /= w.sum(0)
        direct = np.concatenate([(w[:, s:s + 1] * rows[first:end, cols]).sum(0)
                                 for s, cols in enumerate(([1, 2, 3], [5, 6]))])
        assert np.abs(pooled - direct).max() < 1e-5
    assert np.abs(attention_windowing.pool_all(state)
                  - attention_windowing.pool_frames(layout, rows)).max() < 1e-5
    assert len(state.blocks) <= 20 // 2  # only the blocks later windows need are kept


def test_a_head_that_does_not_match_the_rows_is_refused(package, tmp_path):
    _, pkg = package
    manifest = json.loads(json.dumps(pkg.manifest))
    manifest["head"]["streams"][1]["dim"] += 1
    with pytest.raises(PackageError, match="head.streams"):
        load_package(pkg.root, manifest=manifest)
    manifest = json.loads(json.dumps(pkg.manifest))
    manifest["family"] = "other"
    with pytest.raises(PackageError, match="family"):
        load_package(pkg.root, manifest=manifest)
