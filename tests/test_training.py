"""A short training run must actually learn a separable task, and checkpoints must round-trip."""

import pytest

pytest.importorskip("torch", reason="needs torch: the [train] extra")

import csv

import numpy as np
import soundfile as sf
import torch

from edge_ser.config import load_config
from edge_ser_train.config import TrainConfig
from edge_ser_train.corpus import labelled, read_corpus, speaker_split
from edge_ser_train.evaluate import score_model
from edge_ser_train.trainer import (
    balanced_weights,
    get_lr,
    load_checkpoint,
    mix_batch,
    save_checkpoint,
    train,
)

COLUMNS = ["file", "corpus", "language", "speaker", "gender", "emotion", "emotion4", "text",
           "sample_rate", "channels", "duration_s"]


def make_toy_corpus(folder, n_speakers=6, per_class=6):
    """Two 'emotions' that differ in pitch and loudness, spoken by speakers of different
    base pitch, at 22.05 kHz so resampling is exercised too."""
    rng = np.random.default_rng(0)
    sr = 22_050
    folder.mkdir()
    rows = []
    for spk in range(n_speakers):
        base_hz = 110 + 15 * spk
        for label, pitch, level in (("calm", 1.0, 0.05), ("excited", 2.2, 0.4)):
            for i in range(per_class):
                t = np.arange(int(sr * rng.uniform(0.8, 1.6))) / sr
                f0 = base_hz * pitch * (1 + 0.03 * np.sin(2 * np.pi * 5 * t))
                phase = 2 * np.pi * np.cumsum(f0) / sr
                x = sum(np.sin(k * phase) / k for k in range(1, 6))
                x = level * x / np.max(np.abs(x)) + 0.002 * rng.standard_normal(len(t))
                name = f"s{spk}_{label}_{i}.wav"
                sf.write(folder / name, x.astype(np.float32), sr)
                rows.append({"file": name, "corpus": "toy", "language": "xx",
                             "speaker": f"s{spk}", "emotion": label, "emotion4": label,
                             "sample_rate": sr, "channels": 1, "duration_s": len(t) / sr})
    with (folder / "labels.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, COLUMNS)
        writer.writeheader()
        writer.writerows({c: r.get(c, "") for c in COLUMNS} for r in rows)


def toy_config(tmp_path, epochs):
    # the toy emotions differ in loudness, a cue the running input normalisation removes
    return load_config(TrainConfig, None, [
        f"data.corpora=[{tmp_path / 'toy'}]", "data.labels=[calm, excited]",
        f"data.cache_dir={tmp_path / 'cache'}", "augment.views=1", "model.channels=16",
        "model.dilations=[1, 2]", "model.embedding_dim=16", "model.norm_window_s=0",
        f"optim.epochs={epochs}",
        "optim.batch_size=8", "optim.threads=1", f"out_dir={tmp_path / 'run'}"])


@pytest.mark.slow
def test_short_training_learns_a_separable_task(tmp_path):
    make_toy_corpus(tmp_path / "toy")
    cfg = toy_config(tmp_path, epochs=6)
    clips = labelled(read_corpus(tmp_path / "toy"), cfg.data.labels)
    train_clips, test_clips = speaker_split(clips, 0.34, seed=0)
    result = train(cfg, train_clips, log=lambda _: None)
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    scores = score_model(result.model, result.labels, test_clips)
    assert scores.ua >= 0.9, scores  # unseen speakers; chance is 0.5

    # the checkpoint loads with weights_only=True and predicts the same
    save_checkpoint(result, cfg, tmp_path / "run" / "model.pt")
    model, loaded_cfg, payload = load_checkpoint(tmp_path / "run" / "model.pt")
    assert loaded_cfg == cfg and payload["labels"] == ["calm", "excited"]
    again = score_model(model, tuple(payload["labels"]), test_clips)
    assert again.confusion == scores.confusion


def test_mixup_blends_rows_of_other_corpora_over_the_shorter_length():
    feats = torch.randn(4, 10, 64)
    lengths = torch.tensor([10, 8, 10, 6])
    soft = torch.eye(4)
    corpora = ["a", "a", "b", "b"]
    before = feats.clone()
    mixed, new_lengths, new_soft = mix_batch(feats, lengths, soft, corpora, 1.0,
                                             np.random.default_rng(0))
    assert torch.allclose(new_soft.sum(1), torch.ones(4))
    for row in range(4):
        partner = [j for j in range(4) if j != row and new_soft[row, j] > 0]
        if not partner:  # a weight of exactly 1 keeps the row as it was
            continue
        (j,) = partner
        assert corpora[j] != corpora[row]
        n = int(new_lengths[row])
        assert n == min(int(lengths[row]), int(lengths[j]))
        w = float(new_soft[row, row])
        assert torch.allclose(mixed[row, :n], w * feats[row, :n] + (1 - w) * feats[j, :n],
                              atol=1e-6)
    assert torch.equal(feats, before)  # the inputs are left as they were
    same, same_lengths, same_soft = mix_batch(feats, lengths, soft, corpora, 0.0,
                                              np.random.default_rng(0))
    assert torch.equal(same, feats) and torch.equal(same_lengths, lengths)
    assert torch.equal(same_soft, soft)


def test_checkpoint_with_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("ran",))

    torch.save({"format": 1, "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(Exception, match="(?i)weights.only|unsupported|global"):
        load_checkpoint(tmp_path / "evil.pt")


def test_lr_schedule_warms_up_then_decays():
    lrs = [get_lr(s, 100, 10, 1.0) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[-1] < 0.05


def test_balanced_weights_equalise_corpora_and_classes(tmp_path):
    from edge_ser_train.corpus import Clip

    def clip(corpus, label):
        return Clip(tmp_path, corpus, "xx", f"{corpus}:s", "", label, 1.0)

    clips = [clip("a", "x")] * 30 + [clip("a", "y")] * 10 + [clip("b", "x")] * 5
    w = balanced_weights(clips)
    mass = {}
    for c, wi in zip(clips, w):
        mass[(c.corpus, c.label)] = mass.get((c.corpus, c.label), 0) + wi
    assert mass[("a", "x")] == pytest.approx(0.25)
    assert mass[("a", "y")] == pytest.approx(0.25)
    assert mass[("b", "x")] == pytest.approx(0.5)


def test_pooled_weights_balance_classes_and_keep_corpus_proportions(tmp_path):
    from edge_ser_train.corpus import Clip

    def clip(corpus, label):
        return Clip(tmp_path, corpus, "xx", f"{corpus}:s", "", label, 1.0)

    clips = [clip("a", "x")] * 30 + [clip("a", "y")] * 10 + [clip("b", "x")] * 10
    w = balanced_weights(clips, "pooled")
    mass = {}
    for c, wi in zip(clips, w):
        mass[(c.corpus, c.label)] = mass.get((c.corpus, c.label), 0) + wi
    assert mass[("a", "y")] == pytest.approx(0.5)  # class y: half of the draws
    assert mass[("a", "x")] == pytest.approx(0.5 * 30 / 40)  # class x: split 30:10 by corpus
    assert mass[("b", "x")] == pytest.approx(0.5 * 10 / 40)


def test_git_commit_marks_uncommitted_changes_and_knows_no_checkout(tmp_path):
    import subprocess

    from edge_ser_train.run import UNCOMMITTED, git_commit

    assert git_commit(tmp_path) == "unknown"  # not a checkout
    repo = tmp_path / "repo"
    repo.mkdir()

    def git(*args):
        return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                              text=True).stdout.strip()

    git("init", "-q")
    (repo / "code.py").write_text("x = 1\n")
    git("add", "code.py")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    head = git("rev-parse", "HEAD")
    (repo / "notes.txt").write_text("untracked files do not count\n")
    assert git_commit(repo) == head
    (repo / "code.py").write_text("x = 2\n")
    assert git_commit(repo) == head + UNCOMMITTED
