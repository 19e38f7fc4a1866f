"""The whole-segment graph in the 2-D layout: the same function as the 1-D graph (up to float
rounding), every convolution 2-D, the box filter as pooling; graphs it cannot rewrite are left
to the 1-D path."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge_ser.backends import conv2d_layout, create_backend, segment_graph
from edge_ser.contract import ENCODER_INPUT, N_MELS
from edge_ser.package import load_package

ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def package():
    return load_package(None)


def session(graph: bytes):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


def random_feed(sess, frames: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feed = {i.name: rng.standard_normal([d if isinstance(d, int) else 1 for d in i.shape])
            .astype(np.float32) for i in sess.get_inputs()}
    feed[ENCODER_INPUT] = (rng.standard_normal((1, frames, N_MELS)) * 3 - 4).astype(np.float32)
    return feed


def test_the_bundled_encoder_in_2d_computes_the_1d_graph(package):
    graph_1d = segment_graph.segment_graph(package.encoder_path("fp32"))
    graph_2d, rewritten = conv2d_layout.as_conv2d(graph_1d, ENCODER_INPUT)
    assert rewritten == {"convolutions": 17, "box_filters": 1}
    nodes = onnx.load_from_string(graph_2d).graph.node
    assert [n.op_type for n in nodes].count("AveragePool") == 1
    weights = {i.name: i for i in onnx.load_from_string(graph_2d).graph.initializer}
    assert all(len(weights[n.input[1]].dims) == 4 for n in nodes if n.op_type == "Conv")
    one_d, two_d = session(graph_1d), session(graph_2d)
    for frames, seed in ((4, 0), (50, 1), (400, 2)):  # states at random values, not zeros
        feed = random_feed(one_d, frames, seed)
        expected, got = one_d.run(None, feed)[0], two_d.run(None, feed)[0]
        assert got.shape == expected.shape == (1, frames // 2, 128)
        np.testing.assert_allclose(got, expected, atol=1e-4 * np.abs(expected).max())


def test_the_backend_uses_the_2d_graph_and_records_it(package):
    backend = create_backend(package, "onnxruntime", "fp32")
    assert backend.runs_segments
    assert backend.segment_status["layout"] == {"conv2d": {"convolutions": 17, "box_filters": 1}}


def tiny_graph(box_weight: float, extra_op: str | None = None) -> bytes:
    """feats (1, T, 4) -> (1, 4, T) -> box filter over 3 frames [-> extra_op] -> (1, T-2, 4)."""
    nodes = [helper.make_node("Transpose", [ENCODER_INPUT], ["x"], perm=[0, 2, 1]),
             helper.make_node("Conv", ["x", "w"], ["box"], group=4, kernel_shape=[3])]
    last = "box"
    if extra_op:
        nodes.append(helper.make_node(extra_op, [last], ["extra"]))
        last = "extra"
    nodes.append(helper.make_node("Transpose", [last], ["frames"], perm=[0, 2, 1]))
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info(ENCODER_INPUT, TensorProto.FLOAT, [1, "t", 4])],
        [helper.make_tensor_value_info("frames", TensorProto.FLOAT, [1, "u", 4])],
        [numpy_helper.from_array(np.full((4, 1, 3), box_weight, np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return model.SerializeToString()


@pytest.mark.parametrize("weight", [1 / 3, 0.5])
def test_a_box_filter_becomes_average_pooling_scaled_by_its_weight_sum(weight):
    graph_1d = tiny_graph(weight)
    graph_2d, rewritten = conv2d_layout.as_conv2d(graph_1d, ENCODER_INPUT)
    assert rewritten == {"convolutions": 0, "box_filters": 1}
    ops = [n.op_type for n in onnx.load_from_string(graph_2d).graph.node]
    # a weight sum of 1 (1/3 * 3) needs no scaling; 0.5 * 3 does
    assert ops.count("Mul") == (0 if weight == 1 / 3 else 1) and "AveragePool" in ops
    feats = np.random.default_rng(0).standard_normal((1, 9, 4)).astype(np.float32)
    expected = session(graph_1d).run(None, {ENCODER_INPUT: feats})[0]
    got = session(graph_2d).run(None, {ENCODER_INPUT: feats})[0]
    windows = np.lib.stride_tricks.sliding_window_view(feats[0], 3, axis=0)  # (7, 4, 3)
    np.testing.assert_allclose(expected[0], weight * windows.sum(-1), rtol=1e-5)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_an_unknown_operator_on_the_path_is_refused():
    with pytest.raises(conv2d_layout.LayoutError, match="Softmax on the"):
        conv2d_layout.as_conv2d(tiny_graph(0.5, extra_op="Softmax"), ENCODER_INPUT)


def test_the_backend_falls_back_to_the_1d_graph_when_the_rewrite_fails(package, monkeypatch):
    def refuse(graph, feature_input):
        raise conv2d_layout.LayoutError("Foo on the (batch, channels, time) path")

    monkeypatch.setattr(conv2d_layout, "as_conv2d", refuse)
    backend = create_backend(package, "onnxruntime", "fp32")
    assert backend.runs_segments
    assert backend.segment_status["layout"].startswith("1-D: the 2-D layout failed (LayoutError")
