"""`adapt` of a multigate model: what each method trains (every clip on the shared route, the
GE2E stream at its low rate, NNPM keeping the heads), the guard on multigate models, and the
command end to end from a checkpoint and from a package, each writing a package that loads
and streams. Tiny models with untrained GE2E weights, synthetic speech, seconds."""

import pytest

pytest.importorskip("torch", reason="needs torch: the [train] extra")

import copy
import json

import numpy as np
import torch
from test_adapt import ADAPT, LABELS, config, two_domains, write_recordings
from test_multigate_training import two_language_corpus

from edge_ser import contract
from edge_ser.config import load_config
from edge_ser.events import SegmentResult
from edge_ser.package import load_package
from edge_ser.recognizer import Recognizer
from edge_ser_export.cli import main
from edge_ser_train.adapt import AdaptData, adapt
from edge_ser_train.adapt_config import GuardConfig
from edge_ser_train.adapt_guard import judge
from edge_ser_train.config import TrainConfig
from edge_ser_train.corpus import labelled, read_corpus
from edge_ser_train.inference import embed_all, reestimate_bn_statistics
from edge_ser_train.memory import SourceMemory
from edge_ser_train.model import build_model
from edge_ser_train.multigate.model import MultiGateModel
from edge_ser_train.trainer import load_checkpoint, save_checkpoint, train

TINY_MG = ["model.family=multigate", "model.channels=16", "model.dilations=[1, 2]",
           "model.embedding_dim=16", "model.norm_window_s=0", "model.multigate.branch_channels=8",
           "model.multigate.gate_hidden=8", "model.multigate.ge2e_weights=random",
           "model.multigate.head=1x12:gelu"]
QUIET = {"log": lambda _: None}


def tiny_multigate(n_classes: int = len(LABELS)) -> MultiGateModel:
    torch.manual_seed(0)
    cfg = load_config(TrainConfig, None, TINY_MG).model
    return build_model(cfg, contract.N_MELS, n_classes, ("de", "tr"), pretrained=True).eval()


def small_domains():
    data, y_target = two_domains(n=32)
    data.target_views = [[v[0][:60], v[1][:60]] for v in data.target_views]
    data.source_views = [[v[0][:60], v[1][:60]] for v in data.source_views]
    return data, y_target


def moved(before: torch.nn.Module, after: torch.nn.Module, prefix: str) -> float:
    """Mean absolute change of the parameters whose names start with `prefix`."""
    old = dict(before.named_parameters())
    changes = [(p - old[name]).abs().mean() for name, p in after.named_parameters()
               if name.startswith(prefix)]
    assert changes, prefix
    return float(torch.stack(changes).mean().detach())


def test_source_clips_take_the_shared_route_and_ge2e_learns_at_its_low_rate():
    data, _ = small_domains()
    start = tiny_multigate()
    result = adapt(config("method=source", "optim.epochs=2", "optim.batch_size=8"), data,
                   model=copy.deepcopy(start), **QUIET)
    model = result.model
    # the shared route (gate and head) trains; the per-language ones stay as trained
    assert moved(start, model, "gates.2.") > 0 and moved(start, model, "heads.2.") > 0
    for route in (0, 1):
        assert moved(start, model, f"gates.{route}.") == 0.0
        assert moved(start, model, f"heads.{route}.") == 0.0
    # the GE2E network moves about 1/100 as far as the other streams (ge2e_lr_scale 0.01)
    assert 0 < moved(start, model, "ge2e.") < 0.05 * moved(start, model, "branches.mfcc.gru.")
    # the source loss is training's: cross-entropy and the contrastive term
    assert all("ce" in h and "aux" in h for h in result.history)
    assert moved(start, model, "contrastive.") > 0


