"""NNPM variants, off by default: the classifier head's learning rate (frozen head), the mean
teacher (an EMA of the weights labels the target and is the adapted model) and the memory vote
over a clip's augmented views. Known answers on tiny modules, and the variants end to end on
the synthetic two-domain task of test_adapt."""

import pytest

pytest.importorskip("torch", reason="needs torch: the [train] extra")

import copy

import numpy as np
import torch
from test_adapt import LABELS, config, target_accuracy, two_domains
from torch import nn

from edge_ser.config import ConfigError, load_config
from edge_ser_train.adapt import (
    AdaptData,
    adapt,
    adaptation_param_groups,
    ema_update,
    embed_domain,
    target_pseudo_labels,
    teacher_memory,
)
from edge_ser_train.adapt_config import AdaptConfig
from edge_ser_train.memory import SourceMemory
from edge_ser_train.model import EmotionModel


def tiny_model() -> EmotionModel:
    return EmotionModel(config().model, 64, len(LABELS))


def test_the_variants_are_off_by_default():
    cfg = load_config(AdaptConfig, None)
    assert cfg.nnpm.classifier_lr == 1.0 and cfg.nnpm.teacher_momentum == 0.0
    assert not cfg.nnpm.vote_views and not cfg.nnpm.vote_views_without_source
    with pytest.raises(ConfigError):
        load_config(AdaptConfig, None, ["nnpm.teacher_momentum=1.0"])


def test_the_vote_over_views_is_the_mean_of_each_views_vote():
    data, _ = two_domains(n=40)
    model = tiny_model().eval()
    memory = SourceMemory.from_features(torch.randn(40, 16), data.source_targets, 4)
    clean = [[v[0]] for v in data.target_views]
    other = [[v[1]] for v in data.target_views]
    cfg = config()
    clean_votes = target_pseudo_labels(cfg, model, memory, clean)[0].shares
    # off: the augmented views are not read
    assert torch.equal(target_pseudo_labels(cfg, model, memory, data.target_views)[0].shares,
                       clean_votes)
    # on: views equal to the clean clip change nothing; others enter the mean
    same = [[v[0], v[0], v[0]] for v in data.target_views]
    assert torch.allclose(target_pseudo_labels(cfg, model, memory, same, views=True)[0].shares,
                          clean_votes)
    mean = (clean_votes + target_pseudo_labels(cfg, model, memory, other)[0].shares) / 2
    voted = target_pseudo_labels(cfg, model, memory, data.target_views, views=True)[0]
    assert torch.allclose(voted.shares, mean, atol=1e-6)
    assert not torch.allclose(voted.shares, clean_votes)
    assert torch.equal(voted.top, mean.argmax(1))


def test_ema_update_known_answer_and_buffers_are_copied():
    teacher, student = nn.BatchNorm1d(2), nn.BatchNorm1d(2)
    with torch.no_grad():
        teacher.weight.fill_(0.0)
        student.weight.copy_(torch.tensor([1.0, 3.0]))
        student.running_mean.copy_(torch.tensor([5.0, -5.0]))
    ema_update(teacher, student, 0.9)
    assert torch.allclose(teacher.weight, torch.tensor([0.1, 0.3]))  # 0.9 * 0 + 0.1 * w
    assert torch.equal(teacher.running_mean, student.running_mean)
    ema_update(teacher, student, 0.5)
    assert torch.allclose(teacher.weight, torch.tensor([0.55, 1.65]))  # 0.5 * 0.1 + 0.5 * 1
    ema_update(teacher, student, 0.0)  # momentum 0: the student itself
    assert torch.equal(teacher.weight, student.weight)
    with pytest.raises(ValueError, match="momentum"):
        ema_update(teacher, student, 1.0)


def test_param_groups_leave_out_or_scale_the_classifier_head():
    model = tiny_model()
    params = list(model.parameters())
    head = {id(p) for p in model.classifier.parameters()}
    (one,) = adaptation_param_groups(model, params, 1.0)
    assert [id(p) for p in one["params"]] == [id(p) for p in params] and "lr_scale" not in one
    rest, scaled = adaptation_param_groups(model, params, 0.1)
    assert scaled["lr_scale"] == 0.1 and {id(p) for p in scaled["params"]} == head
    assert len(rest["params"]) == len(params) - len(head)
    (frozen,) = adaptation_param_groups(model, params, 0.0)
    assert not head & {id(p) for p in frozen["params"]}
    assert not any(p.requires_grad for p in model.classifier.parameters())


def test_teacher_memory_is_the_teachers_own_source_embeddings():
    data, _ = two_domains(n=40)
    model = tiny_model()
    start = SourceMemory.from_features(torch.randn(40, 16), data.source_targets, 4)
    memory = teacher_memory(config(), model, data, start)
    assert torch.equal(memory.labels, start.labels) and len(memory) == 40
    assert torch.allclose(memory.slots.norm(dim=1), torch.ones(40))
    assert not torch.allclose(memory.slots, start.slots)
    # without source audio the fixed memory bank is the memory
    fixed = SourceMemory.from_features(torch.eye(4, 16), np.arange(4), 4, fixed=True)
    assert teacher_memory(config(), model, AdaptData(LABELS, data.target_views), fixed) is fixed


@pytest.fixture(scope="module")
def source_run():
    """(data, target labels, source-only result) of the synthetic two-domain task, once."""
    data, y_target = two_domains()
    return data, y_target, adapt(config("method=source", "optim.epochs=4"), data,
                                 log=lambda _: None)


