"""NNPM on small tensors with known answers: the memory, its loss, pseudo multilabels, losses."""

import pytest

pytest.importorskip("torch", reason="needs torch: the [train] extra")

import math

import torch
from torch.nn import functional as F

from edge_ser_train import nnpm
from edge_ser_train.memory import SourceMemory


def unit(*rows) -> torch.Tensor:
    return F.normalize(torch.tensor(rows, dtype=torch.float32), dim=1)


def test_memory_slots_are_normalised_and_follow_features_with_momentum():
    memory = SourceMemory.from_features(torch.tensor([[3.0, 0.0], [0.0, 2.0]]), [0, 1], 2)
    assert torch.allclose(memory.slots, torch.eye(2))
    memory.update(torch.tensor([0]), torch.tensor([[0.0, 5.0]]), momentum=0.5)
    # normalise(0.5 * [1, 0] + 0.5 * [0, 1])
    assert torch.allclose(memory.slots[0], torch.tensor([1.0, 1.0]) / math.sqrt(2))
    assert torch.allclose(memory.slots[1], torch.tensor([0.0, 1.0]))  # untouched
    memory.update(torch.tensor([1]), torch.tensor([[1.0, 0.0]]), momentum=0.0)
    assert torch.allclose(memory.slots[1], torch.tensor([1.0, 0.0]))  # momentum 0: replaced


def test_repeated_slot_in_a_batch_is_updated_once_per_occurrence():
    memory = SourceMemory.from_features(torch.tensor([[1.0, 0.0]]), [0], 1)
    memory.update(torch.tensor([0, 0]), torch.tensor([[0.0, 1.0], [0.0, 1.0]]), momentum=0.5)
    first = F.normalize(torch.tensor([0.5, 0.5]), dim=0)
    expected = F.normalize(0.5 * first + 0.5 * torch.tensor([0.0, 1.0]), dim=0)
    assert torch.allclose(memory.slots[0], expected)


def test_fixed_memory_refuses_updates_and_state_round_trips():
    memory = SourceMemory.from_features(torch.randn(4, 3), [0, 1, 0, 1], 2, fixed=True)
    with pytest.raises(RuntimeError, match="fixed"):
        memory.update(torch.tensor([0]), torch.randn(1, 3), 0.5)
    again = SourceMemory.from_state(memory.state())
    assert torch.equal(again.slots, memory.slots) and again.fixed
    assert again.class_counts().tolist() == [2, 2]


def test_memory_rejects_labels_out_of_range():
    with pytest.raises(ValueError, match="labels"):
        SourceMemory.from_features(torch.randn(2, 3), [0, 2], 2)


def test_class_probabilities_from_the_memory_known_answer():
    labels = torch.tensor([0, 1])
    sims = torch.tensor([[1.0, 0.0]])  # the feature is slot 0
    log_p = nnpm.class_log_probs(sims, labels, 2, temperature=1.0)
    assert torch.allclose(log_p.exp(), torch.tensor([[math.e / (math.e + 1), 1 / (math.e + 1)]]))
    # leaving out its own slot, class 0 has no slot left: all mass on class 1
    log_p = nnpm.class_log_probs(sims, labels, 2, 1.0, exclude=torch.tensor([0]))
    assert log_p[0, 0] == float("-inf") and torch.isclose(log_p[0, 1], torch.tensor(0.0))


def test_class_probabilities_do_not_favour_the_class_with_more_slots():
    labels = torch.tensor([0, 0, 0, 1])
    sims = torch.tensor([[0.5, 0.5, 0.5, 0.5]])
    p = nnpm.class_log_probs(sims, labels, 2, temperature=0.1).exp()
    assert torch.allclose(p, torch.tensor([[0.5, 0.5]]))


def test_memory_loss_is_low_for_the_right_class_and_has_gradients():
    memory = SourceMemory.from_features(unit([1, 0], [1, 0.1], [0, 1], [0.1, 1]), [0, 0, 1, 1], 2)
    feats = torch.tensor([[1.0, 0.05]], requires_grad=True)
    right = nnpm.memory_loss(feats, torch.tensor([0]), memory, 0.1, torch.tensor([0]))
    wrong = nnpm.memory_loss(feats, torch.tensor([1]), memory, 0.1, torch.tensor([0]))
    assert right < 0.01 < 1.0 < wrong
    right.backward()
    assert feats.grad is not None and torch.isfinite(feats.grad).all()


def test_target_equal_to_a_memory_slot_gets_that_slots_class():
    torch.manual_seed(0)
    slots = F.normalize(torch.randn(40, 16), dim=1)
    labels = torch.arange(40) % 4
    memory = SourceMemory.from_features(slots, labels, 4)
    for j in (0, 7, 13, 22):
        single = nnpm.label_targets(slots[j:j + 1] * 3.0, memory, k=1, temperature=0.05)
        assert single.sets[0].tolist() == [c == int(labels[j]) for c in range(4)]
        assert single.top[0] == labels[j] and single.confidence[0] == 1.0
        # with 10 neighbours and a sharp temperature the slot itself still decides
        many = nnpm.label_targets(slots[j:j + 1], memory, k=10, temperature=0.01)
        assert many.top[0] == labels[j] and many.sets[0, labels[j]]


def test_knn_shares_weight_the_k_nearest_slots():
    labels = torch.tensor([0, 1, 2, 3])
    sims = torch.tensor([[0.9, 0.9, 0.1, -1.0]])
    shares = nnpm.knn_class_shares(sims, labels, 4, k=2, temperature=1.0)
    assert torch.allclose(shares, torch.tensor([[0.5, 0.5, 0.0, 0.0]]))
    assert torch.allclose(nnpm.knn_class_shares(sims, labels, 4, k=99, temperature=1.0).sum(),
                          torch.tensor(1.0))


