"""Adaptation: a synthetic two-domain task with a known shift, batch-norm handling, the target
folder reader and the `adapt` command end to end (all without the corpora, in seconds)."""

import pytest

pytest.importorskip("torch", reason="needs torch: the [train] extra")

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from synth import concat, silence, voiced
from torch.nn import functional as F

from edge_ser.config import ConfigError, load_config
from edge_ser.contract import SAMPLE_RATE_HZ
from edge_ser.events import SegmentResult
from edge_ser.package import load_package
from edge_ser.recognizer import Recognizer
from edge_ser_export.cli import main
from edge_ser_train.adapt import AdaptData, adapt
from edge_ser_train.adapt_config import AdaptConfig, TargetConfig
from edge_ser_train.config import AugmentConfig, ModelConfig, TrainConfig
from edge_ser_train.inference import (
    STATISTICS_BATCH,
    by_length,
    embed_all,
    embed_domain,
    predict,
    reestimate_bn_statistics,
)
from edge_ser_train.memory import SourceMemory
from edge_ser_train.model import EmotionModel
from edge_ser_train.target_audio import TargetAudioError, read_target
from edge_ser_train.trainer import TrainResult, load_checkpoint, save_checkpoint

LABELS = ("a", "b", "c", "d")
TINY = ["model.channels=16", "model.dilations=[1, 2]", "model.embedding_dim=16",
        "optim.threads=1", "optim.batch_size=16", "optim.crop_s=1.0", "augment.freq_mask_mels=0"]


ADAPT = ["adapt", "--config",
         str(Path(__file__).resolve().parent.parent / "configs" / "adapt" / "default.yaml")]
"""`adapt` with the shipped recipe (the tests' epochs and sizes are set on top of it)."""

def two_domains(n: int = 240, shift_mels: int = 6, tilt: float = 2.0):
    """Four classes, each a band of energy at its own mel position (10, 24, 38, 52) in noise.
    The target moves every band up by `shift_mels` (a known shift, less than half the spacing
    of 14, so the class clusters keep their order) and tilts the spectrum by +-`tilt`."""
    mel = np.arange(64)

    def domain(shift, slope, seed):
        rng = np.random.default_rng(seed)
        classes = rng.integers(0, 4, n)

        def utterance(c):
            centre = 10 + 14 * c + shift + rng.integers(-1, 2)
            x = rng.normal(0, 1, (100, 64)) + 3.0 * np.exp(-0.5 * ((mel - centre) / 2.0) ** 2)
            return (x + slope * (mel - 32) / 32).astype(np.float32)

        return [[utterance(c), utterance(c)] for c in classes], classes

    source, y_source = domain(0, 0.0, 1)
    target, y_target = domain(shift_mels, tilt, 2)
    data = AdaptData(LABELS, target, source, y_source, np.zeros(n, dtype=np.int64), None, ("s",))
    return data, y_target


def config(*overrides: str) -> AdaptConfig:
    return load_config(AdaptConfig, None, TINY + list(overrides))


def target_accuracy(model, data, y_target) -> float:
    return float((predict(model, [v[0] for v in data.target_views]) == y_target).mean())


def test_nnpm_raises_target_accuracy_over_source_only_on_a_known_shift():
    data, y_target = two_domains()
    source = adapt(config("method=source", "optim.epochs=4"), data, log=lambda _: None)
    ours = adapt(config("method=nnpm", "optim.epochs=4"), data,
                 model=copy.deepcopy(source.model), log=lambda _: None)
    before, after = target_accuracy(source.model, data, y_target), target_accuracy(
        ours.model, data, y_target)
    assert after >= before + 0.2, (before, after)
    # the pseudo multilabels themselves became right, and the history says what happened
    assert (ours.pseudo.top.numpy() == y_target).mean() >= 0.8
    assert all("ml" in h and "mem" in h and "pseudo" in h for h in ours.history)
    # the head is frozen while adapting and given back trainable
    assert torch.equal(ours.model.classifier.weight, source.model.classifier.weight)
    assert all(p.requires_grad for p in ours.model.parameters())


