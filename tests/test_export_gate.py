"""The INT8 accuracy gate: passes a well-calibrated encoder, stops a broken one."""

import pytest

pytest.importorskip("torch", reason="needs torch: the [train] extra")

import shutil

import numpy as np
import torch
from test_export import LABELS, export_config, small_model

from edge_ser.backends.onnxruntime_backend import OnnxRuntimeBackend
from edge_ser.engine_build.parity import random_feats
from edge_ser.package import load_package
from edge_ser.scoring import WindowScorer
from edge_ser_export import evaluate, steps
from edge_ser_export.evaluate import QuantizationGateError, accuracy_gate
from edge_ser_export.memory_bank import clip_embeddings


def report(ua_classifier: float, ua_fused: float) -> dict:
    return {"all": {"classifier": {"ua": ua_classifier}, "fused": {"ua": ua_fused}}}


def test_gate_allows_exactly_the_configured_drop():
    assert accuracy_gate(report(0.60, 0.61), report(0.59, 0.605), 1.0)["passed"]
    with pytest.raises(QuantizationGateError, match=r"fused: fp32 UA 61.0% -> int8 59.9%"):
        accuracy_gate(report(0.60, 0.61), report(0.60, 0.599), 1.0)
    with pytest.raises(QuantizationGateError, match="classifier"):
        accuracy_gate(report(0.60, 0.61), report(0.50, 0.61), 1.0)


def shaped_clip(rng: np.random.Generator, seed: int) -> np.ndarray:
    """Synthetic log-mel with a random spectral shape, so clips differ as voices do."""
    feats = random_feats(int(rng.integers(60, 200)), seed=seed)
    mels = np.arange(feats.shape[1])
    tilt = rng.uniform(-4, 4) * np.sin(2 * np.pi * rng.uniform(0.5, 3) * mels / len(mels)
                                       + rng.uniform(0, 2 * np.pi))
    return (feats + tilt).astype(np.float32)


@pytest.fixture(scope="module")
def gate_fixture(tmp_path_factory):
    """A small package and held-out 'clips' labelled by its own fp32 predictions, keeping only
    confident ones: fp32 UA is 100% by construction, so the gate measures INT8 damage only."""
    model = small_model("tcn", seed=4)
    rng = np.random.default_rng(0)
    speech = [shaped_clip(rng, 100 + i) for i in range(40)]
    # A decisive classifier along the two main directions in which the clips differ, so the
    # four classes all occur and most predictions are confident.
    hidden = np.maximum(clip_embeddings(model, speech), 0.0)
    centred = hidden - hidden.mean(0)
    directions = np.linalg.svd(centred, full_matrices=False)[2][:2]
    directions /= (centred @ directions.T).std(0)[:, None]  # unit spread along each
    weight = 4.0 * np.concatenate([directions, -directions])
    with torch.no_grad():
        model.classifier.weight.copy_(torch.from_numpy(weight.astype(np.float32)))
        model.classifier.bias.copy_(torch.from_numpy(-(weight @ hidden.mean(0))
                                                     .astype(np.float32)))
    root = tmp_path_factory.mktemp("gate") / "pkg"
    steps.write_package(model, root, LABELS, export_config(), speech[:16], speech,
                        np.arange(len(speech)) % len(LABELS))
    package = load_package(root)
    scorer = WindowScorer.from_package(package)
    heldout = [shaped_clip(rng, 500 + i) for i in range(120)]
    pooled = evaluate.pooled_clips(OnnxRuntimeBackend(package, "fp32"), heldout)
    scores = scorer.score_pooled(pooled)
    keep = [i for i in range(len(heldout))
            if np.sort(scores.probs[i])[-1] - np.sort(scores.probs[i])[-2] > 0.2
            and np.sort(scores.classifier_probs[i])[-1]
            - np.sort(scores.classifier_probs[i])[-2] > 0.2]
    targets = scores.probs.argmax(1)[keep]
    assert len(set(targets)) >= 2, "the fixture needs at least two classes"
    return model, package, [heldout[i] for i in keep], targets


def gate_reports(model, package, clips, targets, int8_root):
    scorer = WindowScorer.from_package(package)
    draft = steps.draft_package(int8_root, package.manifest["encoder"], LABELS)
    reports = {}
    for precision, backend in (("fp32", OnnxRuntimeBackend(package, "fp32")),
                               ("int8", OnnxRuntimeBackend(draft, "int8"))):
        predictions = evaluate.head_predictions(scorer,
                                                evaluate.pooled_clips(backend, clips))
        names = [type("Clip", (), {"corpus": "synthetic"})() for _ in clips]
        reports[precision] = evaluate.accuracy_report(predictions, targets, names, LABELS)
    return reports


def requantize(model, package, tmp_path, calibration):
    root = tmp_path / "requantized"
    shutil.copytree(package.root, root)
    steps.write_int8(model, root, package.manifest["encoder"], calibration, export_config())
    return root


def test_gate_passes_a_well_calibrated_int8_encoder(gate_fixture):
    model, package, clips, targets = gate_fixture
    reports = gate_reports(model, package, clips, targets, package.root)
    assert reports["fp32"]["all"]["fused"]["ua"] == 1.0
    assert accuracy_gate(reports["fp32"], reports["int8"], 1.0)["passed"]


def test_gate_fails_an_int8_encoder_calibrated_on_silence(gate_fixture, tmp_path):
    """Calibrating on constant input makes every activation range tiny: real speech then
    saturates the int8 ranges and the predictions collapse, which the gate must catch."""
    model, package, clips, targets = gate_fixture
    mean = model.encoder.input_norm.mean.numpy()
    silence = [np.tile(mean, (120, 1)).astype(np.float32) for _ in range(4)]
    root = requantize(model, package, tmp_path, silence)
    reports = gate_reports(model, package, clips, targets, root)
    with pytest.raises(QuantizationGateError, match="INT8 accuracy gate failed"):
        accuracy_gate(reports["fp32"], reports["int8"], 1.0)
