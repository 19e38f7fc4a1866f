"""The adaptation table's bookkeeping: runs of single seeds merge into one table whose means
and comparisons come from the numbers given; and the arithmetic of the tools beside it
(confusion matrices, the package's ways of scoring). No training here."""

from __future__ import annotations

import pytest

pytest.importorskip("torch", reason="needs torch: the [train] extra")

import dataclasses
import importlib.util
import sys
from pathlib import Path

import numpy as np
import torch

from edge_ser.metrics import score

TOOLS = Path(__file__).resolve().parent.parent / "tools"


def tool(name: str):
    """The module of `tools/<name>.py`, loaded from its path (tools are scripts, not a
    package)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


table = tool("make_adaptation_results")


def raw(seed: int, ua: dict[str, float]) -> dict:
    """One seed's raw numbers: every setting, every system at the UA given per system."""
    main = {table.name_of(s): {system: [{"adapt_ua": value + 0.01 * seed, "adapt_wa": value,
                                         "unseen_ua": value, **({"pseudo_ua": 0.3}
                                                                if system == "nnpm" else {})}]
                               for system, value in ua.items()}
            for s in table.SETTINGS}
    return {"seeds": [seed], "main": main, "ablations": {},
            "pseudo_start": {table.name_of(s): [0.35] for s in table.SETTINGS}}


def test_seeds_run_apart_merge_into_one_table():
    ua = {"source": 0.30, "source_bn": 0.31, "dann": 0.32, "dann_mixed": 0.29, "nnpm": 0.40,
          "nnpm_sf": 0.36, "peer": 0.33}
    merged = table.merge([raw(0, ua), raw(1, ua), raw(2, ua)])
    assert merged["seeds"] == [0, 1, 2]
    name = table.name_of(table.SETTINGS[0])
    assert [r["adapt_ua"] for r in merged["main"][name]["nnpm"]] == pytest.approx(
        [0.40, 0.41, 0.42])
    text = table.render(merged, ["python tools/make_adaptation_results.py --seeds 0"],
                        "table.yaml", None, ["| urdu | 400 | 29 | 96% | 26 |"])
    assert "seeds 0, 1, 2" in text
    # nnpm 41.0 mean vs source 31.0 and dann 33.0 (each +1 per seed, mean seed +1)
    assert "NNPM's mean target UA is +10.0 points from source-only and +8.0 from DANN" in text
    assert "NNPM is above source-only in 9 of 9 settings" in text
    assert "| emodb->urdu | 31.0 ± 0.8 |" in text  # source-only, mean ± sd over the seeds
    assert "| **mean of all** | 31.0 | 32.0 | 33.0 | 30.0 | 41.0 | 37.0 | 34.0 |" in text
    assert "| urdu | 400 | 29 | 96% | 26 |" in text


def test_a_later_run_replaces_the_same_seed_setting_and_system():
    ua = {"source": 0.30, "nnpm": 0.40, "nnpm_sf": 0.36}
    full = [raw(0, ua), raw(1, ua)]
    rerun = raw(1, {"source": 0.30, "nnpm_sf": 0.50})  # seed 1's source-free column re-run
    name = table.name_of(table.SETTINGS[0])
    rerun["main"] = {name: rerun["main"][name]}  # and only for the first setting
    merged = table.merge([*full, rerun])
    assert merged["seeds"] == [0, 1]
    cell = merged["main"][name]
    assert [r["adapt_ua"] for r in cell["nnpm_sf"]] == pytest.approx([0.36, 0.51])
    assert [r["adapt_ua"] for r in cell["nnpm"]] == pytest.approx([0.40, 0.41])  # kept
    other = merged["main"][table.name_of(table.SETTINGS[1])]
    assert [r["adapt_ua"] for r in other["nnpm_sf"]] == pytest.approx([0.36, 0.37])


def test_a_system_missing_from_a_setting_is_left_out_of_the_columns():
    ua = {"source": 0.30, "dann": 0.32, "nnpm": 0.28}
    part = raw(0, ua)
    del part["main"][table.name_of(table.SETTINGS[-1])]["dann"]
    text = table.render(table.merge([part]), ["cmd"], "table.yaml", None)
    header = next(line for line in text.splitlines() if line.startswith("| setting |"))
    assert "DANN" not in header and "NNPM" in header
    assert "NNPM against the baselines" not in text  # needs source-only and DANN everywhere