NNPM = ("method=nnpm", "optim.epochs=3", "nnpm.warmup_epochs=0", "optim.warmup_epochs=0")


def adapted(source_run, *overrides: str):
    """NNPM from a copy of the source model, with `overrides`."""
    data, _, source = source_run
    return adapt(config(*NNPM, *overrides), data, model=copy.deepcopy(source.model),
                 log=lambda _: None)


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.allclose(x, y, atol=1e-3) for x, y in zip(a.parameters(), b.parameters()))


def test_frozen_head_keeps_the_classifier_and_still_adapts(source_run):
    data, y_target, source = source_run
    ours = adapted(source_run, "nnpm.classifier_lr=0")
    assert torch.equal(ours.model.classifier.weight, source.model.classifier.weight)
    assert torch.equal(ours.model.classifier.bias, source.model.classifier.bias)
    assert not torch.equal(ours.model.projection[0].weight, source.model.projection[0].weight)
    assert all(p.requires_grad for p in ours.model.parameters())  # given back trainable
    assert target_accuracy(ours.model, data, y_target) >= \
        target_accuracy(source.model, data, y_target)
    # the default trains the head
    default = adapted(source_run, "optim.epochs=1")
    assert not torch.equal(default.model.classifier.weight, source.model.classifier.weight)


def test_a_head_trained_from_scratch_learns_whatever_classifier_lr_says():
    data, _ = two_domains(n=64)
    cfg = config("method=nnpm", "optim.epochs=2", "nnpm.warmup_epochs=1", "nnpm.classifier_lr=0")
    torch.manual_seed(cfg.optim.seed)  # as adapt() seeds before building the model
    initial = EmotionModel(cfg.model, 64, len(LABELS)).classifier.weight.clone()
    scratch = adapt(cfg, data, log=lambda _: None)
    assert not torch.allclose(scratch.model.classifier.weight, initial, atol=1e-3)


def test_mean_teacher_is_the_returned_model_and_lags_the_student(source_run):
    data, y_target, source = source_run
    # momentum near 1: the teacher barely moves from the start model, while plain NNPM does
    assert same_weights(adapted(source_run, "nnpm.teacher_momentum=0.9999").model, source.model)
    assert not same_weights(adapted(source_run).model, source.model)
    ours = adapted(source_run, "nnpm.teacher_momentum=0.9")
    assert target_accuracy(ours.model, data, y_target) >= \
        target_accuracy(source.model, data, y_target)
    assert (ours.pseudo.top.numpy() == y_target).mean() >= 0.5


def test_a_teacher_that_only_labels_returns_the_student(source_run):
    _, _, source = source_run
    # the same run up to the end: the teacher stayed at the start, the student trained
    student = adapted(source_run, "nnpm.teacher_momentum=0.9999", "nnpm.teacher_is_model=false")
    assert not same_weights(student.model, source.model)


def test_classifier_vote_mixes_the_classifier_probabilities_into_the_shares():
    data, _ = two_domains(n=40)
    model = tiny_model().eval()
    memory = SourceMemory.from_features(torch.randn(40, 16), data.source_targets, 4)
    _, logits = embed_domain(model, [v[0] for v in data.target_views], own_statistics=True)
    classifier = torch.softmax(logits, dim=1)
    alone = target_pseudo_labels(config(), model, memory, data.target_views)[0].shares
    only = target_pseudo_labels(config("nnpm.classifier_vote=1"), model, memory,
                                data.target_views)[0]
    assert torch.allclose(only.shares, classifier, atol=1e-6)
    half = target_pseudo_labels(config("nnpm.classifier_vote=0.5"), model, memory,
                                data.target_views)[0]
    assert torch.allclose(half.shares, (alone + classifier) / 2, atol=1e-6)


def test_centroid_labels_come_from_a_compact_memory_of_the_live_slots():
    data, _ = two_domains(n=40)
    model = tiny_model().eval()
    memory = SourceMemory.from_features(torch.randn(40, 16), data.source_targets, 4)
    cfg = config("nnpm.label_memory=centroids", "nnpm.label_centroids=2", "nnpm.k=8")
    ours = target_pseudo_labels(cfg, model, memory, data.target_views)[0].shares
    compact = memory.centroids(2)
    assert len(compact) == 8 and not memory.fixed  # the live memory is left as it was
    expected = target_pseudo_labels(config("nnpm.k=8"), model, compact, data.target_views)[0]
    assert torch.allclose(ours, expected.shares)


def test_source_weight_scales_the_source_losses_while_adapting(source_run):
    silent = adapted(source_run, "nnpm.source_weight=0")
    assert all(e["ce"] == 0.0 and e["mem"] == 0.0 and e["ml"] > 0 for e in silent.history)
    default = adapted(source_run)
    assert all(e["ce"] > 0 and e["mem"] > 0 for e in default.history)


def test_the_adversarial_term_trains_a_language_classifier_alongside_nnpm(source_run):
    default = adapted(source_run)
    assert all("lang" not in e for e in default.history)
    aligned = adapted(source_run, "nnpm.adversarial_weight=1")
    assert all(e["lang"] > 0 and e["ml"] > 0 and e["ce"] > 0 for e in aligned.history)
    # two domains (source, target): the classifier starts near chance, ln 2
    assert 0.3 < aligned.history[0]["lang"] < 1.0
