"""tools/make_results.py: the protocol's cells, resumable raw results and the rendered table, on
tiny generated corpora with the training functions replaced (no audio is read)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

# the repository's tools/ train models: they need the checkout and the [train] extra
pytest.importorskip("torch", reason="needs torch: the [train] extra")
pytest.importorskip("tools", reason="needs the repository's tools/ folder")

from tools import make_results  # noqa: E402
from tools.protocol import load_protocol  # noqa: E402

LABELS = ("angry", "happy", "neutral", "sad")
FIELDS = ("file, corpus, language, speaker, gender, emotion, emotion4, text, sample_rate, "
          "channels, duration_s").split(", ")


def write_corpus(root, name, speakers=4, texts=("s1", "s2")):
    folder = root / name
    folder.mkdir(parents=True)
    rows = []
    for spk in range(speakers):
        for label in LABELS:
            for text in texts:
                file = f"{name}_{spk}_{label}_{text}.wav"
                (folder / file).write_bytes(b"")
                rows.append({"file": file, "corpus": name, "language": name, "speaker": str(spk),
                             "gender": "f", "emotion": label, "emotion4": label, "text": text,
                             "sample_rate": "16000", "channels": "1", "duration_s": "1.0"})
    with (folder / "labels.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture
def setup(tmp_path):
    data = tmp_path / "data"
    for name in ("aa", "bb", "cc"):
        write_corpus(data, name)
    protocol = tmp_path / "protocol.yaml"
    protocol.write_text("selection: [aa, bb]\nconfirmation: [cc]\nseeds: [0, 1]\n"
                        "test_fraction: 0.25\ncommon_sentences: [cc:s1]\n")
    return data, protocol, tmp_path / "runs", tmp_path / "results.md"


class Recorder:
    """A system that is right on every `s1` clip and says `angry` on the others; it records the
    clips it was trained and tested on."""

    def __init__(self):
        self.calls = []

    def __call__(self, cfg, train_clips, test_clips):
        self.calls.append((cfg, train_clips, test_clips))
        predicted = [LABELS.index(c.label) if c.path.name.endswith("_s1.wav") else 0
                     for c in test_clips]
        return test_clips, np.array(predicted)


def run(setup, *extra, ours=None, peer=None):
    data, protocol, runs, out = setup
    systems = {"ours": ours or Recorder(), "peer": peer or Recorder()}
    argv = ["--data", str(data), "--protocol", str(protocol), "--runs", str(runs),
            "--out", str(out), *extra]
    make_results.main(argv, systems)
    return systems


def test_every_cell_is_written_with_lolo_and_in_domain_splits(setup):
    data, _, runs, out = setup
    systems = run(setup)
    assert len(list(runs.glob("*.json"))) == 2 * 3 * 2 * 2  # kinds x corpora x seeds x systems
    for cfg, train_clips, test_clips in systems["ours"].calls:
        trained = {c.corpus for c in train_clips}
        tested = {c.corpus for c in test_clips}
        if len(trained) > 1:  # LOLO: all other corpora in, every clip of the target scored
            assert tested.isdisjoint(trained) and len(trained) == 2
            assert len(test_clips) == 4 * 4 * 2
            assert len(cfg.data.corpora) == 2
        else:  # in-domain: same corpus, disjoint speakers
            assert tested == trained
            assert {c.speaker for c in train_clips}.isdisjoint({c.speaker for c in test_clips})
    record = json.loads((runs / "lolo-cc-s1-ours.json").read_text())
    assert record["role"] == "confirmation" and record["train_corpora"] == ["aa", "bb"]
    assert record["seed"] == 1 and len(record["predictions"]["files"]) == 32
    # right on s1 clips, `angry` elsewhere: UA over all = (1 + 0.5 * 3) / 4
    assert record["scores"]["ua"] == pytest.approx(0.625)
    assert record["common_sentences"]["ua"] == pytest.approx(1.0)
    assert record["common_sentences"]["count"] == 16
    assert "common_sentences" not in json.loads((runs / "lolo-aa-s0-ours.json").read_text())
    text = out.read_text()
    assert "Partial table" not in text
    assert "| **selection mean** | | 62.5 ± 0.0 |" in text
    assert "| lolo cc | ours | 62.5 ± 0.0 | 100.0 ± 0.0 | 16 | 0, 1 |" in text


def test_a_split_run_resumes_without_remeasuring(setup):
    _, _, runs, out = setup
    first = run(setup, "--seeds", "0", "--targets", "cc", "--kinds", "lolo")
    assert len(first["ours"].calls) == 1 and len(first["peer"].calls) == 1
    assert "Partial table" in out.read_text()
    before = (runs / "lolo-cc-s0-ours.json").read_text()
    second = run(setup)
    assert len(second["ours"].calls) == 2 * 3 * 2 - 1
    assert (runs / "lolo-cc-s0-ours.json").read_text() == before
    assert "Partial table" not in out.read_text()


def test_render_only_trains_nothing_and_marks_missing_cells(setup):
    run(setup, "--seeds", "0", "--systems", "ours", "--kinds", "lolo")
    systems = run(setup, "--render")
    assert systems["ours"].calls == [] and systems["peer"].calls == []
    text = setup[3].read_text()
    assert "Partial table" in text and "lolo aa peer (seed 0, 1)" in text
    assert "in_domain cc ours (seed 0, 1)" in text
    lolo_aa = next(line for line in text.splitlines() if line.startswith("| aa | selection"))
    assert "| — | — | — |" in lolo_aa  # the peer's cells are dashes
    # only seed 0 of every target: the group mean has one value, so no spread
    assert "| **mean of all 3** | | 62.5 |" in text


def test_another_recipe_in_the_same_runs_folder_is_refused(setup):
    run(setup, "--seeds", "0", "--targets", "aa", "--kinds", "lolo")
    with pytest.raises(SystemExit, match="another recipe"):
        run(setup, "--seeds", "0", "--targets", "aa", "--kinds", "lolo",
            "--set", "optim.epochs=3")
    # threads and cache folders do not change the recipe
    again = run(setup, "--seeds", "0", "--targets", "aa", "--kinds", "lolo", "--threads", "1",
                "--set", "data.cache_dir=/elsewhere")
    assert again["ours"].calls == []


def test_every_corpus_needs_a_role(setup):
    data = setup[0]
    write_corpus(data, "dd")
    with pytest.raises(SystemExit, match="dd has no role"):
        run(setup)


def test_unknown_target_is_refused(setup):
    with pytest.raises(SystemExit, match="zz not a protocol corpus"):
        run(setup, "--targets", "zz")


def test_the_shipped_protocol_names_roles_and_common_sentences():
    protocol = load_protocol()
    assert set(protocol.selection).isdisjoint(protocol.confirmation)
    assert all(e.count(":") == 1 for e in protocol.common_sentences)


def test_a_corpus_in_both_roles_is_refused(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("selection: [aa, bb]\nconfirmation: [bb]\n")
    with pytest.raises(ValueError, match="bb both selection and confirmation"):
        load_protocol(path)


def test_a_cell_from_before_a_new_setting_matches_its_default():
    from edge_ser_train.config import TrainConfig
    from tools.make_results import recipe, same_recipe

    current = recipe(TrainConfig())
    older = json.loads(json.dumps(current))
    del older["optim"]["mixup"]  # measured before the setting existed
    assert same_recipe(older, current)
    changed = json.loads(json.dumps(current))
    changed["optim"]["mixup"] = 0.5
    assert not same_recipe(older, changed)  # a non-default value is another recipe
    older["optim"]["epochs"] = 10
    assert not same_recipe(older, current)