def test_multilabel_sets_and_confidence():
    shares = torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.1, 0.1, 0.1, 0.7]])
    multi = nnpm.pseudo_multilabels(shares, "multi", min_share=0.2)
    assert multi.sets.tolist() == [[True, True, False, False], [False, False, False, True]]
    assert multi.confidence.tolist() == pytest.approx([0.5, 0.7])
    single = nnpm.pseudo_multilabels(shares, "single")
    assert single.sets.sum(1).tolist() == [1, 1] and single.top.tolist() == [0, 3]
    # the top class is always in the set, even above every threshold
    assert nnpm.pseudo_multilabels(shares, "multi", min_share=0.9).sets.sum(1).tolist() == [1, 1]
    stats = multi.stats(("a", "b", "c", "d"))
    assert stats["mean_set_size"] == 1.5 and stats["top_class_counts"]["d"] == 1
    with pytest.raises(ValueError, match="multi"):
        nnpm.pseudo_multilabels(shares, "soft")


def test_multilabel_loss_known_answers():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    everything = torch.ones(1, 4, dtype=torch.bool)
    assert nnpm.multilabel_loss(logits, everything).item() == pytest.approx(0.0, abs=1e-6)
    one = torch.tensor([[False, True, False, False]])
    assert nnpm.multilabel_loss(logits, one).item() == pytest.approx(
        F.cross_entropy(logits, torch.tensor([1])).item())
    two = torch.tensor([[True, True, False, False]])
    p = torch.softmax(logits, 1)[0]
    assert nnpm.multilabel_loss(logits, two).item() == pytest.approx(-math.log(p[0] + p[1]))
    assert nnpm.multilabel_loss(logits, two, torch.tensor([0.5])).item() == pytest.approx(
        -0.5 * math.log(p[0] + p[1]))


def test_class_balanced_weights_give_every_pseudo_class_the_same_total():
    shares = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7]])
    pseudo = nnpm.pseudo_multilabels(shares, "single")
    w = nnpm.class_balanced_weights(pseudo)
    assert w[:3].sum().item() == pytest.approx(w[3].item())
    assert w.mean().item() == pytest.approx(pseudo.confidence.mean().item())


def test_centroid_memory_finds_each_class_clusters():
    # class 0: two tight clusters around e0 and e1; class 1: one around e2
    basis = torch.eye(3)
    jitter = 0.01 * torch.randn(30, 3, generator=torch.Generator().manual_seed(0))
    features = torch.cat([basis[0].expand(10, 3), basis[1].expand(10, 3),
                          basis[2].expand(10, 3)]) + jitter
    labels = torch.tensor([0] * 20 + [1] * 10)
    memory = SourceMemory.from_features(features, labels, 2)
    compact = memory.centroids(per_class=2)
    assert compact.fixed and len(compact) == 4
    assert compact.labels.tolist() == [0, 0, 1, 1]
    assert torch.allclose(compact.slots.norm(dim=1), torch.ones(4), atol=1e-6)
    # class 0's two centroids are its two clusters, in either order
    nearest = (compact.slots[:2] @ basis.T).argmax(dim=1)
    assert sorted(nearest.tolist()) == [0, 1]
    assert float((compact.slots[:2] @ basis.T).max(dim=1).values.min()) > 0.99
    # a class with fewer slots than centroids keeps one centroid per distinct slot at most
    assert len(SourceMemory.from_features(basis[:2], torch.tensor([0, 1]), 2).centroids(4)) == 2


def test_target_loss_terms_on_random_tensors_known_answer_and_scale():
    torch.manual_seed(0)
    logits, embedding = torch.randn(6, 4), torch.randn(6, 5)
    sets = torch.rand(6, 4) > 0.5
    sets[torch.arange(6), logits.argmax(1)] = True  # never empty
    weights = torch.rand(6)
    memory = SourceMemory.from_features(torch.randn(8, 5), torch.arange(8) % 4, 4)
    terms = nnpm.target_loss_terms(logits, embedding, sets, weights, memory, 0.1, scale=0.5)
    assert list(terms) == ["ml", "ml_mem"]
    assert terms["ml"].item() == pytest.approx(
        0.5 * nnpm.multilabel_loss(logits, sets, weights).item())
    log_p = nnpm.class_log_probs(memory.similarities(embedding), memory.labels, 4, 0.1)
    assert terms["ml_mem"].item() == pytest.approx(
        0.5 * nnpm.multilabel_loss(log_p, sets, weights).item())
    # the memory term pulls a target feature toward the slots of its candidate classes
    embedding.requires_grad_(True)
    one = torch.zeros(1, 4, dtype=torch.bool)
    one[0, 2] = True
    loss = nnpm.target_loss_terms(logits[:1], embedding[:1], one, None, memory, 0.1, 1.0)
    loss["ml_mem"].backward()
    before = nnpm.class_log_probs(memory.similarities(embedding[:1]), memory.labels, 4, 0.1)
    moved = embedding[:1] - 0.01 * embedding.grad[:1]
    after = nnpm.class_log_probs(memory.similarities(moved), memory.labels, 4, 0.1)
    assert after[0, 2] > before[0, 2]


def test_the_target_loss_ramps_up_over_the_ramp_epochs():
    assert [nnpm.ramp(e, 1) for e in range(3)] == [0.5, 1.0, 1.0]
    assert [nnpm.ramp(e, 3) for e in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert nnpm.ramp(0, 0) == 1.0
