"""DANN: gradient reversal, the lambda ramp and the language classifier."""

import pytest

pytest.importorskip("torch", reason="needs torch: the [train] extra")

import math

import torch
from torch.nn import functional as F

from edge_ser_train.dann import LanguageClassifier, dann_lambda, grad_reverse, language_loss


def test_gradient_reversal_is_identity_forward_and_flips_and_scales_the_gradient():
    x = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    y = grad_reverse(x, 0.5)
    assert torch.equal(y, x)
    (y * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert torch.allclose(x.grad, torch.tensor([-0.5, -1.0, -1.5]))


def test_lambda_ramps_from_zero_to_the_weight():
    assert dann_lambda(0.0) == 0.0
    assert dann_lambda(1.0, weight=2.0) == pytest.approx(2.0 * (2 / (1 + math.exp(-10)) - 1))
    values = [dann_lambda(p / 10) for p in range(11)]
    assert all(a < b for a, b in zip(values, values[1:]))
    assert dann_lambda(-1.0) == 0.0 and dann_lambda(2.0) == dann_lambda(1.0)


def test_language_loss_trains_the_classifier_and_reverses_the_encoder_gradient():
    torch.manual_seed(0)
    clf = LanguageClassifier(embedding_dim=4, n_languages=2, hidden=8)
    emb = torch.randn(6, 4, requires_grad=True)
    languages = torch.tensor([0, 0, 0, 1, 1, 1])
    language_loss(clf, emb, languages, lam=1.0).backward()
    reversed_grad = emb.grad.clone()
    clf_grad = clf.net[0].weight.grad.clone()

    emb.grad = None
    clf.zero_grad()
    F.cross_entropy(clf.net(emb), languages).backward()  # the same loss without reversal
    assert torch.allclose(reversed_grad, -emb.grad)
    assert torch.allclose(clf_grad, clf.net[0].weight.grad)  # the classifier itself learns


def test_adversarial_training_makes_two_domains_harder_to_tell_apart():
    torch.manual_seed(0)
    source = torch.randn(64, 2) + torch.tensor([3.0, 0.0])
    target = torch.randn(64, 2) - torch.tensor([3.0, 0.0])
    features = torch.nn.Linear(2, 2)  # the "encoder" the reversed gradient acts on
    clf = LanguageClassifier(2, 2, hidden=16)
    opt = torch.optim.SGD([*features.parameters(), *clf.parameters()], lr=0.05)
    languages = torch.cat([torch.zeros(64), torch.ones(64)]).long()

    def gap() -> float:
        with torch.no_grad():
            return float((features(source).mean(0) - features(target).mean(0)).norm())

    before = gap()
    for _ in range(500):
        opt.zero_grad()
        language_loss(clf, features(torch.cat([source, target])), languages, lam=1.0).backward()
        opt.step()
    assert gap() < 0.5 * before


def test_language_classifier_needs_two_languages():
    with pytest.raises(ValueError, match="2 languages"):
        LanguageClassifier(4, 1)
