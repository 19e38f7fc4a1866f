"""Pooling, the numpy head and the memory bank, and whole-clip encoding through a backend."""

import pytest

pytest.importorskip("torch", reason="needs torch: the [train] extra")

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_export import LABELS, small_model

from edge_ser.engine_build.parity import random_feats
from edge_ser.scoring import WindowScorer, encode_clip, stats_pool
from edge_ser_export.head import head_arrays
from edge_ser_export.torch_reference import TorchBackend
from edge_ser_train.model import masked_stats_pool


@settings(max_examples=25, deadline=None)
@given(frames=st.integers(1, 60), seed=st.integers(0, 1000), constant=st.booleans())
def test_stats_pool_is_the_training_pooling(frames, seed, constant):
    x = np.random.default_rng(seed).standard_normal((frames, 12)).astype(np.float32) * 3
    if constant:  # zero variance: both clamp at 1e-6 before the square root
        x[:] = x[0]
    # The same formula in float64: in float32, E[x^2] - mean^2 of near-constant frames is
    # dominated by rounding (std errors up to ~1e-3), which the runtime's float64 sums avoid.
    expected = masked_stats_pool(torch.from_numpy(x).double()[None],
                                 torch.tensor([frames]))[0].numpy()
    np.testing.assert_allclose(stats_pool(x), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(stats_pool(x[None])[0], stats_pool(x))


def test_stats_pool_refuses_an_empty_window():
    with pytest.raises(ValueError, match="T >= 1"):
        stats_pool(np.zeros((0, 8), dtype=np.float32))


def toy_scorer(memory_weight: float, top_k: int = 1) -> WindowScorer:
    """Embedding = pooled[:2] (identity projection); class k owns the centroids at k*90 deg."""
    head = {"projection_weight": np.eye(2, 4, dtype=np.float32),
            "projection_bias": np.zeros(2, np.float32),
            "classifier_weight": np.array([[1, 0], [0, 1], [-1, 0], [0, -1]], np.float32),
            "classifier_bias": np.zeros(4, np.float32)}
    angles = np.deg2rad([0, 10, 90, 100, 180, 190, 270, 280])
    centroids = np.stack([np.cos(angles), np.sin(angles)], 1).astype(np.float16)
    owners = np.repeat(np.arange(4), 2)
    return WindowScorer(head, centroids, owners, 4, temperature=0.1, top_k=top_k,
                        memory_weight=memory_weight)


def test_fused_probabilities_sum_to_one_and_interpolate():
    pooled = np.random.default_rng(0).standard_normal((16, 4)).astype(np.float32)
    only_classifier = toy_scorer(0.0).score_pooled(pooled)
    only_memory = toy_scorer(1.0).score_pooled(pooled)
    mixed = toy_scorer(0.5).score_pooled(pooled)
    for scores in (only_classifier, only_memory, mixed):
        np.testing.assert_allclose(scores.probs.sum(1), 1.0, atol=1e-6)
        assert scores.probs.shape == (16, 4) and scores.similarity.shape == (16,)
    np.testing.assert_allclose(only_classifier.probs, only_classifier.classifier_probs, atol=1e-6)
    np.testing.assert_allclose(only_memory.probs, only_memory.memory_probs, atol=1e-6)


def test_memory_scores_by_cosine_to_the_class_centroids():
    scorer = toy_scorer(1.0, top_k=1)
    at_class_2 = np.array([[-3.0, 0.0, 0, 0]], np.float32)  # pointing at 180 deg, any length
    scores = scorer.score_pooled(at_class_2)
    assert scores.memory_probs.argmax() == 2
    assert scores.similarity[0] == pytest.approx(1.0, abs=1e-3)
    angle = np.deg2rad(50)  # 40 deg from the nearest centroids (10 and 90 deg)
    between = np.array([[np.cos(angle), np.sin(angle), 0, 0]], np.float32)
    assert scorer.score_pooled(between).similarity[0] == pytest.approx(np.cos(np.deg2rad(40)),
                                                                      abs=2e-3)


def test_top_k_averages_the_best_centroids_of_a_class():
    pooled = np.array([[np.cos(np.deg2rad(5)), np.sin(np.deg2rad(5)), 0, 0]], np.float32)
    one = toy_scorer(1.0, top_k=1).memory_scores(pooled[:, :2])[0]
    two = toy_scorer(1.0, top_k=2).memory_scores(pooled[:, :2])[0]
    assert one[0, 0] == pytest.approx(np.cos(np.deg2rad(5)), abs=2e-3)
    assert two[0, 0] == pytest.approx(np.cos(np.deg2rad(5)), abs=2e-3)  # both 5 deg away
    assert two[0, 1] < one[0, 1]  # the second centroid of class 1 is farther


def test_numpy_head_equals_the_torch_head():
    model = small_model()
    head = head_arrays(model)
    bank = np.eye(len(LABELS), head["projection_weight"].shape[0], dtype=np.float16)
    scorer = WindowScorer(head, bank, np.arange(len(LABELS)), len(LABELS), 0.1, 1, 0.0)
    pooled = np.abs(np.random.default_rng(1).standard_normal((8, 32))).astype(np.float32)
    with torch.no_grad():
        logits, _ = model.head(torch.from_numpy(pooled))
    np.testing.assert_allclose(scorer.score_pooled(pooled).classifier_probs,
                               torch.softmax(logits, 1).numpy(), atol=1e-5)


@pytest.mark.parametrize("frames", [7, 10, 53, 60])
def test_encode_clip_equals_the_whole_sequence(frames):
    """Chunked with state, a zero-padded last chunk whose padded outputs are dropped: the same
    frames as the encoder over the whole clip at once."""
    model = small_model()
    backend = TorchBackend(model.encoder, chunk_frames=10)
    feats = random_feats(frames, seed=frames)
    with torch.no_grad():
        whole = model.encoder(torch.from_numpy(feats)[None])[0].numpy()
    chunked = encode_clip(backend, feats)
    assert chunked.shape == (frames // model.encoder.stride, 16)
    np.testing.assert_allclose(chunked, whole, atol=1e-5)


def test_encode_clip_shorter_than_the_stride_gives_no_frames():
    model = small_model()
    frames = encode_clip(TorchBackend(model.encoder, chunk_frames=10), random_feats(1))
    assert frames.shape == (0, 16)


@pytest.mark.parametrize("top_k", [1, 2, 3, 5])
def test_equal_class_sizes_rank_all_classes_at_once_with_the_same_numbers(top_k):
    rng = np.random.default_rng(3)
    head = {"projection_weight": rng.standard_normal((6, 12)).astype(np.float32),
            "projection_bias": rng.standard_normal(6).astype(np.float32),
            "classifier_weight": rng.standard_normal((4, 6)).astype(np.float32),
            "classifier_bias": np.zeros(4, np.float32)}
    centroids = rng.standard_normal((16, 6)).astype(np.float32)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    owners = rng.permutation(np.repeat(np.arange(4), 4))
    scorer = WindowScorer(head, centroids, owners, 4, 0.1, top_k, 0.5)
    assert scorer._member_grid is not None
    per_class_loop = WindowScorer(head, centroids, owners, 4, 0.1, top_k, 0.5)
    per_class_loop._member_grid = None
    pooled = rng.standard_normal((9, 12)).astype(np.float32)
    for a, b in zip(scorer.memory_scores(scorer.embed(pooled)),
                    per_class_loop.memory_scores(per_class_loop.embed(pooled))):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    uneven = WindowScorer(head, centroids, np.r_[owners[:-1], 0], 4, 0.1, top_k, 0.5)
    assert uneven._member_grid is None
    assert uneven.memory_scores(uneven.embed(pooled))[0].shape == (9, 4)