@pytest.mark.parametrize("with_source", [True, False])
def test_nnpm_keeps_every_head_and_adapts_the_shared_gate_and_streams(with_source):
    data, _ = small_domains()
    start = tiny_multigate()
    memory = None
    if not with_source:  # the model's memory bank: centroids of its shared-route embeddings
        emb, _ = embed_all(start, [v[0] for v in data.source_views])
        memory = SourceMemory.from_features(emb, data.source_targets, 4).centroids(2)
        data = AdaptData(LABELS, data.target_views)
    result = adapt(config("method=nnpm", "optim.epochs=2", "optim.batch_size=8"), data,
                   model=copy.deepcopy(start), memory=memory, **QUIET)
    model = result.model
    for route in (0, 1, 2):
        assert moved(start, model, f"heads.{route}.") == 0.0
    assert moved(start, model, "gates.0.") == moved(start, model, "gates.1.") == 0.0
    assert moved(start, model, "gates.2.") > 0 and moved(start, model, "encoder.") > 0
    assert 0 < moved(start, model, "ge2e.") < 0.05 * moved(start, model, "branches.mfcc.gru.")
    assert all(p.requires_grad for p in model.parameters())
    assert all("ml" in h and "ml_mem" in h for h in result.history)
    assert ("mem" in result.history[0]) == with_source
    assert result.pseudo.sets.shape == (len(data.target_views), 4)


def test_dann_adapts_a_multigate_model():
    data, _ = small_domains()
    start = tiny_multigate()
    result = adapt(config("method=dann", "optim.epochs=2", "optim.batch_size=8"), data,
                   model=copy.deepcopy(start), **QUIET)
    assert all(np.isfinite(h["lang"]) and np.isfinite(h["ce"]) for h in result.history)
    assert moved(start, result.model, "gates.2.") > 0
    assert moved(start, result.model, "gates.0.") == 0.0


def test_the_guard_judges_multigate_models():
    data, _ = small_domains()
    start = adapt(config("method=source", "optim.epochs=4", "optim.batch_size=8"), data,
                  model=tiny_multigate(), **QUIET).model
    clean_target = [v[0] for v in data.target_views]
    clean_source = [v[0] for v in data.source_views]
    reestimate_bn_statistics(start, clean_target)  # as adapting ends (target_bn_stats)
    same = judge(GuardConfig(), start, copy.deepcopy(start), clean_target, LABELS,
                 source_feats=clean_source, source_targets=data.source_targets)
    assert all(c.passed for c in same.checks), same.line()  # each computed, none failed
    assert same.checks[-1].start > 0.5  # the start model learnt the source classes
    collapsed = copy.deepcopy(start)
    with torch.no_grad():  # the shared head (the one the runtime scores) names class 0 only
        collapsed.heads[2][-1].bias[0] += 1e3
    report = judge(GuardConfig(), start, collapsed, clean_target, LABELS,
                   source_feats=clean_source, source_targets=data.source_targets)
    assert not report.keep_adapted
    assert report.shares_adapted[0] == 1.0
    assert {c.name for c in report.failed} == {"class_balance", "anchor_agreement",
                                               "source_accuracy"}, report.line()


@pytest.fixture(scope="module")
def start_checkpoint(tmp_path_factory):
    """A tiny multigate model trained one epoch on a two-language toy corpus, and the corpus."""
    root = tmp_path_factory.mktemp("mgadapt")
    two_language_corpus(root / "toy")
    cfg = load_config(TrainConfig, None, [
        f"data.corpora=[{root / 'toy'}]", "data.labels=[calm, excited]",
        f"data.cache_dir={root / 'cache'}", "augment.views=1", *TINY_MG,
        "optim.epochs=1", "optim.batch_size=8", "optim.crop_s=1.0", "optim.threads=1"])
    clips = labelled(read_corpus(root / "toy"), cfg.data.labels)
    result = train(cfg, clips, **QUIET)
    save_checkpoint(result, cfg, root / "start.pt")
    write_recordings(root / "calls", n_files=3)
    return root


def run_adapt(root, out, model, *args) -> int:
    return main([*ADAPT, "--target", str(root / "calls"), "--out", str(out), "--model",
                 str(model), "--set", "optim.epochs=1", "--set", "optim.threads=1",
                 "--set", "optim.batch_size=4", "--set", "augment.views=1",
                 "--set", f"source.cache_dir={root / 'cache'}",
                 "--set", "target.min_segments=4", "--export-set", "gate.min_agreement=0.5",
                 *args])


