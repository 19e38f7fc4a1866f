"""The adaptation guard: adapted models that are worse than their start (collapsed, permuted,
scrambled) are caught and the start model kept; one that is better is kept; `adapt` says so in
one line, records it in model.json and adaptation.json, and `eval` scores the start model
beside the adapted one. Synthetic data and tiny models, in seconds."""

import pytest

pytest.importorskip("torch", reason="needs torch: the [train] extra")

import copy
import json

import numpy as np
import torch
from test_adapt import (
    ADAPT,
    LABELS,
    config,
    target_accuracy,
    tiny_checkpoint,
    two_domains,
    write_recordings,
)
from torch.nn import functional as F

import edge_ser_export.adapt_job as adapt_job
from edge_ser.package import load_package, sha256_file
from edge_ser_export.cli import main
from edge_ser_train.adapt import AdaptData, adapt
from edge_ser_train.adapt_config import GuardConfig
from edge_ser_train.adapt_guard import balance, judge
from edge_ser_train.inference import embed_all, predict, reestimate_bn_statistics
from edge_ser_train.memory import SourceMemory
from edge_ser_train.trainer import load_checkpoint

QUIET = {"log": lambda _: None}


@pytest.fixture(scope="module")
def source_model():
    """A model trained on the source domain of `two_domains`: with the source's batch-norm
    statistics it calls most of the shifted target one class; and the data."""
    data, y_target = two_domains()
    return adapt(config("method=source", "optim.epochs=4"), data, **QUIET).model, data, y_target


@pytest.fixture(scope="module")
def toy(source_model):
    """A start model right on most of the target, short of all (the source model normalising
    the target by its own statistics), and the data."""
    model, data, y_target = source_model
    start = copy.deepcopy(model)
    reestimate_bn_statistics(start, clean(data.target_views))
    assert 0.6 <= target_accuracy(start, data, y_target) <= 0.9
    return start, data, y_target


def clean(views):
    return [v[0] for v in views]


def verdict(start, adapted, data, **kwargs):
    """The guard on the toy target, with the source clips as evidence."""
    return judge(GuardConfig(**kwargs), start, adapted, clean(data.target_views), LABELS,
                 source_feats=clean(data.source_views), source_targets=data.source_targets)


def test_balance_is_the_normalised_entropy_of_the_class_shares():
    assert balance(np.full(4, 0.25)) == pytest.approx(1.0)
    assert balance(np.array([1.0, 0, 0, 0])) == pytest.approx(0.0)
    assert balance(np.array([1 / 3, 1 / 3, 1 / 3, 0])) == pytest.approx(np.log(3) / np.log(4))


def test_an_adaptation_that_helps_is_kept(toy):
    """The start model trained further on the target's true labels: right more often, and
    the guard keeps it (every check computed and passed)."""
    start, data, y_target = toy
    supervised = AdaptData(LABELS, data.target_views, data.target_views, y_target,
                           np.zeros(len(y_target), dtype=np.int64), None, ("t",))
    better = adapt(config("method=source", "optim.epochs=3", "optim.lr=0.001"), supervised,
                   model=copy.deepcopy(start), **QUIET).model
    assert target_accuracy(better, data, y_target) >= target_accuracy(start, data, y_target) + 0.1
    report = verdict(start, better, data)
    assert [c.name for c in report.checks] == ["class_balance", "anchor_agreement",
                                               "source_accuracy"]
    assert all(c.passed for c in report.checks), report.line()
    assert report.estimate == "not worse" and report.decision == "adapted"
    assert report.line().startswith("guard: kept the adapted model")


def test_nnpm_from_a_model_that_calls_the_target_one_class_is_kept(source_model):
    """The start model's own predictions on the target are almost all one class: neither its
    balance nor its anchors (taken under the target's statistics) hold the adaptation back."""
    start, data, y_target = source_model
    adapted = adapt(config("method=nnpm", "optim.epochs=3"), data, model=copy.deepcopy(start),
                    **QUIET).model
    assert target_accuracy(adapted, data, y_target) >= \
        target_accuracy(start, data, y_target) + 0.3
    report = verdict(start, adapted, data)
    assert report.shares_start[int(np.argmax(report.shares_start))] > 0.9
    assert report.keep_adapted and all(c.passed for c in report.checks), report.line()


def permuted(model):
    """The same model with its classes renamed: as balanced, and wrong wherever it was right."""
    out = copy.deepcopy(model)
    with torch.no_grad():
        out.classifier.weight.copy_(model.classifier.weight.roll(1, dims=0))
        out.classifier.bias.copy_(model.classifier.bias.roll(1, dims=0))
    return out


def collapsed(model, cls: int = 0):
    """Every clip predicted as `cls`."""
    out = copy.deepcopy(model)
    with torch.no_grad():
        out.classifier.bias[cls] += 1e4
    return out


def scrambled(model, seed: int = 0):
    """Every weight of the encoder and projection shuffled within its tensor."""
    out = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in out.named_parameters():
            if not name.startswith("classifier"):
                p.copy_(p.flatten()[torch.randperm(p.numel(), generator=g)].view_as(p))
    return out