def test_source_free_nnpm_adapts_from_a_fixed_memory_bank():
    data, y_target = two_domains()
    source = adapt(config("method=source", "optim.epochs=4"), data, log=lambda _: None)
    emb, _ = embed_all(source.model, [v[0] for v in data.source_views])
    centroids = torch.stack([F.normalize(emb[torch.as_tensor(data.source_targets == c)], dim=1)
                             .mean(0) for c in range(4)])
    memory = SourceMemory.from_features(centroids, np.arange(4), 4, fixed=True)
    start = copy.deepcopy(source.model)
    classifier_before = start.classifier.weight.clone()
    adapted = adapt(config("method=nnpm", "optim.epochs=4",
                           "optim.lr=0.001", "optim.warmup_epochs=0"),
                    AdaptData(LABELS, data.target_views), model=start, memory=memory,
                    log=lambda _: None)
    assert target_accuracy(adapted.model, data, y_target) >= \
        target_accuracy(source.model, data, y_target) + 0.2
    assert torch.equal(adapted.model.classifier.weight, classifier_before)  # frozen
    assert torch.equal(memory.slots, centroids / centroids.norm(dim=1, keepdim=True))


@pytest.mark.parametrize("batchnorm", ["separate", "mixed"])
def test_dann_runs_with_either_batchnorm_combination(batchnorm):
    data, _ = two_domains(n=64)
    # a shorter target than source: mixed batches pad them to one length
    data.target_views = [[v[0][:60], v[1][:60]] for v in data.target_views]
    result = adapt(config("method=dann", f"batchnorm={batchnorm}", "optim.epochs=2"), data,
                   log=lambda _: None)
    assert all(np.isfinite(h["lang"]) and np.isfinite(h["ce"]) for h in result.history)
    assert result.memory is None and result.pseudo is None


def test_without_source_only_nnpm_with_a_memory_can_adapt():
    data, _ = two_domains(n=32)
    with pytest.raises(ValueError, match="memory bank"):
        adapt(config("method=dann"), AdaptData(LABELS, data.target_views),
              model=EmotionModel(config().model, 64, 4))
    with pytest.raises(ValueError, match="NNPM adapts a trained model"):
        adapt(config("method=nnpm"), data)


def random_utterances(n: int, seed: int) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [[rng.normal(0, 1, (int(rng.integers(20, 40)), 64)).astype(np.float32)
             for _ in range(2)] for _ in range(n)]


BATCH = 16  # TINY's optim.batch_size
BOUNDARIES = sorted({2, 3} | {k * size + extra for size in (BATCH, STATISTICS_BATCH)
                              for k in (1, 2) for extra in (0, 1, 2)})


@pytest.mark.parametrize("n", BOUNDARIES)
def test_every_method_adapts_whatever_the_number_of_utterances(n):
    """n source and n target utterances around every batch size's multiples (the training
    batch and the batch-norm statistics passes): no batch of one reaches batch norm in
    training, with source clips or from a memory bank alone."""
    data = AdaptData(LABELS, random_utterances(n, 1), random_utterances(n, 2),
                     np.arange(n) % 4, np.zeros(n, dtype=np.int64), None, ("s",))
    quiet = {"log": lambda _: None}
    source = adapt(config("method=source", "optim.epochs=1"), data, **quiet)
    assert len(source.history) == 1
    dann = adapt(config("method=dann", "optim.epochs=1"), data,
                 model=copy.deepcopy(source.model), **quiet)
    assert np.isfinite(dann.history[0]["lang"])
    nnpm = adapt(config("method=nnpm", "optim.epochs=1"), data,
                 model=copy.deepcopy(source.model), **quiet)
    assert len(nnpm.memory) == n and len(nnpm.pseudo.top) == n
    bank = SourceMemory.from_features(torch.randn(8, 16), np.arange(8) % 4, 4, fixed=True)
    source_free = adapt(config("method=nnpm", "optim.epochs=1"),
                        AdaptData(LABELS, data.target_views), model=copy.deepcopy(source.model),
                        memory=bank, **quiet)
    assert len(source_free.pseudo.top) == n and np.isfinite(source_free.history[0]["ml"])


