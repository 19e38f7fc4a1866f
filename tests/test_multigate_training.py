"""The multigate family trains end to end with the `train` loop and its checkpoint round-trips."""

import csv

import pytest

pytest.importorskip("torch", reason="needs torch: the [train] extra")

import torch  # noqa: E402
from test_training import make_toy_corpus

from edge_ser.config import load_config
from edge_ser_train.config import TrainConfig
from edge_ser_train.corpus import labelled, read_corpus, speaker_split
from edge_ser_train.evaluate import score_model
from edge_ser_train.model import build_model
from edge_ser_train.multigate.model import MultiGateModel
from edge_ser_train.multigate.search import main as search_main
from edge_ser_train.trainer import load_checkpoint, predict_logits, save_checkpoint, train


def two_language_corpus(folder):
    """The toy corpus with half of its speakers relabelled as a second language."""
    make_toy_corpus(folder, n_speakers=4, per_class=4)
    path = folder / "labels.csv"
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        row["language"] = "xx" if row["speaker"] in ("s0", "s1") else "yy"
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


@pytest.mark.slow
def test_two_epochs_of_multigate_training_end_to_end(tmp_path, capsys):
    two_language_corpus(tmp_path / "toy")
    cfg = load_config(TrainConfig, None, [
        f"data.corpora=[{tmp_path / 'toy'}]", "data.labels=[calm, excited]",
        f"data.cache_dir={tmp_path / 'cache'}", "augment.views=1", "model.family=multigate",
        "model.channels=16", "model.dilations=[1, 2]", "model.embedding_dim=16",
        "model.norm_window_s=0", "model.multigate.branch_channels=8",
        "model.multigate.ge2e_weights=random", "model.multigate.language_dropout=0.5",
        "optim.epochs=2", "optim.batch_size=8", "optim.crop_s=1.0", "optim.threads=1",
        f"out_dir={tmp_path / 'run'}"])
    clips = labelled(read_corpus(tmp_path / "toy"), cfg.data.labels)
    train_clips, test_clips = speaker_split(clips, 0.25, seed=0)
    result = train(cfg, train_clips, log=lambda _: None)
    model = result.model
    assert isinstance(model, MultiGateModel) and model.languages == ("xx", "yy")
    assert len(result.history) == 2
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in result.history)

    # the GE2E network moved about 1/100 as far as the rest (train seeds torch before building)
    torch.manual_seed(cfg.optim.seed)
    start = build_model(cfg.model, 64, 2, ("xx", "yy"))

    def moved(name):
        return float((model.state_dict()[name] - start.state_dict()[name]).abs().mean())

    assert moved("ge2e.lstm.weight_hh_l1") < 0.05 * moved("branches.mfcc.gru.weight_hh_l0")

    # eval scores the held-out speakers through the shared route, as for an unseen language
    scores = score_model(model, result.labels, test_clips)
    assert sum(map(sum, scores.confusion)) == len(test_clips)

    save_checkpoint(result, cfg, tmp_path / "run" / "model.pt")
    loaded, loaded_cfg, payload = load_checkpoint(tmp_path / "run" / "model.pt")
    assert loaded_cfg == cfg and payload["languages"] == ["xx", "yy"]
    assert isinstance(loaded, MultiGateModel) and loaded.languages == ("xx", "yy")
    feats = [torch.randn(120, 64).numpy() - 4, torch.randn(90, 64).numpy() - 4]
    assert (predict_logits(loaded, feats) == predict_logits(model, feats)).all()
    # `languages` routes each clip through its own gate and head, matched to it after the
    # length sort (the longer clip, xx, is batched second)
    routed = predict_logits(model, feats, languages=["xx", "yy"])
    for i, language in enumerate(["xx", "yy"]):
        alone = predict_logits(model, [feats[i]], languages=[language])
        assert torch.allclose(torch.from_numpy(routed[i]), torch.from_numpy(alone[0]), atol=1e-5)
    shared = predict_logits(model, feats)
    assert not torch.allclose(torch.from_numpy(routed), torch.from_numpy(shared))

    # the head search needs a selection corpus; the toy corpus is not one
    assert search_main(["--checkpoint", str(tmp_path / "run" / "model.pt")]) == 0
    assert "skipped toy: not a selection corpus" in capsys.readouterr().out
    # named as a selection corpus, it is searched
    out = tmp_path / "search.json"
    assert search_main(["--checkpoint", str(tmp_path / "run" / "model.pt"), "--selection", "toy",
                        "--population", "2", "--generations", "1", "--children", "1",
                        "--out", str(out)]) == 0
    assert "skipped" not in capsys.readouterr().out and out.is_file()
