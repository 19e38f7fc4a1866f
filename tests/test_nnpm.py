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


def test_diversity_loss_is_zero_for_balanced_and_log_k_for_collapsed_batches():
    balanced = torch.eye(4) * 50
    collapsed = torch.zeros(4, 4)
    collapsed[:, 2] = 50
    assert nnpm.diversity_loss(balanced).item() == pytest.approx(0.0, abs=1e-5)
    assert nnpm.diversity_loss(collapsed).item() == pytest.approx(math.log(4), abs=1e-5)


def test_class_balanced_weights_over_the_kept_utterances_only():
    shares = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7]])
    pseudo = nnpm.pseudo_multilabels(shares, "single")
    keep = torch.tensor([True, False, True, True])
    w = nnpm.class_balanced_weights(pseudo, keep)
    assert w[1].item() == 0.0
    # class 0 keeps 0.9 + 0.6 = 1.5, class 1 keeps 0.7; both get half of 2.2
    assert (w[0] + w[2]).item() == pytest.approx(1.1) and w[3].item() == pytest.approx(1.1)
    assert w[0].item() / w[2].item() == pytest.approx(0.9 / 0.6)


def _pseudo(top, confidence, n_classes=2):
    top = torch.tensor(top)
    confidence = torch.tensor(confidence)
    shares = F.one_hot(top, n_classes).float() * confidence[:, None]
    return nnpm.PseudoLabels(sets=F.one_hot(top, n_classes).bool(), top=top,
                             confidence=confidence, shares=shares)


def test_confident_selection_keeps_the_same_share_of_every_pseudo_class():
    pseudo = _pseudo([0, 0, 0, 0, 1, 1], [0.9, 0.5, 0.7, 0.6, 0.4, 0.8])
    assert nnpm.select_confident(pseudo, 0.5).tolist() == [True, False, True, False, False, True]
    # at least one per class, however small the share
    assert nnpm.select_confident(pseudo, 0.1).tolist() == [True, False, False, False, False, True]
    assert nnpm.select_confident(pseudo, 1.0).all()
    with pytest.raises(ValueError, match="share"):
        nnpm.select_confident(pseudo, 0.0)


def test_selected_share_grows_linearly_over_the_refreshes():
    assert nnpm.scheduled_share(0.2, 0.5, 0, 5) == pytest.approx(0.2)
    assert nnpm.scheduled_share(0.2, 0.5, 2, 5) == pytest.approx(0.35)
    assert nnpm.scheduled_share(0.2, 0.5, 4, 5) == pytest.approx(0.5)
    assert nnpm.scheduled_share(0.2, 0.5, 0, 1) == pytest.approx(0.2)


def test_label_propagation_known_answer_on_two_mutual_neighbours():
    feats = unit([1, 0.1], [1, 0])
    shares = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert torch.equal(nnpm.propagate_shares(shares, feats, k=1, alpha=0.0, temperature=0.05),
                       shares)
    # Q_a = (1 - a) q_a + a Q_b and back: with a = 0.5, Q_a = (2 q_a + q_b) / 3
    q = nnpm.propagate_shares(shares, feats, k=1, alpha=0.5, temperature=0.05, iterations=60)
    assert torch.allclose(q, torch.tensor([[2 / 3, 1 / 3], [1 / 3, 2 / 3]]), atol=1e-6)


def test_label_propagation_lets_a_cluster_outvote_an_odd_memory_vote():
    # three utterances close together; the memory votes class 0 for two and class 1 for one
    feats = unit([1, 0, 0], [1, 0.05, 0], [1, 0, 0.05], [0, 1, 0])
    shares = torch.tensor([[0.8, 0.2], [0.7, 0.3], [0.4, 0.6], [0.1, 0.9]])
    q = nnpm.propagate_shares(shares, feats, k=2, alpha=0.8, temperature=0.05)
    assert torch.allclose(q.sum(1), torch.ones(4))
    assert q[:3].argmax(1).tolist() == [0, 0, 0]


def test_confident_selection_among_eligible_utterances_only():
    pseudo = _pseudo([0, 0, 0, 0, 1, 1], [0.9, 0.5, 0.7, 0.6, 0.4, 0.8])
    eligible = torch.tensor([False, True, True, True, True, False])
    # class 0: half of its 3 eligible (rounded up: 2), the most confident 0.7 and 0.6;
    # class 1: its one eligible utterance, though less confident than the ineligible one
    assert nnpm.select_confident(pseudo, 0.5, eligible).tolist() == [
        False, False, True, True, True, False]
    assert nnpm.select_confident(pseudo, 1.0, eligible).tolist() == eligible.tolist()
    # a class with no eligible utterance keeps none
    none_of_1 = torch.tensor([True, True, True, True, False, False])
    assert not nnpm.select_confident(pseudo, 1.0, none_of_1)[4:].any()
    assert not nnpm.select_confident(pseudo, 0.5, none_of_1)[4:].any()


def test_anchored_shares_blend_with_the_first_ones():
    first = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    now = torch.tensor([[0.0, 1.0], [0.9, 0.1]])
    assert torch.allclose(nnpm.anchored_shares(now, first, 0.25),
                          torch.tensor([[0.25, 0.75], [0.8, 0.2]]))
    assert torch.equal(nnpm.anchored_shares(now, first, 0.0), now)
    assert torch.equal(nnpm.anchored_shares(now, None, 0.5), now)
    assert torch.equal(nnpm.anchored_shares(now, first, 1.0), first)


def test_equipartitioned_shares_move_the_least_sure_clip_of_an_over_predicted_class():
    # three of four utterances vote class 0; the least sure of them moves to class 1
    shares = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.1, 0.9]])
    balanced = nnpm.equipartitioned_shares(shares)
    assert torch.allclose(balanced.sum(dim=1), torch.ones(4), atol=1e-5)
    assert torch.allclose(balanced.sum(dim=0), torch.full((2,), 2.0), atol=1e-3)
    assert balanced.argmax(dim=1).tolist() == [0, 0, 1, 1]
    # shares that are balanced already stay as they are
    even = torch.tensor([[0.7, 0.3], [0.3, 0.7]])
    assert torch.allclose(nnpm.equipartitioned_shares(even), even, atol=1e-5)


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


def test_target_prototypes_known_answer_and_a_cluster_outvotes_an_odd_vote():
    # two target clusters along x and y; the memory voted class 0 for three of the x clips and
    # class 1 for the fourth, and class 1 for every y clip
    feats = unit([1, 0.1], [1, 0], [1, -0.1], [1, 0.05], [0.1, 1], [0, 1])
    shares = torch.tensor([[1.0, 0.0]] * 3 + [[0.0, 1.0]] * 3)
    assert torch.equal(nnpm.target_prototype_shares(shares, feats, 0, 0.05), shares)
    one = nnpm.target_prototype_shares(shares, feats, 1, 0.05)
    f = F.normalize(feats, dim=1)
    protos = F.normalize(shares.T @ f, dim=1)
    assert torch.allclose(one, torch.softmax(f @ protos.T / 0.05, dim=1), atol=1e-6)
    assert torch.allclose(one.sum(1), torch.ones(6))
    # the odd x clip (index 3) joins its own cluster's class
    assert one.argmax(1).tolist() == [0, 0, 0, 0, 1, 1]