@pytest.mark.parametrize("harm, failing", [
    (permuted, {"anchor_agreement"}),
    (collapsed, {"class_balance"}),
    (scrambled, {"anchor_agreement", "source_accuracy"}),
])
def test_an_adaptation_that_hurts_is_caught_and_the_start_model_kept(toy, harm, failing):
    start, data, y_target = toy
    worse = harm(start)
    assert target_accuracy(worse, data, y_target) < target_accuracy(start, data, y_target) - 0.2
    report = verdict(start, worse, data)
    assert failing <= {c.name for c in report.failed}, report.line()
    assert report.estimate == "worse" and report.decision == "start"
    assert report.line().startswith("guard: kept the START model's weights")
    # switched off, the checks are still made and said, and the adapted model is kept
    off = verdict(start, worse, data, enabled=False)
    assert off.estimate == "worse" and off.decision == "adapted"
    assert "kept the adapted model as asked" in off.line()


def test_without_source_clips_the_memory_bank_gives_the_anchors(toy):
    start, data, _ = toy
    emb, _ = embed_all(start, clean(data.source_views))
    centroids = torch.stack([F.normalize(emb[torch.as_tensor(data.source_targets == c)], dim=1)
                             .mean(0) for c in range(4)])
    bank = SourceMemory.from_features(centroids, np.arange(4), 4, fixed=True)
    report = judge(GuardConfig(), start, permuted(start), clean(data.target_views), LABELS,
                   memory=bank)
    checks = {c.name: c for c in report.checks}
    assert checks["anchor_agreement"].passed is False
    assert checks["anchor_agreement"].adapted < 0.1  # a renamed class is never the same class
    assert checks["source_accuracy"].passed is None and "--source" in checks[
        "source_accuracy"].note
    assert report.decision == "start"
    record = report.to_dict()
    assert record["checks"]["source_accuracy"]["passed"] is None
    assert sum(record["target_class_shares"]["adapted"].values()) == pytest.approx(1.0, abs=1e-3)


def collapse_after_adapting(monkeypatch):
    """`adapt` as shipped, followed by a collapse of every prediction onto one class."""
    real = adapt_job.adapt

    def adapt_then_collapse(*args, **kwargs):
        result = real(*args, **kwargs)
        shares = np.bincount(predict(result.model, clean(args[1].target_views)),
                             minlength=len(result.labels))
        result.model = collapsed(result.model, int(np.argmin(shares)))
        return result

    monkeypatch.setattr(adapt_job, "adapt", adapt_then_collapse)