def test_statistics_batches_never_hold_one_utterance_and_cover_each_once():
    feats = [np.zeros((int(length), 64), np.float32)
             for length in np.random.default_rng(0).integers(5, 50, 200)]
    for n in range(1, 200):
        for size in (2, 3, 8, 64):
            batches = [b.tolist() for b in by_length(feats[:n], size, min_batch=2)]
            assert sorted(i for b in batches for i in b) == list(range(n))
            assert all(len(b) <= size + 1 for b in batches)
            if n >= 2:
                assert min(len(b) for b in batches) >= 2, (n, size)
    # inference batches keep at most `size` utterances (the last one may hold one)
    assert [len(b) for b in by_length(feats[:65], 64)] == [64, 1]
    with pytest.raises(ValueError, match="at least 2 utterances, got 1"):
        reestimate_bn_statistics(small_model_and_utterances(1, seed=0)[0], feats[:1])


def test_a_training_batch_of_one_is_refused_by_the_config():
    with pytest.raises(ConfigError, match="optim.batch_size"):
        load_config(AdaptConfig, None, ["optim.batch_size=1"])


def small_model_and_utterances(n: int, seed: int):
    """A tiny model in eval mode and `n` utterances of random lengths, offset from zero."""
    torch.manual_seed(0)
    model = EmotionModel(ModelConfig(channels=8, dilations=(1,), embedding_dim=8), 64, 4).eval()
    rng = np.random.default_rng(seed)
    feats = [(rng.normal(2.0, 3.0, (int(rng.integers(40, 90)), 64))).astype(np.float32)
             for _ in range(n)]
    return model, feats, rng


def test_reestimation_replaces_running_statistics_by_their_average():
    model, feats, _ = small_model_and_utterances(20, seed=0)
    before = copy.deepcopy(model.state_dict())
    embed_all(model, feats)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.training

    reestimate_bn_statistics(model, feats, batch_size=8)
    once = copy.deepcopy(model.state_dict())
    assert not torch.equal(once["projection.1.running_mean"], before["projection.1.running_mean"])
    reestimate_bn_statistics(model, feats, batch_size=8)  # an average, not a moving one
    assert torch.allclose(model.state_dict()["projection.1.running_mean"],
                          once["projection.1.running_mean"], atol=1e-6)
    assert all(m.momentum == 0.1 for m in model.modules()
               if isinstance(m, torch.nn.modules.batchnorm._BatchNorm))
    assert not model.training


def test_domain_embeddings_use_the_whole_domain_statistics_whatever_the_order():
    model, feats, rng = small_model_and_utterances(30, seed=1)
    before = copy.deepcopy(model.state_dict())
    emb, _ = embed_domain(model, feats, own_statistics=True)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    order = rng.permutation(len(feats))
    shuffled, _ = embed_domain(model, [feats[i] for i in order], own_statistics=True)
    assert torch.allclose(shuffled, emb[order], atol=1e-5)  # each row: the same statistics
    plain, _ = embed_domain(model, feats, own_statistics=False)
    assert not torch.allclose(plain, emb, atol=1e-3)  # running statistics differ