def test_a_column_measured_on_fewer_seeds_says_so_in_its_title():
    runs = [raw(0, {"source": 0.30, "nnpm": 0.40}), raw(1, {"source": 0.30, "nnpm": 0.40}),
            raw(2, {"source": 0.30})]
    text = table.render(table.merge(runs), ["cmd"], "table.yaml", None)
    header = next(line for line in text.splitlines() if line.startswith("| setting |"))
    assert header == "| setting | source-only | NNPM (2 of 3 seeds) |"


def test_a_render_can_keep_only_some_settings_and_columns():
    runs = [raw(0, {"source": 0.30, "dann": 0.32, "nnpm": 0.40, "peer": 0.33}),
            raw(1, {"source": 0.30, "dann": 0.32, "nnpm": 0.40, "peer": 0.33})]
    pair = table.name_of(table.PAIRS[0])
    runs[0]["ablations"] = {pair: {"single": [{"adapt_ua": 0.5, "unseen_ua": 0.5}]},
                            table.name_of(table.LOLO[0]): {"single": [{"adapt_ua": 0.6}]}}
    cut = table.restrict(table.merge(runs), [pair], ["source", "nnpm"])
    assert list(cut["main"]) == [pair] and list(cut["pseudo_start"]) == [pair]
    assert list(cut["main"][pair]) == ["source", "nnpm"]
    assert list(cut["ablations"]) == [pair]
    text = table.render(cut, ["cmd"], "table.yaml", None)
    header = next(line for line in text.splitlines() if line.startswith("| setting |"))
    assert header == "| setting | source-only | NNPM |"
    assert "mean of the 3 LOLO" not in text
    everything = table.restrict(table.merge(runs), [], None)
    assert len(everything["main"]) == len(table.SETTINGS)
    assert list(everything["main"][pair]) == ["source", "dann", "nnpm", "peer"]


def test_a_render_keeps_the_ablation_rows_named_in_their_order():
    cells = {"single": [{"adapt_ua": 0.5, "unseen_ua": 0.4}],
             "k3": [{"adapt_ua": 0.6, "unseen_ua": 0.4}],
             "k30": [{"adapt_ua": 0.7, "unseen_ua": 0.4}]}
    part = raw(0, {"source": 0.30, "dann": 0.32})
    part["ablations"] = {table.name_of(p): cells for p in table.PAIRS}
    order = ["k30", "single"]
    cut = table.restrict(table.merge([part]), [table.name_of(p) for p in table.PAIRS],
                         None, order)
    assert set(cut["ablations"][table.name_of(table.PAIRS[0])]) == {"k30", "single"}
    text = table.render(cut, ["cmd"], "table.yaml", None, variants=order)
    rows = [line.split(" |")[0] for line in text.split("## NNPM ablations")[1].splitlines()
            if line.startswith("| ") and not line.startswith("| variant")]
    assert rows == ["| k = 30", "| single pseudo-label"]
    assert "the first row is NNPM as configured" not in text  # no NNPM column here


def test_the_table_runs_the_defaults_but_for_its_source_models_architecture():
    """Every cell's base is the defaults with the source-only models trained without the
    running input normalisation; NNPM's column is that base."""
    from edge_ser.config import load_config
    from edge_ser_train.adapt_config import AdaptConfig

    config = table.ROOT / "configs/adapt/table.yaml"
    base = load_config(AdaptConfig, config)
    default = AdaptConfig()
    assert base == dataclasses.replace(
        default, model=dataclasses.replace(default.model, norm_window_s=0.0))
    assert load_config(AdaptConfig, config, table.SYSTEMS["nnpm"][0]) == base
    source = load_config(AdaptConfig, config, table.SOURCE_TRAINING)
    assert (source.method, source.optim.epochs, source.optim.warmup_epochs) == ("source", 20, 2)