def check_package(root, out, method: str) -> dict:
    """The output is a multigate package that streams, with the guard's record."""
    package = load_package(out)
    assert package.manifest["family"] == "multigate"
    assert package.manifest["adaptation"]["method"] == method
    record = json.loads((out / "adaptation.json").read_text())
    guard = record["guard"]
    assert guard["decision"] in ("adapted", "start") and guard["estimate"]
    assert set(guard["checks"]) == {"class_balance", "anchor_agreement", "source_accuracy"}
    assert package.manifest["adaptation"]["guard"]["decision"] == guard["decision"]
    model, _, _ = load_checkpoint(out / "model.pt")
    assert isinstance(model, MultiGateModel) and model.languages == ("xx", "yy")
    if guard["decision"] == "adapted":  # the start model beside it, for eval
        start = load_package(out / "start")
        assert start.manifest["family"] == "multigate"
    events = Recognizer.from_options(out).process_file(root / "calls" / "call0.flac")
    assert any(isinstance(e, SegmentResult) for e in events)
    return record


@pytest.mark.slow
@pytest.mark.parametrize("method", ["nnpm", "dann", "source"])
def test_adapt_command_with_source_corpora_writes_a_multigate_package(start_checkpoint, method,
                                                                     capsys):
    root = start_checkpoint
    out = root / f"with_source_{method}"
    keep = ["--keep-adapted"] if method == "nnpm" else []  # nnpm: always with its start model
    assert run_adapt(root, out, root / "start.pt", "--source", str(root / "toy"),
                     "--set", f"method={method}", *keep) == 0
    record = check_package(root, out, method)
    assert record["source"]["clips"] == 32
    assert record["guard"]["checks"]["source_accuracy"]["passed"] is not None
    if method == "nnpm":
        assert "mem" in record["history"][0] and "aux" in record["history"][0]
        # eval scores the multigate start model beside the adapted one
        capsys.readouterr()
        toy = str(root / "toy")
        assert main(["eval", "--model", str(out), "--data", toy, "--json"]) == 0
        both = json.loads(capsys.readouterr().out)["scores"][toy]
        assert main(["eval", "--model", str(out / "start"), "--data", toy, "--json"]) == 0
        alone = json.loads(capsys.readouterr().out)["scores"][toy]
        assert both["start_model"]["ua"] == pytest.approx(alone["ua"])


@pytest.mark.slow
def test_adapt_command_without_source_audio_adapts_a_multigate_package(start_checkpoint,
                                                                      capsys):
    root = start_checkpoint
    package = root / "with_source_nnpm"
    if not package.is_dir():  # made by the test before when the module runs whole
        assert run_adapt(root, package, root / "start.pt", "--source", str(root / "toy"),
                         "--keep-adapted") == 0
    out = root / "source_free"
    assert run_adapt(root, out, package) == 0
    record = check_package(root, out, "nnpm")
    # the start package (adapted with --source) carries a source exemplar set: the memory
    assert record["source"]["clips"] == 0 and "exemplar set" in record["source"]["memory"]
    assert record["guard"]["checks"]["source_accuracy"]["passed"] is None
    with np.load(out / "memory_bank.npz") as shipped, np.load(package / "memory_bank.npz") as bank:
        assert np.array_equal(shipped["centroids"], bank["centroids"])  # the start's bank
    with np.load(out / "adaptation_memory.npz") as shipped, \
            np.load(package / "adaptation_memory.npz") as carried:
        assert np.array_equal(shipped["exemplars"], carried["exemplars"])  # and its set
    capsys.readouterr()
    for method in ("dann", "source"):  # both need labelled source clips
        assert run_adapt(root, root / f"free_{method}", package, "--set",
                         f"method={method}") == 2
        assert "only NNPM from a memory bank" in capsys.readouterr().err
