"""Whole-segment encoding for files: the derived graph, its guard, and streams that use it;
and the stream computing feature frames only for its segments."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from fakes import FakeBackend, fake_package, fake_recognizer
from synth import DEMO_AUDIO, concat, feed, silence, voiced

from edge_ser import encoding, features
from edge_ser.audio import load_mono_16k
from edge_ser.backends import create_backend, segment_graph
from edge_ser.contract import ENCODER_INPUT, ENCODER_OUTPUT, N_MELS
from edge_ser.events import SegmentResult, WindowUpdate
from edge_ser.package import load_package
from edge_ser.recognizer import Recognizer
from edge_ser.sample_buffer import SampleBuffer

RATE = 16_000


@pytest.fixture(scope="module")
def package():
    return load_package(None)


@pytest.fixture(scope="module")
def demo() -> np.ndarray:
    return load_mono_16k(DEMO_AUDIO)


def segments(events) -> list[SegmentResult]:
    return [e for e in events if isinstance(e, SegmentResult)]


# --- the sample buffer --------------------------------------------------------------------------

def test_sample_buffer_keeps_absolute_positions_across_growth_and_trims():
    buffer = SampleBuffer(capacity=8)
    signal = np.arange(100, dtype=np.float32)
    for a in range(0, 100, 7):
        buffer.append(signal[a:a + 7])
        buffer.trim(max(0, a - 10))
    assert buffer.end == 100 and buffer.start == 88
    np.testing.assert_array_equal(buffer.view(90, 100), signal[90:100])
    with pytest.raises(IndexError, match=r"samples \[80, 95\) are not held"):
        buffer.view(80, 95)


# --- features only where a segment needs them ----------------------------------------------------

def test_features_are_computed_only_for_the_frames_segments_feed_the_encoder(monkeypatch):
    computed = []
    original = features.frames_of

    def counting(state, samples, count):
        computed.append(count)
        return original(state, samples, count)

    monkeypatch.setattr(features, "frames_of", counting)
    backend = FakeBackend()
    recognizer = Recognizer(fake_package(backend), backend, scorer=fake_recognizer().scorer)
    x = concat(silence(20.0), voiced(2.0), silence(20.0))
    (result,) = segments(feed(recognizer.create_stream(RATE), x, [RATE // 10]))
    vad = recognizer.config.vad
    padded_frames = round(100 * (result.end_s - result.start_s)
                          + (vad.pre_pad_ms + vad.post_pad_ms) / 10)
    # 42 s of audio, 4200 frames: only the segment's own (padded) frames were computed
    assert sum(computed) == padded_frames


# --- the derived graph and its guard -------------------------------------------------------------

def test_the_segment_graph_has_a_free_frames_axis_and_no_state_outputs(package):
    graph = onnx.load_from_string(segment_graph.segment_graph(package.encoder_path("fp32")))
    feats = next(i for i in graph.graph.input if i.name == ENCODER_INPUT)
    assert feats.type.tensor_type.shape.dim[1].dim_param == segment_graph.FRAMES_DIM
    assert [o.name for o in graph.graph.output] == [ENCODER_OUTPUT]
    streaming = onnx.load(str(package.encoder_path("fp32")))
    assert len(graph.graph.node) < len(streaming.graph.node)  # the next-state nodes are gone


def test_onnxruntime_segment_calls_match_the_streaming_chunks_on_speech(package, demo):
    backend = create_backend(package, "onnxruntime", "fp32")
    assert backend.runs_segments, backend.segment_status
    assert backend.segment_status["max_abs_diff"] <= 1e-4 * backend.segment_status["scale"]
    feats = features.log_mel(demo[: 13 * RATE], kernels="numpy")
    clips = [feats[:1], feats[1:20], feats[20:57], feats[57:457], feats[457:1200]]
    parity = segment_graph.check_parity(backend, clips)
    assert parity["clips"] == 5 and parity["frames"] == 1200
    assert parity["max_abs_diff"] < 1e-4
    # exactly the frames the stream yields: n // stride, at least one
    assert encoding.encode_segment(backend, feats[:1]).shape == (1, backend.out_channels)
    assert encoding.encode_segment(backend, feats[:0]).shape == (0, backend.out_channels)


def test_threads_sharing_a_backend_derive_the_segment_graph_once(package, monkeypatch):
    import threading
    import time

    derived = []
    real = segment_graph.segment_graph

    def slow_derivation(path):
        derived.append(path)
        time.sleep(0.2)  # long enough for every thread to ask while the first derives
        return real(path)

    monkeypatch.setattr(segment_graph, "segment_graph", slow_derivation)
    backend = create_backend(package, "onnxruntime", "fp32")
    answers = []
    threads = [threading.Thread(target=lambda: answers.append(backend.runs_segments))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [True] * 4 and len(derived) == 1


def test_the_int8_encoder_stays_on_chunks(package):
    backend = create_backend(package, "onnxruntime", "int8")
    assert not backend.runs_segments and "re-quantized" in backend.segment_status


def test_a_graph_that_cannot_be_derived_leaves_the_backend_on_chunks(package, monkeypatch):
    def broken(path):
        raise segment_graph.SegmentGraphError(f"{path}: no input 'feats'")

    monkeypatch.setattr(segment_graph, "segment_graph", broken)
    backend = create_backend(package, "onnxruntime", "fp32")
    assert not backend.runs_segments
    assert "no input 'feats'" in backend.segment_status
    with pytest.raises(RuntimeError, match="no whole-segment encoder"):
        backend.run_segment(np.zeros((1, 2, N_MELS), np.float32), backend.init_state(1))


def test_a_graph_that_differs_from_the_chunks_is_not_used(package, monkeypatch):
    monkeypatch.setattr(segment_graph, "PARITY_ATOL", 0.0)  # any rounding difference now fails
    backend = create_backend(package, "onnxruntime", "fp32")
    assert not backend.runs_segments
    assert "differs from the streaming encoder" in backend.segment_status


def test_the_torch_encoder_runs_whole_segments_like_its_chunks():
    torch = pytest.importorskip("torch")
    from edge_ser_export.torch_reference import TorchBackend
    from edge_ser_train.encoder import TCNEncoder

    torch.manual_seed(0)
    encoder = TCNEncoder(n_mels=N_MELS, channels=16, kernel=3, dilations=(1, 2), dropout=0.0,
                         stride=2, norm_window_frames=20)
    backend = TorchBackend(encoder, chunk_frames=8)
    clips = [np.random.default_rng(i).standard_normal((n, N_MELS)).astype(np.float32)
             for i, n in enumerate((1, 8, 29))]
    assert segment_graph.check_parity(backend, clips, atol=1e-5)["frames"] == 38


# --- streams --------------------------------------------------------------------------------------

def test_whole_segment_streams_make_one_encoder_call_per_segment_with_the_same_events(demo):
    chunked_backend, whole_backend = FakeBackend(), FakeBackend()
    scorer = fake_recognizer().scorer
    chunked = Recognizer(fake_package(chunked_backend), chunked_backend, scorer=scorer)
    whole = Recognizer(fake_package(whole_backend), whole_backend, scorer=scorer)
    x = demo[: 30 * RATE]
    expected = feed(chunked.create_stream(RATE), x, [RATE // 10])
    got = feed(whole.create_stream(RATE, whole_segments=True), x, [RATE // 10])
    assert len(segments(got)) == len(segments(expected)) >= 5
    assert whole_backend.calls == 0 and whole_backend.segment_calls == len(segments(got))
    assert [type(e) for e in got if not isinstance(e, WindowUpdate)] == \
        [type(e) for e in expected if not isinstance(e, WindowUpdate)]
    for g, e in zip(got, expected):
        assert (g.start_s, g.end_s, g.label) == (e.start_s, e.end_s, e.label)
        np.testing.assert_allclose(list(g.probs.values()), list(e.probs.values()), atol=1e-6)


def test_whole_segments_fall_back_to_chunks_when_the_backend_cannot(demo):
    backend = FakeBackend(runs_segments=False)
    recognizer = Recognizer(fake_package(backend), backend, scorer=fake_recognizer().scorer)
    x = demo[: 10 * RATE]
    expected = feed(recognizer.create_stream(RATE), x, [RATE // 10])
    assert feed(recognizer.create_stream(RATE, whole_segments=True), x, [RATE // 10]) == expected
    assert backend.segment_calls == 0


def test_the_bundled_model_gives_the_same_results_with_whole_segments(demo):
    with Recognizer.from_options(None) as recognizer:
        x = demo[: 40 * RATE]
        expected = segments(feed(recognizer.create_stream(RATE), x, [RATE // 10]))
        got = segments(feed(recognizer.create_stream(RATE, whole_segments=True), x,
                            [RATE // 10]))
    assert len(got) == len(expected) >= 5
    for g, e in zip(got, expected):
        assert (g.start_s, g.end_s, g.label, g.windows) == (e.start_s, e.end_s, e.label,
                                                            e.windows)
        np.testing.assert_allclose(list(g.probs.values()), list(e.probs.values()), atol=1e-4)
        assert g.similarity == pytest.approx(e.similarity, abs=1e-4)
