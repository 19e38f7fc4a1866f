"""The source exemplar set of a package (adaptation_memory.npz): its size limit, INT8 rows, the
loader's checks, and NNPM without source audio building its memory from it."""

import pytest

pytest.importorskip("torch", reason="needs torch: the [train] extra")

import json

import numpy as np
import torch
from test_adapt import ADAPT, tiny_checkpoint, write_recordings
from test_export import LABELS, clips, export_config, small_model

from edge_ser import adaptation_memory
from edge_ser.config import load_config
from edge_ser.package import PackageError, file_entry, load_package, write_manifest
from edge_ser_export import steps
from edge_ser_export.adaptation_memory import (
    build_exemplars,
    build_within_limit,
    checkpoint_entry,
    npz_bytes,
    save,
)
from edge_ser_export.cli import main
from edge_ser_export.config import AdaptationMemoryConfig, ExportConfig
from edge_ser_train.memory import SourceMemory
from edge_ser_train.trainer import load_checkpoint, save_checkpoint


def source_embeddings(corpora: int, per_cell: int, dim: int, seed: int = 0):
    """Clip embeddings (n, dim), classes (n,) and corpus names (n,), every cell `per_cell`."""
    rng = np.random.default_rng(seed)
    cells = [(f"c{g}", k) for g in range(corpora) for k in range(len(LABELS))]
    emb = np.concatenate([rng.normal(k, 1.0, (per_cell, dim)) + g for g, (_, k) in
                          enumerate(cells)])
    targets = np.repeat([k for _, k in cells], per_cell)
    names = [name for name, _ in cells for _ in range(per_cell)]
    return emb, targets, names


def test_int8_rows_round_trip_within_half_a_step_and_keep_their_direction():
    rows = np.random.default_rng(1).normal(size=(200, 128))
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    q, scales = adaptation_memory.quantise_rows(rows)
    back = adaptation_memory.dequantise_rows(q, scales)
    assert q.dtype == np.int8 and np.abs(q).max() == adaptation_memory.INT8_MAX
    assert np.all(np.abs(back - rows) <= scales[:, None] / 2 + 1e-7)
    cosine = np.sum(adaptation_memory.unit_exemplars({"exemplars": q, "scales": scales})
                    * rows, axis=1)
    assert cosine.min() > 0.9999


def test_the_set_keeps_the_cells_and_shrinks_until_it_fits_its_byte_limit(tmp_path):
    emb, targets, names = source_embeddings(corpora=3, per_cell=40, dim=128)
    cfg = AdaptationMemoryConfig()
    arrays, per_cell = build_within_limit(emb, targets, names, {"c0": "de"}, LABELS, cfg)
    full = cfg.per_class_per_language
    assert per_cell == full and len(arrays["exemplars"]) == 3 * 4 * full
    assert arrays["group_counts"].tolist() == [[40] * 4] * 3
    assert list(arrays["group_languages"]) == ["de", "c1", "c2"]
    cells = set(zip(arrays["exemplar_groups"].tolist(), arrays["exemplar_labels"].tolist()))
    assert len(cells) == 12
    small = AdaptationMemoryConfig(max_bytes=20_000)
    arrays, per_cell = build_within_limit(emb, targets, names, {}, LABELS, small)
    save(tmp_path / "set.npz", arrays)
    assert (tmp_path / "set.npz").stat().st_size == npz_bytes(arrays) <= 20_000
    assert 1 <= per_cell < full and len(arrays["exemplars"]) == 12 * per_cell
    # one row more per cell would not have fitted
    assert npz_bytes(build_exemplars(emb, targets, names, {}, LABELS, small, per_cell + 1)) \
        > 20_000
    # a corpus' class with fewer clips keeps them all (sampled rows are the clips' own)
    few = AdaptationMemoryConfig(selection="sample")
    arrays = build_exemplars(emb[:45], targets[:45], names[:45], {}, LABELS, few)
    assert np.bincount(arrays["exemplar_labels"]).tolist() == [full, 5]


def test_at_default_settings_five_corpora_fit_the_default_limit():
    emb, targets, names = source_embeddings(corpora=5, per_cell=40, dim=128)
    cfg = AdaptationMemoryConfig()
    arrays, per_cell = build_within_limit(emb, targets, names, {}, LABELS, cfg)
    assert per_cell == cfg.per_class_per_language and npz_bytes(arrays) <= cfg.max_bytes


@pytest.fixture(scope="module")
def package_with_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("pkg") / "with_set"
    feats = clips(24, seed=3)
    targets = np.arange(len(feats)) % len(LABELS)
    corpora = ["emodb" if i < 12 else "urdu" for i in range(len(feats))]
    steps.write_package(small_model("tcn"), root, LABELS, export_config(), feats[:12], feats,
                        targets, provenance={}, memory_corpora=corpora)
    return root


