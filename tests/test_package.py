"""The model package loader refuses every mismatch with a message naming the field; the bundled
package loads and recognises real emotional speech."""

import pytest

pytest.importorskip("torch", reason="needs torch: the [train] extra")

import json
import shutil

import numpy as np
import onnx
from test_export import small_package  # noqa: F401  (module fixture)

from edge_ser import contract
from edge_ser.backends import create_backend
from edge_ser.package import (
    DEFAULT_PACKAGE,
    FORMAT_VERSION,
    PackageError,
    bundled_packages,
    file_entry,
    load_package,
)
from edge_ser.scoring import WindowScorer, encode_clip, stats_pool
from edge_ser.trim import clip_log_mel
from edge_ser_train.corpus import labelled, read_corpus, speaker_split


@pytest.fixture
def package_copy(small_package, tmp_path):  # noqa: F811
    _, package = small_package
    root = tmp_path / "pkg"
    shutil.copytree(package.root, root)
    return root


def edit_manifest(root, change) -> None:
    path = root / "model.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def rehash(root, name) -> None:
    edit_manifest(root, lambda m: m["files"].__setitem__(name, file_entry(root, name)))


def test_a_changed_byte_is_refused(package_copy):
    path = package_copy / "encoder.int8.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(PackageError, match=r"files\.encoder\.int8\.onnx\.sha256: mismatch"):
        load_package(package_copy)


def test_a_truncated_file_is_refused(package_copy):
    path = package_copy / "head.npz"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(PackageError, match=r"files\.head\.npz\.bytes"):
        load_package(package_copy)


def test_a_missing_file_is_refused(package_copy):
    (package_copy / "memory_bank.npz").unlink()
    with pytest.raises(PackageError, match=r"files\.memory_bank\.npz: listed .* missing"):
        load_package(package_copy)


def test_a_wrong_label_count_is_refused(package_copy):
    edit_manifest(package_copy, lambda m: m.__setitem__("labels", ["angry", "happy", "sad"]))
    with pytest.raises(PackageError, match=r"labels: 3 labels, but the head's classifier"):
        load_package(package_copy)


def test_a_wrong_sample_rate_is_refused(package_copy):
    edit_manifest(package_copy, lambda m: m["audio"].__setitem__("sample_rate_hz", 8000))
    with pytest.raises(PackageError, match=r"audio\.sample_rate_hz: is 8000, expected 16000"):
        load_package(package_copy)


def test_another_format_version_is_refused(package_copy):
    edit_manifest(package_copy, lambda m: m.__setitem__("format_version", FORMAT_VERSION + 1))
    with pytest.raises(PackageError, match="format_version"):
        load_package(package_copy)


def test_state_shapes_must_match_the_graph(package_copy):
    def widen(manifest):
        manifest["encoder"]["state"][1]["shape"][-1] += 1
    edit_manifest(package_copy, widen)
    with pytest.raises(PackageError, match=r"state_in_1|encoder\.initial_state"):
        load_package(package_copy)


def test_onnx_metadata_must_match_the_manifest(package_copy):
    path = package_copy / "encoder.onnx"
    model = onnx.load(str(path))
    for prop in model.metadata_props:
        if prop.key == contract.METADATA_PREFIX + "chunk_frames":
            prop.value = str(int(prop.value) + 2)
    onnx.save(model, str(path))
    rehash(package_copy, "encoder.onnx")
    with pytest.raises(PackageError, match=r"encoder\.files\.fp32\.metadata\.chunk_frames"):
        load_package(package_copy)


def test_pickled_arrays_are_refused(package_copy):
    with np.load(package_copy / "head.npz") as data:
        arrays = {k: data[k] for k in data.files}
    arrays["projection_bias"] = np.array([{"code": "runs on load"}], dtype=object)
    np.savez(package_copy / "head.npz", **arrays)
    rehash(package_copy, "head.npz")
    with pytest.raises(PackageError, match="without pickles"):
        load_package(package_copy)


def test_not_a_package(tmp_path):
    with pytest.raises(PackageError, match="model.json: missing"):
        load_package(tmp_path)
    with pytest.raises(PackageError, match="not a model package directory"):
        load_package(tmp_path / "nowhere")


def test_a_bundled_package_is_found_by_name_unless_a_folder_of_that_name_is_here(
        tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert "default" in bundled_packages()
    assert load_package("default").root == DEFAULT_PACKAGE.resolve()
    with pytest.raises(PackageError, match="bundled packages, by name: .*default"):
        load_package("no_such_package")
    (tmp_path / "default").mkdir()  # a folder here wins over the bundled name
    with pytest.raises(PackageError, match="model.json: missing"):
        load_package("default")


def test_the_bundled_package_loads_by_default():
    package = load_package()
    assert package.root == DEFAULT_PACKAGE.resolve()
    assert package.labels == contract.DEFAULT_LABELS
    assert package.chunk_frames % package.stride == 0
    total = sum(p.stat().st_size for p in DEFAULT_PACKAGE.rglob("*") if p.is_file())
    assert total <= 2_000_000
    assert (DEFAULT_PACKAGE / "memory_bank.npz").stat().st_size <= 32 * 1024


@pytest.mark.corpora
def test_the_bundled_package_recognises_real_speech(shared_data):
    """Acted German speech through the runtime path (INT8 encoder, fused scores): the EMO-DB
    speakers of the fixed held-out split (speaker_split(..., 0.2, seed=0)).

    The corpora are not redistributed with the product, so the clips are read from the shared
    data folder."""
    clips = []
    for corpus in ("emodb", "urdu", "turev"):
        clips += labelled(read_corpus(shared_data / corpus))
    _, heldout = speaker_split(clips, 0.2, 0)
    emodb = [c for c in heldout if c.corpus == "emodb"]
    package = load_package()
    backend = create_backend(package, "onnxruntime", "int8")
    scorer = WindowScorer.from_package(package)
    hits = {label: [] for label in package.labels}
    for clip in emodb:
        feats = clip_log_mel(clip.path)
        scores = scorer.score_pooled(stats_pool(encode_clip(backend, feats))[None])
        assert abs(float(scores.probs.sum()) - 1.0) < 1e-5
        hits[clip.label].append(package.labels[int(scores.probs.argmax())] == clip.label)
    recall = {label: float(np.mean(v)) for label, v in hits.items()}
    assert len(emodb) > 40
    assert np.mean(list(recall.values())) >= 0.7, recall  # chance: 0.25
    assert min(recall.values()) >= 0.5, recall  # no class given up