def test_each_variant_is_one_change_to_nnpm_as_it_was_measured_against():
    """An ablation differs from NNPM as configured in the one setting its name says, a
    candidate from NNPM as configured before 2 centroids per class became the default
    (`CANDIDATE_BASE`); the adopted ones are the default itself."""
    from edge_ser.config import load_config, to_dict
    from edge_ser_train.adapt_config import AdaptConfig

    config = table.ROOT / "configs/adapt/table.yaml"
    nnpm = table.SYSTEMS["nnpm"][0]

    def flat(cfg) -> dict:
        d = to_dict(cfg)
        return {**{f"nnpm.{k}": v for k, v in d["nnpm"].items()},
                **{f"optim.{k}": v for k, v in d["optim"].items()}}

    now = flat(load_config(AdaptConfig, config, nnpm))
    before = flat(load_config(AdaptConfig, config, nnpm + table.CANDIDATE_BASE))

    def changed(base, overrides):
        cfg = flat(load_config(AdaptConfig, config, nnpm + overrides))
        return {k: v for k, v in cfg.items() if base[k] != v}

    assert now["nnpm.label_centroids"] == 2 and before["nnpm.label_centroids"] == 4
    for name, (overrides, _) in table.ABLATIONS.items():
        assert len(changed(now, overrides)) == 1, name
        assert changed(now, overrides).get("nnpm.k", 0) < 8, name  # k >= 8 votes as 10
    for name, (overrides, _) in table.CANDIDATES.items():
        assert len(changed(before, overrides)) == 1, name
    assert changed(now, table.ABLATIONS["centroids4"][0]) == {"nnpm.label_centroids": 4}
    assert changed(now, table.ABLATIONS["no_memory_loss"][0]) == {"nnpm.memory_weight": 0.0}
    assert changed(before, table.CANDIDATES["centroids8"][0]) == {"nnpm.label_centroids": 8}
    assert all(changed(now, overrides) == {} for overrides, _ in table.ADOPTED.values())
    assert changed(now, table.MOOT["k30"][0]) == {"nnpm.k": 30}  # 30 and 10 both take all 8
    assert len(table.VARIANTS) == (len(table.ABLATIONS) + len(table.MOOT) + len(table.ADOPTED)
                                   + len(table.CANDIDATES))  # no name hides another


def test_an_experiment_configures_each_system_from_the_file_as_it_was_read(tmp_path):
    """A system's configuration is the one read at the start plus its overrides, equal to
    loading the file with them, and an edit of the file during a run does not reach it."""
    from types import SimpleNamespace

    from edge_ser.config import load_config
    from edge_ser_train.adapt_config import AdaptConfig

    config = tmp_path / "table.yaml"
    config.write_text((table.ROOT / "configs/adapt/table.yaml").read_text())
    overrides = table.ABLATIONS["tau0.05"][0]
    experiment = SimpleNamespace(base=load_config(AdaptConfig, config, ["optim.threads=1"]))
    expected = load_config(AdaptConfig, config, ["optim.threads=1", *overrides, "optim.seed=3"])
    assert table.Experiment.config(experiment, 3, overrides) == expected
    config.write_text(config.read_text().replace("norm_window_s: 0.0", "norm_window_s: 0.5"))
    assert load_config(AdaptConfig, config).model.norm_window_s == 0.5
    assert table.Experiment.config(experiment, 3, []).model.norm_window_s == 0.0


def test_source_cache_key_follows_the_training_configuration_and_clips():
    from types import SimpleNamespace

    from edge_ser.config import load_config
    from edge_ser_train.adapt_config import AdaptConfig

    clips = [SimpleNamespace(corpus="emodb", path=Path("a.wav"), label="sad")]
    base = load_config(AdaptConfig, None, table.SOURCE_TRAINING + ["optim.seed=0"])
    key = table.source_cache_key(base, clips)
    assert key == table.source_cache_key(base, list(clips))
    other_seed = load_config(AdaptConfig, None, table.SOURCE_TRAINING + ["optim.seed=1"])
    assert table.source_cache_key(other_seed, clips) != key
    more = clips + [SimpleNamespace(corpus="emodb", path=Path("b.wav"), label="angry")]
    assert table.source_cache_key(base, more) != key
    other_nnpm = load_config(AdaptConfig, None,
                             table.SOURCE_TRAINING + ["optim.seed=0", "nnpm.k=3"])
    assert table.source_cache_key(other_nnpm, clips) == key


def test_confusion_counts_reference_rows_and_predicted_columns():
    adaptation_confusion = tool("adaptation_confusion")

    references = np.array([0, 0, 1, 2, 2, 2])
    predictions = np.array([0, 1, 1, 0, 2, 2])
    matrix = adaptation_confusion.confusion(references, predictions, 3)
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    text = adaptation_confusion.render(matrix, ("a", "b", "c"))
    assert "| a | 1 | 1 | 0 | 50% |" in text
    assert "| c | 1 | 0 | 2 | 67% |" in text
    # recalls 1/2, 1, 2/3
    assert text.endswith("UA of the summed matrix 72.2%")


def test_package_scores_classifier_way_is_the_tables_prediction_and_fusion_follows_the_bank():
    package_scores = tool("adaptation_package_scores")
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