def test_export_writes_the_set_into_the_manifest_and_leaves_the_bank_alone(package_with_set):
    package = load_package(package_with_set)
    section = package.manifest["adaptation_memory"]
    assert section["file"] in package.manifest["files"]
    assert section["groups"] == ["emodb", "urdu"] and section["exemplars"] == 24
    with np.load(package.path(section["file"]), allow_pickle=False) as data:
        assert data["exemplars"].dtype == np.int8 and data["exemplars"].shape == (24, 8)
    with np.load(package.path("memory_bank.npz"), allow_pickle=False) as bank:
        assert bank["centroids"].shape[0] == 2 * len(LABELS)  # the runtime's bank, as before
    off = load_config(ExportConfig, None, ["adaptation_memory.enabled=false"])
    assert steps.write_adaptation_memory(package_with_set, np.zeros((4, 8)), np.arange(4),
                                         ["x"] * 4, {}, LABELS, off) is None


def test_the_loader_refuses_a_changed_or_inconsistent_set(package_with_set, tmp_path):
    import shutil

    root = tmp_path / "pkg"
    shutil.copytree(package_with_set, root)
    manifest = json.loads((root / "model.json").read_text())
    name = manifest["adaptation_memory"]["file"]
    with np.load(root / name, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["exemplars"] = arrays["exemplars"].copy()
    arrays["exemplars"][0, 0] ^= 1
    save(root / name, arrays)  # same size, other bytes
    with pytest.raises(PackageError, match=r"files\.adaptation_memory\.npz\.sha256"):
        load_package(root)
    arrays["labels"] = np.asarray(["w", "x", "y", "z"])
    save(root / name, arrays)
    manifest["files"][name] = file_entry(root, name)  # re-signed, but for other classes
    write_manifest(root, manifest)
    with pytest.raises(PackageError, match="adaptation_memory.labels"):
        load_package(root)
    del manifest["files"][name]
    write_manifest(root, manifest)
    with pytest.raises(PackageError, match="adaptation_memory.file.*no sha256"):
        load_package(root)


def test_source_free_adapt_builds_its_memory_from_the_set_and_carries_it(tmp_path, capsys):
    write_recordings(tmp_path / "calls", n_files=6)
    tiny_checkpoint(tmp_path / "bank.pt", with_bank=True)
    model, cfg, payload = load_checkpoint(tmp_path / "bank.pt")
    emb, targets, names = source_embeddings(corpora=2, per_cell=6, dim=8)
    arrays = build_exemplars(emb, targets, names, {}, tuple(payload["labels"]),
                             AdaptationMemoryConfig(per_class_per_language=3))
    memory = SourceMemory.from_exemplars(arrays, 4)
    assert len(memory) == 24 and memory.fixed and memory.labels_through_centroids
    assert torch.allclose(memory.slots.norm(dim=1), torch.ones(24))
    assert not SourceMemory.from_bank(payload["extra"]["memory_bank"] | {
        "centroids": payload["extra"]["memory_bank"]["centroids"].numpy(),
        "centroid_labels": payload["extra"]["memory_bank"]["centroid_labels"].numpy()},
        4).labels_through_centroids
    extra = {**payload["extra"], "adaptation_memory": checkpoint_entry(arrays)}
    from edge_ser_train.trainer import TrainResult

    save_checkpoint(TrainResult(model, tuple(payload["labels"]), [], 0.0), cfg,
                    tmp_path / "start.pt", extra=extra)
    out = tmp_path / "adapted"
    assert main([*ADAPT, "--target", str(tmp_path / "calls"), "--out", str(out),
                 "--model", str(tmp_path / "start.pt"), "--set", "optim.epochs=1",
                 "--set", "optim.threads=1", "--set", "target.min_segments=4",
                 "--export-set", "gate.min_agreement=0.5"]) == 0
    record = json.loads((out / "adaptation.json").read_text())
    assert record["source"]["memory"] == "the model's source exemplar set (24 exemplars of " \
        "c0, c1)"
    # the adapted package carries the start model's set unchanged, and says whose space it is
    package = load_package(out)
    assert "carried unchanged from the start model" in package.manifest[
        "adaptation_memory"]["origin"]
    with np.load(out / "adaptation_memory.npz", allow_pickle=False) as data:
        assert all(np.array_equal(data[k], arrays[k]) for k in arrays)
    # and a package with a set adapts from it again, with no source audio
    again = tmp_path / "again"
    assert main([*ADAPT, "--target", str(tmp_path / "calls"), "--out", str(again),
                 "--model", str(out), "--set", "optim.epochs=1", "--set",
                 "target.min_segments=4", "--export-set", "gate.min_agreement=0.5"]) == 0
    assert "24 exemplars" in json.loads((again / "adaptation.json").read_text())[
        "source"]["memory"]
    # whose space the set is in stays traceable over a chain of adaptations
    assert "; there: carried unchanged from the start model " in load_package(again).manifest[
        "adaptation_memory"]["origin"]
