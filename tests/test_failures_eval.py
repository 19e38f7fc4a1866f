"""eval: `--json` prints JSON only (skipped clips on standard error and in the JSON), and every
score says how much of the data the model was trained on, with the held-out part apart; the
training speakers are derived the way `train` chose them."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_ser.config import to_dict
from edge_ser.corpus import read_corpus
from edge_ser.training_data import TrainingData
from edge_ser_export import cli
from edge_ser_train.config import TrainConfig

LABELS = ("angry", "happy", "neutral", "sad")


def write_corpus(folder: Path, corpus: str, speakers: list[str], per_label: int = 1,
                 broken: bool = False, audio: bool = True) -> Path:
    folder.mkdir(parents=True)
    rows = []
    for s, speaker in enumerate(speakers):
        for k, label in enumerate(LABELS):
            for i in range(per_label):
                name = f"{speaker}_{label}_{i}.wav"
                if audio:
                    t = np.arange(16000) / 16000
                    tone = 0.1 * np.sin(2 * np.pi * (110 + 50 * k + 9 * s + 3 * i) * t)
                    sf.write(folder / name, tone.astype(np.float32), 16000)
                else:
                    (folder / name).write_bytes(b"")
                rows.append({"file": name, "corpus": corpus, "language": "xx",
                             "speaker": speaker, "emotion4": label})
    if broken:
        (folder / "broken.wav").write_bytes(b"RIFF not audio")
        rows.append({"file": "broken.wav", "corpus": corpus, "language": "xx",
                     "speaker": speakers[0], "emotion4": "sad"})
    with open(folder / "labels.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return folder


def test_eval_json_is_json_with_skipped_clips_on_stderr_and_inside(tmp_path, capsys):
    data = write_corpus(tmp_path / "mine", "mycorpus", ["1", "2"], broken=True)
    assert cli.main(["eval", "--data", str(data), "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)["scores"][str(data)]  # all of stdout is one JSON document
    assert report["count"] == 8
    (skipped,) = report["skipped"]
    assert skipped["path"] == str(data / "broken.wav") and "broken.wav" in skipped["reason"]
    assert captured.err.strip().startswith(f"skipped: {data / 'broken.wav'}")
    # a corpus the bundled model never saw: every clip held out
    assert report["training_overlap"]["seen_in_training"] == 0
    assert report["held_out"]["count"] == 8 and report["held_out"]["ua"] == report["ua"]


def test_eval_separates_the_clips_of_training_corpora(tmp_path, capsys):
    # named like a corpus the bundled model was trained on, speaker 03 trained on, 09 excluded
    data = write_corpus(tmp_path / "emodb", "emodb", ["03", "09"])
    assert cli.main(["eval", "--data", str(data)]) == 0
    printed = capsys.readouterr().out
    assert "note: " in printed and "clips were in the model's training data" in printed
    assert "held-out (never trained on)" in printed
    assert cli.main(["eval", "--data", str(data), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["scores"][str(data)]
    overlap = report["training_overlap"]
    assert overlap["clips"] == 8 and "emodb" in overlap["training_corpora"]
    if overlap["why"] == {"training speaker": 4}:  # the shared corpora are here: speakers known
        assert report["held_out"]["count"] == 4
    else:  # without them only the corpus is known: every clip of it counts as seen
        assert overlap["why"] == {"training corpus": 8} and report["held_out"] is None
        assert "cannot be derived" in overlap["how_known"]


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fraction=st.sampled_from([0.0, 0.2, 0.34, 0.5]), seed=st.integers(0, 1000),
       exclude=st.sets(st.sampled_from(["a:s1", "b:s2", "b:s5"]), max_size=2))
def test_training_speakers_are_the_ones_train_chooses(tmp_path_factory, fraction, seed, exclude):
    root = tmp_path_factory.mktemp("corpora")
    if not (root / "a").exists():
        write_corpus(root / "a", "a", [f"s{i}" for i in range(5)], 2, audio=False)
        write_corpus(root / "b", "b", [f"s{i}" for i in range(7)], 1, audio=False)
    cfg = TrainConfig()
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(
        cfg.data, corpora=(str(root / "a"), str(root / "b")), test_fraction=fraction,
        exclude_speakers=tuple(sorted(exclude))), optim=dataclasses.replace(cfg.optim, seed=seed))
    run = pytest.importorskip("edge_ser_train.run", reason="needs torch: the [train] extra")
    expected = {c.speaker for c in run.split(cfg, run.load_clips(cfg))[0]}
    derived = TrainingData.from_train_config(to_dict(cfg))
    assert derived.speakers == expected
    held = [c for c in read_corpus(root / "a") + read_corpus(root / "b")
            if derived.reason(c) is None]
    assert {c.speaker for c in held}.isdisjoint(expected)


def test_a_training_corpus_that_is_not_here_is_said(tmp_path):
    config = to_dict(TrainConfig())
    config["data"]["corpora"] = [str(tmp_path / "gone" / "emodb")]
    derived = TrainingData.from_train_config(config)
    assert derived.speakers is None and derived.corpora == {"emodb"}
    assert derived.note == (f"training corpus {tmp_path / 'gone' / 'emodb'} is not here, so its "
                            "training speakers cannot be derived")


def test_an_adaptation_target_counts_as_seen(tmp_path):
    data = write_corpus(tmp_path / "calls", "calls", ["1"], audio=False)
    manifest = {"adaptation": {"target": {"folder": str(data)}},
                "provenance": {"corpora": [{"name": "target", "path": str(data)}]}}
    seen = TrainingData.from_manifest(manifest)
    assert {seen.reason(c) for c in read_corpus(data)} == {"adaptation target"}