def write_recordings(folder, n_files: int = 4):
    """Files of speech-like bursts between silences at 22.05 kHz, one corrupt file, one text."""
    folder.mkdir()
    for i in range(n_files):
        x = concat(silence(0.4), voiced(1.2, 120 + 20 * i, seed=i), silence(0.6),
                   voiced(0.9, 180, seed=10 + i), silence(0.4))
        sf.write(folder / f"call{i}.flac", x, SAMPLE_RATE_HZ)
    (folder / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk")
    (folder / "notes.txt").write_text("not audio")
    sf.write(folder / "quiet.wav", silence(1.0), SAMPLE_RATE_HZ)


def test_target_folder_becomes_speech_segments_and_bad_files_are_listed(tmp_path):
    write_recordings(tmp_path / "calls")
    cfg = TargetConfig(min_segments=2, views=1)
    logs = []
    target = read_target(tmp_path / "calls", cfg, AugmentConfig(), log=logs.append)
    assert len(target.files) == 6  # notes.txt is not audio
    assert [p.name for p, _ in target.skipped] == ["broken.wav"]
    assert [p.name for p in target.without_speech] == ["quiet.wav"]
    assert len(target.segments) == 8  # two bursts per file
    for segment, views in zip(target.segments, target.views):
        assert len(views) == 2 and 0.5 <= segment.end_s - segment.start_s <= 1.6
    assert any("broken.wav" in line for line in logs)
    assert any(line.startswith("no speech:") and "quiet.wav" in line for line in logs)
    record = target.describe()
    assert record["files_used"] == 4 and record["files_skipped"][0]["file"].endswith("broken.wav")


def test_target_folder_errors_say_what_was_found(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(TargetAudioError, match="no audio files found"):
        read_target(tmp_path / "empty", TargetConfig(), AugmentConfig(), log=lambda _: None)
    write_recordings(tmp_path / "few", n_files=1)
    with pytest.raises(TargetAudioError, match="too little speech to adapt to: 2 speech segments"):
        read_target(tmp_path / "few", TargetConfig(min_segments=20), AugmentConfig(),
                    log=lambda _: None)


def tiny_checkpoint(path, with_bank: bool):
    torch.manual_seed(0)
    cfg = TrainConfig(model=ModelConfig(channels=8, dilations=(1,), embedding_dim=8))
    model = EmotionModel(cfg.model, 64, 4).eval()
    extra = {}
    if with_bank:
        extra["memory_bank"] = {"centroids": F.normalize(torch.randn(8, 8), dim=1).half(),
                                "centroid_labels": torch.arange(8) % 4,
                                "temperature": 0.05, "top_k": 2}
    save_checkpoint(TrainResult(model, cfg.data.labels, [], 0.0), cfg, path, extra=extra)


def test_adapt_command_without_source_audio_writes_an_adapted_model(tmp_path, capsys):
    write_recordings(tmp_path / "calls", n_files=6)
    tiny_checkpoint(tmp_path / "start.pt", with_bank=True)
    out = tmp_path / "adapted"
    status = main([*ADAPT, "--target", str(tmp_path / "calls"), "--out", str(out),
                   "--model", str(tmp_path / "start.pt"), "--set", "optim.epochs=2",
                   "--set", "optim.threads=1", "--set", "target.min_segments=4",
                   # a random 8-channel model's near-tied classes flip under INT8
                   "--export-set", "gate.min_agreement=0.5"])
    assert status == 0
    printed = capsys.readouterr().out
    assert "epoch   2/2" in printed and "broken.wav" in printed
    model, _, payload = load_checkpoint(out / "model.pt")
    record = json.loads((out / "adaptation.json").read_text())
    assert record["target"]["segments"] == 12 and record["target"]["files_found"] == 8
    assert record["source"]["corpora"] == [] and "memory bank" in record["source"]["memory"]
    assert sum(record["target_predictions"].values()) == 12
    assert payload["extra"]["adaptation"]["method"] == "nnpm"
    # the output is a complete model package that ships the start model's memory bank (and,
    # the start model having no source exemplar set, none)
    package = load_package(out)
    assert package.manifest["adaptation"]["method"] == "nnpm"
    assert "adaptation_memory" not in package.manifest
    # the package names its checkpoint by file name, never by a path of the build machine
    assert package.manifest["provenance"]["checkpoint"]["file"] == "model.pt"
    assert "path" not in package.manifest["provenance"]["checkpoint"]
    assert package.manifest["adaptation"]["target"]["segments"] == 12
    gate = package.manifest["metrics"]["accuracy"]["gate"]
    assert gate["passed"] and "agreement" in gate
    with np.load(out / "memory_bank.npz", allow_pickle=False) as bank:
        assert bank["centroids"].shape == (8, 8) and list(bank["labels"]) == list(
            payload["labels"])
    assert (out / "adapt_config.resolved.yaml").is_file()
    events = Recognizer.from_options(out).process_file(tmp_path / "calls" / "call0.flac")
    assert any(isinstance(e, SegmentResult) for e in events)
    # an adapted model carries its memory bank, so it can be adapted again without source, and
    # its weights (model.pt), so it can be from anywhere it is copied to
    shutil.copytree(out, tmp_path / "elsewhere")
    again = main([*ADAPT, "--target", str(tmp_path / "calls"), "--out", str(tmp_path / "b"),
                  "--model", str(tmp_path / "elsewhere"), "--set", "optim.epochs=1", "--set",
                  "target.min_segments=4", "--export-set", "gate.min_agreement=0.5"])
    assert again == 0


def test_adapt_command_refuses_bad_input_with_one_line(tmp_path, capsys):
    write_recordings(tmp_path / "calls", n_files=2)
    tiny_checkpoint(tmp_path / "plain.pt", with_bank=False)
    args = ["adapt", "--target", str(tmp_path / "calls"), "--out", str(tmp_path / "o"),
            "--set", "target.min_segments=2"]
    assert main(args + ["--model", str(tmp_path / "plain.pt")]) == 2
    assert "no memory bank" in capsys.readouterr().err
    assert main(args + ["--model", str(tmp_path / "missing.pt")]) == 2
    assert "model not found" in capsys.readouterr().err
    assert main([*ADAPT, "--target", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"),
                 "--model", str(tmp_path / "plain.pt")]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert main(args + ["--model", str(tmp_path / "plain.pt"), "--source",
                        str(tmp_path / "calls")]) == 2
    assert "no labels.csv" in capsys.readouterr().err


def test_adapt_command_with_source_corpora_runs_full_nnpm(tmp_path):
    from test_training import make_toy_corpus

    from edge_ser_train.config import DataConfig

    make_toy_corpus(tmp_path / "toy", n_speakers=2, per_class=4)
    write_recordings(tmp_path / "calls", n_files=3)
    cfg = TrainConfig(data=DataConfig(labels=("calm", "excited")),
                      model=ModelConfig(channels=8, dilations=(1,), embedding_dim=8))
    torch.manual_seed(0)
    model = EmotionModel(cfg.model, 64, 2).eval()
    save_checkpoint(TrainResult(model, cfg.data.labels, [], 0.0), cfg, tmp_path / "start.pt")
    out = tmp_path / "adapted"
    assert main([*ADAPT, "--target", str(tmp_path / "calls"), "--out", str(out), "--model",
                 str(tmp_path / "start.pt"), "--source", str(tmp_path / "toy"),
                 "--set", "optim.epochs=2", "--set", "optim.threads=1",
                 "--set", "augment.views=1", "--set", f"source.cache_dir={tmp_path / 'cache'}",
                 "--set", "target.min_segments=4",
                 "--export-set", "gate.min_agreement=0.5"]) == 0
    _, loaded_cfg, payload = load_checkpoint(out / "model.pt")
    record = payload["extra"]["adaptation"]
    assert record["source"]["clips"] == 16 and record["pseudo_labels"]["mean_set_size"] >= 1
    assert loaded_cfg.data.corpora == (str(tmp_path / "toy"),)
    assert "mem" in record["history"][0] and "ml" in record["history"][0]
    with np.load(out / "memory_bank.npz", allow_pickle=False) as bank:
        assert sorted(set(bank["centroid_labels"].tolist())) == [0, 1]
    # the bank is rebuilt from the source utterances through the adapted model
    package = load_package(out)
    assert "from 16 training clips" not in package.manifest["adaptation"]["source"]["memory"]
    assert package.manifest["adaptation"]["source"]["clips"] == 16


@pytest.mark.parametrize("name", ["default", "table"])
def test_shipped_adapt_configs_load_strictly(name):
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "configs" / "adapt" / f"{name}.yaml"
    cfg = load_config(AdaptConfig, path)
    assert cfg.method == "nnpm" and cfg.batchnorm == "separate"
    with pytest.raises(ConfigError, match="nnpm.kk"):
        load_config(AdaptConfig, path, ["nnpm.kk=3"])
    with pytest.raises(ConfigError, match="nnpm.anchor"):  # a retired option is unknown
        load_config(AdaptConfig, path, ["nnpm.anchor=0.5"])
