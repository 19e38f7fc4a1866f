"""tools/make_adaptation_results.py end to end on three tiny generated corpora: the cells of one
target and seed, resumed without training, refused under another recipe, and rendered from the
numbers in the cells; and the arithmetic of the tools beside it (confusion matrices, the
package's ways of scoring)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch", reason="needs torch: the [train] extra")
pytest.importorskip("tools", reason="needs the repository's tools/ folder")

import csv  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402

from edge_ser.metrics import score  # noqa: E402
from tools import adaptation_confusion, adaptation_package_scores  # noqa: E402
from tools import make_adaptation_results as table  # noqa: E402
from tools.adaptation_render import SYSTEMS, TITLES  # noqa: E402
from tools.make_results import Harness, recipe  # noqa: E402

LABELS = ("angry", "happy", "neutral", "sad")
COLUMNS = ["file", "corpus", "language", "speaker", "gender", "emotion", "emotion4", "text",
           "sample_rate", "channels", "duration_s"]
SR = 16_000


def write_corpus(root, name: str, seed: int, speakers: int = 5, per_class: int = 2) -> int:
    """Four 'emotions' of different pitch and loudness by speakers of different base pitch, and
    one clip per speaker without a 4-class label; returns the number of clips."""
    rng = np.random.default_rng(seed)
    folder = root / name
    folder.mkdir(parents=True)
    rows = []
    for spk in range(speakers):
        base_hz = 100 + 20 * spk + 10 * seed
        for label, pitch, level in (*zip(LABELS, (2.0, 1.6, 1.0, 0.8), (0.4, 0.3, 0.1, 0.05)),
                                    ("", 1.3, 0.2)):
            for i in range(per_class if label else 1):
                t = np.arange(int(SR * rng.uniform(0.6, 1.0))) / SR
                phase = 2 * np.pi * np.cumsum(base_hz * pitch * (1 + 0.03 * np.sin(10 * t))) / SR
                x = sum(np.sin(k * phase) / k for k in range(1, 6))
                x = level * x / np.max(np.abs(x)) + 0.002 * rng.standard_normal(len(t))
                file = f"{name}_s{spk}_{label or 'other'}_{i}.wav"
                sf.write(folder / file, x.astype(np.float32), SR)
                rows.append({"file": file, "corpus": name, "language": name,
                             "speaker": f"s{spk}", "gender": "f", "emotion": label or "other",
                             "emotion4": label, "text": "", "sample_rate": SR, "channels": 1,
                             "duration_s": len(t) / SR})
    with (folder / "labels.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """One target (aa) and one seed measured by the tool, every system."""
    root = tmp_path_factory.mktemp("adaptation")
    data = root / "data"
    sizes = {name: write_corpus(data, name, i) for i, name in enumerate(("aa", "bb", "cc"))}
    protocol = root / "protocol.yaml"
    protocol.write_text("selection: [aa, bb]\nconfirmation: [cc]\nseeds: [0]\n"
                        "test_fraction: 0.2\ncommon_sentences: []\n")
    cache = root / "cache"
    tiny = ["augment.views=1", "optim.epochs=1", "optim.batch_size=8"]
    argv = ["--data", str(data), "--protocol", str(protocol), "--runs", str(root / "runs"),
            "--out", str(root / "table.md"), "--targets", "aa", "--seeds", "0", "--threads", "1",
            *[a for s in tiny + [f"source.cache_dir={cache}"] for a in ("--set", s)],
            *[a for s in tiny + [f"data.cache_dir={cache}", "model.channels=8",
                                 "model.dilations=[1]", "model.embedding_dim=8"]
              for a in ("--train-set", s)]]
    assert table.main(argv) == 0
    return root, argv, sizes


def cells_of(runs) -> dict[tuple[str, str], dict]:
    return {(r["target"], r["system"]): r
            for r in map(json.loads, (p.read_text() for p in runs.glob("adapt-*.json")))}


def test_every_system_of_the_target_is_one_cell_from_one_start_model(measured):
    root, argv, sizes = measured
    runs = root / "runs"
    assert sorted(p.name for p in runs.glob("*.json")) == sorted(
        f"adapt-aa-s0-{s}.json" for s in SYSTEMS)
    assert [p.name for p in (runs / "start").iterdir()] == ["lolo-aa-s0.pt"]
    cells = cells_of(runs)
    source = cells[("aa", "source")]
    # the start model is make_results' LOLO model: same training corpora and recipe
    args = table.parse(argv)
    harness = Harness(args.data, runs, args.protocol, args.train_config,
                      args.train_set + ["optim.threads=1"])
    assert source["train_corpora"] == ["bb", "cc"]
    assert source["recipe"]["train"] == recipe(harness.config(0, ["bb", "cc"]))
    # every clip of the target, labelled or not, is in the adaptation set or held out
    assert source["adaptation_set"]["clips"] + source["unseen"]["clips"] == sizes["aa"]
    assert source["unseen"]["speakers"] == 1 and source["adaptation_set"]["speakers"] == 4
    labelled_clips = sizes["aa"] - 5
    assert sum(source["scores"][p]["count"] for p in table.PARTS) == labelled_clips
    for system in SYSTEMS:
        cell = cells[("aa", system)]
        assert ("guard" in cell) == (system in ("dann", "nnpm", "nnpm_sf")), system
        p = cell["predictions"]
        keep = [i for i, part in enumerate(p["part"]) if part == "adapt"]
        assert cell["scores"]["adapt"]["ua"] == pytest.approx(score(
            np.array(p["reference"])[keep], np.array(p["predicted"])[keep], LABELS).ua)
        if "guard" in cell:
            guard = cell["guard"]
            # the guard compares with the start model: the source-only cell's UA
            assert guard["start_ua"] == pytest.approx(source["scores"]["adapt"]["ua"])
            assert guard["adapted_ua"] == pytest.approx(cell["scores"]["adapt"]["ua"])
            kept = guard["estimate"] == "not worse"
            assert guard["returned_ua"] == pytest.approx(
                guard["adapted_ua"] if kept else guard["start_ua"])
            assert guard["right"] == (kept == (guard["adapted_ua"] >= guard["start_ua"]))
    with_source = cells[("aa", "nnpm")]["guard"]["report"]["checks"]["source_accuracy"]
    source_free = cells[("aa", "nnpm_sf")]["guard"]["report"]["checks"]["source_accuracy"]
    assert with_source["passed"] is not None and source_free["passed"] is None
    # the start model carries the exemplar set an export writes, and source-free NNPM reads it
    payload = torch.load(runs / "start" / "lolo-aa-s0.pt", weights_only=True)
    exemplars = payload["extra"]["adaptation_memory"]
    assert set(exemplars["groups"]) == {"bb", "cc"}
    assert cells[("aa", "nnpm_sf")]["source_memory"] == (
        f"source exemplar set, {len(exemplars['exemplars'])} exemplars")


def test_a_second_run_resumes_without_training(measured, monkeypatch):
    root, argv, _ = measured
    before = {p.name: p.read_text() for p in (root / "runs").glob("*.json")}

    def refuse(*_args, **_kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr("tools.start_models.train", refuse)
    monkeypatch.setattr(table, "adapt", refuse)
    monkeypatch.setattr(table.AdaptationTable, "start", refuse)
    assert table.main(argv) == 0
    assert {p.name: p.read_text() for p in (root / "runs").glob("*.json")} == before


@pytest.mark.parametrize("override", [["--set", "nnpm.k=3"],
                                      ["--train-set", "optim.lr=0.001"]])
def test_a_cell_measured_with_another_recipe_is_refused(measured, override):
    _, argv, _ = measured
    with pytest.raises(SystemExit, match="adapt-aa-s0-.*another recipe"):
        table.main([*argv, "--systems", "nnpm", *override])


def test_the_render_shows_the_cells_numbers_and_what_it_lacks(measured):
    root, argv, _ = measured
    runs = root / "runs"
    # a second selection target's cells: aa's, each UA moved by a different amount
    for i, system in enumerate(SYSTEMS):
        cell = json.loads((runs / f"adapt-aa-s0-{system}.json").read_text())
        cell["target"] = "bb"
        for part in table.PARTS:
            cell["scores"][part]["ua"] = 0.2 + 0.07 * i + (0.05 if part == "unseen" else 0)
        if "guard" in cell:
            cell["guard"].update(start_ua=0.5, adapted_ua=0.3, returned_ua=0.3, right=False,
                                 estimate="not worse")
        (runs / f"adapt-bb-s0-{system}.json").write_text(json.dumps(cell))
    out = root / "rendered.md"
    assert table.main(["--render", "--runs", str(runs), "--protocol", argv[3],
                       "--out", str(out)]) == 0
    text = out.read_text()
    cells = cells_of(runs)

    def ua(target, system, part="adapt"):
        return cells[(target, system)]["scores"][part]["ua"]

    def row(title: str, section: str) -> list[str]:
        """The cells after the first of the row starting with `title` in `section`."""
        lines = text.split(section)[1].splitlines()
        line = next(line for line in lines if line.startswith(f"| {title} |"))
        return [c.strip() for c in line.strip().strip("|").split("|")][1:]

    per_target = row("aa", "## Per target: UA %, adaptation set")
    assert per_target[1:1 + len(SYSTEMS)] == [f"{100 * ua('aa', s):.1f}" for s in SYSTEMS]
    means = row("**selection mean**", "## Per target: UA %, adaptation set")
    assert means[1:1 + len(SYSTEMS)] == [
        f"{100 * np.mean([ua('aa', s), ua('bb', s)]):.1f}" for s in SYSTEMS]
    unseen = row("**selection mean**", "## Per target: UA %, speakers held out")
    assert unseen[1:1 + len(SYSTEMS)] == [
        f"{100 * np.mean([ua('aa', s, 'unseen'), ua('bb', s, 'unseen')]):.1f}" for s in SYSTEMS]
    nnpm = row(TITLES["nnpm"], "## By role")
    gain = np.mean([ua(t, "nnpm") - ua(t, "source") for t in ("aa", "bb")])
    assert nnpm[:2] == [f"{100 * np.mean([ua('aa', 'nnpm'), ua('bb', 'nnpm')]):.1f}",
                        f"{100 * gain:+.1f}"]
    assert nnpm[2] == "—"  # cc, the confirmation target, is not measured

    guards = [cells[(t, "nnpm_sf")]["guard"] for t in ("aa", "bb")]
    right = sum(g["right"] for g in guards)
    harm = sum(g["returned_ua"] < g["start_ua"] - 0.01 for g in guards)
    guard_row = row(TITLES["nnpm_sf"], "## The do-no-harm guard")
    assert guard_row[:3] == ["selection", "2", f"{right} ({right / 2:.0%})"]
    assert guard_row[-1] == f"{harm}" and harm >= 1  # bb's returned model lost 20 points
    assert "**Partial table**: 6 of 18 cells" in text
    assert "cc source (seed 0)" in text and "aa source (seed" not in text


def test_confusion_counts_reference_rows_and_predicted_columns(measured, capsys):
    references = np.array([0, 0, 1, 2, 2, 2])
    predictions = np.array([0, 1, 1, 0, 2, 2])
    matrix = adaptation_confusion.confusion(references, predictions, 3)
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    text = adaptation_confusion.render(matrix, ("a", "b", "c"))
    assert "| a | 1 | 1 | 0 | 50% |" in text
    assert "| c | 1 | 0 | 2 | 67% |" in text
    # recalls 1/2, 1, 2/3
    assert text.endswith("UA of the summed matrix 72.2%")
    # from the table's cells: the summed matrix of one seed is the cell's confusion
    root, _, _ = measured
    assert adaptation_confusion.main(["--runs", str(root / "runs"), "--target", "aa",
                                      "--systems", "nnpm"]) == 0
    cell = cells_of(root / "runs")[("aa", "nnpm")]
    expected = adaptation_confusion.render(np.array(cell["scores"]["adapt"]["confusion"]),
                                           LABELS)
    assert expected in capsys.readouterr().out


def test_package_scores_classifier_way_is_the_tables_prediction_and_fusion_follows_the_bank():
    from edge_ser_export.config import ExportConfig
    from edge_ser_export.memory_bank import build_memory_bank, clip_embeddings
    from edge_ser_export.sweep import pooled_whole_clips
    from edge_ser_train.inference import predict, reestimate_bn_statistics
    from edge_ser_train.model import EmotionModel, ModelConfig

    torch.manual_seed(0)
    model = EmotionModel(ModelConfig(channels=8, dilations=(1,), embedding_dim=8), 64, 4).eval()
    rng = np.random.default_rng(0)
    feats = [rng.normal(2.0, 3.0, (int(rng.integers(40, 90)), 64)).astype(np.float32)
             for _ in range(40)]
    reestimate_bn_statistics(model, feats)  # running statistics far from the initial ones
    labels = ("a", "b", "c", "d")
    table_predictions = predict(model, feats)
    references = table_predictions.copy()
    references[:10] = (references[:10] + 1) % 4  # a quarter wrong whatever the class
    bank = build_memory_bank(clip_embeddings(model, feats), rng.integers(0, 4, 40), labels,
                             ExportConfig().memory_bank)
    pooled = pooled_whole_clips(model, feats)

    package_scores = adaptation_package_scores
    cfg = ExportConfig()
    uas = package_scores.head_uas(package_scores.package_scorer(model, bank, cfg), pooled,
                                  references, labels)
    assert uas["classifier"] == pytest.approx(score(references, table_predictions, labels).ua)
    # the fused way is the classifier at weight 0 and the memory bank at weight 1
    for weight, way in ((0.0, "classifier"), (1.0, "memory")):
        fused_cfg = dataclasses.replace(cfg, fusion=dataclasses.replace(cfg.fusion,
                                                                        memory_weight=weight))
        at = package_scores.head_uas(package_scores.package_scorer(model, bank, fused_cfg),
                                     pooled, references, labels)
        assert at["fused"] == pytest.approx(uas[way])
    assert uas["memory"] != pytest.approx(uas["classifier"])  # the bank is a second opinion


def test_package_scores_start_from_the_tables_start_model(measured, capsys):
    root, argv, _ = measured
    i = argv.index("--out")
    argv = argv[:i] + argv[i + 2:]
    assert adaptation_package_scores.main([*argv, "--systems", "source", "nnpm_sf"]) == 0
    lines = capsys.readouterr().out.splitlines()
    source = next(line for line in lines if line.startswith("aa seed 0 source:"))
    cell = cells_of(root / "runs")[("aa", "source")]
    # the classifier way of the start model is the table's source-only prediction
    assert f"classifier {100 * cell['scores']['adapt']['ua']:.1f}," in source
    assert any(line.startswith("aa seed 0 nnpm_sf:") for line in lines)
