"""The multigate ablation study (tools/studies/multigate_ablation.py) runs its variants, nests the
head search inside the training speakers, resumes, and renders its table."""

import csv
import json

import pytest

pytest.importorskip("torch", reason="needs torch: the [train] extra")

from test_training import make_toy_corpus  # noqa: E402

from tools.studies import multigate_ablation  # noqa: E402

TINY = ("data.labels=[calm, excited]", "augment.views=1", "model.channels=16",
        "model.dilations=[1, 2]", "model.embedding_dim=16", "model.norm_window_s=0",
        "model.multigate.branch_channels=8", "model.multigate.ge2e_weights=random",
        "optim.epochs=1", "optim.batch_size=8", "optim.crop_s=1.0")


def toy_language(folder, corpus, language):
    make_toy_corpus(folder, n_speakers=8, per_class=3)
    path = folder / "labels.csv"
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        row["corpus"], row["language"] = corpus, language
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


@pytest.mark.slow
def test_variants_are_measured_resumed_and_rendered(tmp_path):
    (tmp_path / "data").mkdir()
    for corpus, language in (("xa", "xx"), ("xb", "yy")):
        toy_language(tmp_path / "data" / corpus, corpus, language)
    runs = tmp_path / "runs"
    extra = TINY + (f"data.cache_dir={tmp_path / 'cache'}",)
    study = multigate_ablation.Study(tmp_path / "data", runs, None, threads=1,
                                     corpora=("xa", "xb"), extra=extra, log=lambda _: None)

    full = study.measure("full", 0, ["test"])
    assert set(full["scores"]) == {"xa", "xb"}
    assert set(full["scores"]["xa"]) == {"language", "shared"}
    total = sum(map(sum, full["scores"]["xa"]["language"]["confusion"]))
    # the held-out speakers of xa, every one scored once per route
    assert total == sum(map(sum, full["scores"]["xa"]["shared"]["confusion"])) > 0

    # one shared gate: the language gates are never trained, so only the shared route is scored
    shared = study.measure("shared_gate", 0, ["test"])
    assert set(shared["scores"]["xa"]) == {"shared"}
    assert "model.multigate.language_dropout=1.0" in shared["overrides"]

    searched = study.measure("searched_heads", 0, ["test"])
    heads = searched["search"]["languages"]
    assert set(heads) == {"xx", "yy"} and all(h["evaluations"] > 1 for h in heads.values())
    assert any(o.startswith("model.multigate.language_heads=[xx=") for o in searched["overrides"])

    # a measured cell is read back, not measured again; other settings are refused
    (runs / "full-s0.json").write_text(json.dumps({**full, "marker": 1}))
    assert study.measure("full", 0, ["test"])["marker"] == 1
    other = multigate_ablation.Study(tmp_path / "data", runs, None, threads=1,
                                     corpora=("xa", "xb"), extra=extra + ("optim.lr=0.01",))
    with pytest.raises(SystemExit, match="other settings"):
        other.measure("full", 0, ["test"])

    table = multigate_ablation.render(runs, ("xa", "xb"))
    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines()}
    assert {"full", "shared_gate", "searched_heads"} <= set(rows)
    assert "xx=" in table and "search cost" in table
    # "vs full" on the shared route: the variant's mean UA less full's, same seed
    def shared_mean(rec):
        return 100 * sum(rec["scores"][c]["shared"]["ua"] for c in ("xa", "xb")) / 2

    full = json.loads((runs / "full-s0.json").read_text())
    assert rows["shared_gate"].rstrip(" |").split(" | ")[-1] == \
        f"{shared_mean(shared) - shared_mean(full):+.1f}"