def test_adapt_command_keeps_the_start_weights_when_the_adapted_model_collapses(
        tmp_path, capsys, monkeypatch):
    write_recordings(tmp_path / "calls", n_files=6)
    tiny_checkpoint(tmp_path / "start.pt", with_bank=True)
    collapse_after_adapting(monkeypatch)
    out = tmp_path / "adapted"
    assert main([*ADAPT, "--target", str(tmp_path / "calls"), "--out", str(out), "--model",
                 str(tmp_path / "start.pt"), "--set", "optim.epochs=1", "--set",
                 "optim.threads=1", "--set", "target.min_segments=4",
                 "--export-set", "gate.min_agreement=0.5"]) == 0
    printed = capsys.readouterr().out
    guard_lines = [line for line in printed.splitlines() if line.startswith("guard:")]
    assert len(guard_lines) == 1 and "kept the START model's weights" in guard_lines[0]
    assert "class_balance 0.00 <" in guard_lines[0]
    assert "wrote the start model package" in printed
    record = load_package(out).manifest["adaptation"]["guard"]
    assert record == json.loads((out / "adaptation.json").read_text())["guard"]
    assert record["decision"] == "start" and record["estimate"] == "worse"
    assert record["checks"]["class_balance"]["passed"] is False
    assert record["checks"]["class_balance"]["start"] > 0.1  # the start model was not one-class
    assert max(record["target_class_shares"]["adapted"].values()) == 1.0
    assert sum(record["target_class_shares"]["start"].values()) == pytest.approx(1.0, abs=1e-3)
    # the package holds the start model's weights, and no second copy of them
    start_model, _, _ = load_checkpoint(tmp_path / "start.pt")
    delivered, _, _ = load_checkpoint(out / "model.pt")
    assert all(torch.equal(a, b) for a, b in zip(start_model.state_dict().values(),
                                                 delivered.state_dict().values()))
    assert not (out / "start").exists()
    # eval on a labelled sample says the figures are the start model's
    import csv

    from test_training import COLUMNS

    with (tmp_path / "calls" / "labels.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, COLUMNS, restval="")
        writer.writeheader()
        writer.writerows({"file": f"call{i}.flac", "corpus": "calls", "speaker": f"s{i}",
                          "emotion": label, "emotion4": label}
                         for i, label in enumerate(("angry", "happy", "neutral", "sad")))
    assert main(["eval", "--model", str(out), "--data", str(tmp_path / "calls")]) == 0
    assert "start model: adapt kept the start model's weights" in capsys.readouterr().out


def test_a_kept_adaptation_carries_its_start_model_and_eval_scores_both(
        tmp_path, capsys, monkeypatch):
    from test_training import make_toy_corpus

    from edge_ser_train.config import DataConfig, ModelConfig, TrainConfig
    from edge_ser_train.model import EmotionModel
    from edge_ser_train.trainer import TrainResult, save_checkpoint

    make_toy_corpus(tmp_path / "toy", n_speakers=2, per_class=4)
    write_recordings(tmp_path / "calls", n_files=3)
    cfg = TrainConfig(data=DataConfig(labels=("calm", "excited")),
                      model=ModelConfig(channels=8, dilations=(1,), embedding_dim=8))
    torch.manual_seed(0)
    save_checkpoint(TrainResult(EmotionModel(cfg.model, 64, 2).eval(), cfg.data.labels, [], 0.0),
                    cfg, tmp_path / "start.pt")
    collapse_after_adapting(monkeypatch)
    out = tmp_path / "adapted"
    assert main([*ADAPT, "--target", str(tmp_path / "calls"), "--out", str(out), "--model",
                 str(tmp_path / "start.pt"), "--source", str(tmp_path / "toy"), "--keep-adapted",
                 "--set", "optim.epochs=1", "--set", "optim.threads=1", "--set",
                 "augment.views=1", "--set", f"source.cache_dir={tmp_path / 'cache'}",
                 "--set", "target.min_segments=4", "--export-set", "gate.min_agreement=0.5"]) == 0
    guard_lines = [line for line in capsys.readouterr().out.splitlines()
                   if line.startswith("guard:")]
    assert len(guard_lines) == 1 and guard_lines[0].startswith("guard: kept the adapted model")
    adaptation = load_package(out).manifest["adaptation"]
    assert adaptation["guard"]["enabled"] is False and adaptation["guard"]["decision"] == "adapted"
    assert adaptation["guard"]["checks"]["source_accuracy"]["passed"] is not None
    # the start model rides along, verified, its manifest's sha256 in the adapted one's
    start = load_package(out / "start")
    assert sha256_file(out / "start" / "model.json") == \
        adaptation["start_package"]["manifest_sha256"]
    assert list(start.manifest["encoder"]["files"]) == ["fp32"]

    assert main(["eval", "--model", str(out), "--data", str(tmp_path / "toy"), "--json"]) == 0
    both = json.loads(capsys.readouterr().out)["scores"][str(tmp_path / "toy")]
    assert main(["eval", "--model", str(out / "start"), "--data", str(tmp_path / "toy"),
                 "--json"]) == 0
    alone = json.loads(capsys.readouterr().out)["scores"][str(tmp_path / "toy")]
    assert both["start_model"]["ua"] == pytest.approx(alone["ua"])
    assert both["ua"] == pytest.approx(0.5)  # the collapsed adapted model: one class of two
    assert main(["eval", "--model", str(out), "--data", str(tmp_path / "toy")]) == 0
    assert "start model (before adaptation, onnxruntime fp32): UA" in capsys.readouterr().out
    # a start model swapped after adapting is refused, and eval says so and goes on
    (out / "start" / "model.json").write_text(
        (out / "start" / "model.json").read_text().replace("start model of", "start model for"))
    assert main(["eval", "--model", str(out), "--data", str(tmp_path / "toy")]) == 0
    assert "is not the one adapted from" in capsys.readouterr().out


def test_the_measurement_tool_samples_corpora_and_counts_right_verdicts(tmp_path):
    pytest.importorskip("tools", reason="needs the repository's tools/ folder")
    from test_training import make_toy_corpus

    from tools.score_adapt_guard import limited_corpus, summary

    make_toy_corpus(tmp_path / "toy", n_speakers=2, per_class=4)
    small = limited_corpus(tmp_path / "toy", 5, 0, tmp_path / "small")
    from edge_ser_train.corpus import read_corpus

    clips = read_corpus(small)
    assert len(clips) == 5 and all(c.path.is_file() and c.path.is_symlink() for c in clips)
    runs = tmp_path / "runs"
    runs.mkdir()
    for i, (mode, start, adapted, estimate) in enumerate([
            ("source", 0.4, 0.5, "not worse"),       # right: kept a better model
            ("source", 0.4, 0.3, "worse"),           # right: refused a worse one
            ("source_free", 0.4, 0.3, "not worse")]):  # wrong: kept a worse one
        right = (estimate == "not worse") == (adapted >= start)
        returned = adapted if estimate == "not worse" else start
        (runs / f"t-s{i}-{mode}.json").write_text(json.dumps(
            {"mode": mode, "start_ua": start, "adapted_ua": adapted, "returned_ua": returned,
             "estimate": estimate, "right": right}))
    text = summary(runs)
    assert "source       verdict right in 2 of 2; mean UA: start 40.0, adapted 40.0, " \
        "returned by adapt 45.0" in text
    assert "source_free  verdict right in 0 of 1" in text
    assert "all          verdict right in 2 of 3" in text
