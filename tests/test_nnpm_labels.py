"""How NNPM labels the target: a vote of a few centroids per class of the live memory (or of a
fixed memory bank), averaged over each utterance's views, on the synthetic two-domain task of
test_adapt."""

import numpy as np
import pytest

pytest.importorskip("torch", reason="needs torch: the [train] extra")

import torch  # noqa: E402
from test_adapt import LABELS, config, two_domains

from edge_ser_train import nnpm
from edge_ser_train.adapt import target_pseudo_labels
from edge_ser_train.inference import embed_domain
from edge_ser_train.memory import SourceMemory
from edge_ser_train.model import EmotionModel


def tiny_model() -> EmotionModel:
    torch.manual_seed(0)
    return EmotionModel(config().model, 64, len(LABELS)).eval()


def test_the_vote_over_views_is_the_mean_of_each_views_vote():
    data, _ = two_domains(n=40)
    model = tiny_model()
    bank = SourceMemory.from_features(torch.randn(8, 16), np.arange(8) % 4, 4, fixed=True)
    cfg = config()
    clean = target_pseudo_labels(cfg, model, bank, [[v[0]] for v in data.target_views])[0]
    other = target_pseudo_labels(cfg, model, bank, [[v[1]] for v in data.target_views])[0]
    # views equal to the clean clip change nothing; others enter the mean
    same = [[v[0], v[0], v[0]] for v in data.target_views]
    assert torch.allclose(target_pseudo_labels(cfg, model, bank, same)[0].shares, clean.shares)
    voted, weights = target_pseudo_labels(cfg, model, bank, data.target_views)
    mean = (clean.shares + other.shares) / 2
    assert torch.allclose(voted.shares, mean, atol=1e-6)
    assert not torch.allclose(voted.shares, clean.shares)
    assert torch.equal(voted.top, mean.argmax(1))
    # every pseudo class carries the same total weight
    totals = torch.zeros(4).index_add(0, voted.top, weights)
    present = totals[totals > 0]
    assert torch.allclose(present, present.mean().expand_as(present))


def test_a_live_memory_labels_through_its_centroids_and_stays_as_it_was():
    data, _ = two_domains(n=40)
    model = tiny_model()
    memory = SourceMemory.from_features(torch.randn(40, 16), data.source_targets, 4)
    slots = memory.slots.clone()
    cfg = config("nnpm.label_centroids=2", "nnpm.k=8")
    ours = target_pseudo_labels(cfg, model, memory, data.target_views)[0]
    compact = memory.centroids(2)
    assert len(compact) == 8 and compact.fixed
    assert not memory.fixed and torch.equal(memory.slots, slots)
    expected = target_pseudo_labels(cfg, model, compact, data.target_views)[0]
    assert torch.allclose(ours.shares, expected.shares)
    # k and the temperature reach the vote: the clean view alone, by hand
    features, _ = embed_domain(model, [v[0] for v in data.target_views], own_statistics=True)
    by_hand = nnpm.knn_class_shares(compact.similarities(features), compact.labels, 4, 8, 0.02)
    clean = target_pseudo_labels(cfg, model, memory, [[v[0]] for v in data.target_views])[0]
    assert torch.allclose(clean.shares, by_hand)


def test_single_pseudo_labels_are_the_top_class_alone():
    data, _ = two_domains(n=40)
    model = tiny_model()
    bank = SourceMemory.from_features(torch.randn(8, 16), np.arange(8) % 4, 4, fixed=True)
    multi = target_pseudo_labels(config(), model, bank, data.target_views)[0]
    single = target_pseudo_labels(config("nnpm.pseudo_label=single"), model, bank,
                                  data.target_views)[0]
    assert torch.equal(single.sets.sum(1), torch.ones(40, dtype=torch.long))
    assert torch.equal(single.top, multi.top) and multi.sets.sum() >= single.sets.sum()
