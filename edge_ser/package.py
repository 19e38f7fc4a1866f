"""The model package: the directory that export writes and every runtime command loads.

    PKG/model.json          the manifest (format version, labels, contract, shapes, sha256 of files)
    PKG/encoder.onnx        fp32 streamable encoder, state as graph inputs and outputs
    PKG/encoder.int8.onnx   the same graph with explicit (QDQ) INT8 quantization
    PKG/head.npz            projection (BatchNorm folded in) and classifier, float32
    PKG/memory_bank.npz     L2-normalised class centroids, float16, with temperature and top-k
    PKG/initial_state.npz   the encoder state before the first chunk (batch 1), float32
    PKG/adaptation_memory.npz  optional: source exemplars (INT8) for `adapt` without source
                            audio (`edge_ser.adaptation_memory`); the runtime never scores with it
    PKG/engines/*.engine    TensorRT engines built on the device that runs them (optional)

`load_package` verifies everything before anything runs: the sha256 and size of every file the
manifest lists, the format version, the audio and feature contract against `edge_ser.contract`,
the label count against the head and memory bank shapes, and the tensor names and shapes of each
ONNX graph against the manifest. A mismatch raises `PackageError` naming the package and the
field. Nothing is unpickled; no torch is imported.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_ser import contract
from edge_ser.atomic_write import write_text_atomic

FORMAT = "edge-ser-model"
FORMAT_VERSION = 1
MANIFEST_NAME = "model.json"
DEFAULT_PACKAGE = Path(__file__).resolve().parent / "models" / "default"

UNFINISHED_MARK = ".staging."
"""In the name of the folder an export assembles a package in (`.<out>.staging.<pid>.<id>`)."""

FAMILIES = ("tcn", "multigate")
"""Model families (the manifest's `family`; absent: tcn). What differs at run time is in
`edge_ser.family`."""

PRECISIONS = ("fp32", "int8")
"""Precisions every package carries as ONNX files (fp16 exists only as TensorRT engines)."""


class PackageError(ValueError):
    """A model package is missing, damaged or inconsistent; the message names the field."""


def audio_contract() -> dict[str, Any]:
    """The audio and feature facts a package must agree with, from `edge_ser.contract`."""
    return {"sample_rate_hz": contract.SAMPLE_RATE_HZ, "window_samples": contract.WINDOW_SAMPLES,
            "hop_samples": contract.HOP_SAMPLES, "n_fft": contract.N_FFT,
            "n_mels": contract.N_MELS, "f_min_hz": contract.F_MIN_HZ,
            "f_max_hz": contract.F_MAX_HZ, "log_floor": contract.LOG_FLOOR,
            "mel_scale": "htk", "window": "periodic_hann"}


@dataclass(frozen=True)
class ModelPackage:
    """A verified model package. Immutable; share one between all streams."""

    root: Path
    manifest: dict
    """Parsed model.json, verified."""
    labels: tuple[str, ...]
    chunk_frames: int
    """Encoder input frames per call, a multiple of `stride`."""
    stride: int
    """Encoder output frames per call = chunk_frames // stride."""
    embedding_channels: int
    """Encoder output channels C (the pooled vector has 2C)."""

    def path(self, name: str) -> Path:
        """A file of the package, by its name relative to the package root."""
        return self.root / name

    @property
    def out_frames(self) -> int:
        return self.chunk_frames // self.stride

    def encoder_path(self, precision: str) -> Path:
        """The ONNX encoder of `precision` ("fp32" or "int8")."""
        files = self.manifest["encoder"]["files"]
        if precision not in files:
            raise PackageError(f"{self.root}: encoder.files has no {precision!r} encoder; "
                               f"available: {', '.join(sorted(files))}")
        return self.path(files[precision])

    def state_specs(self) -> list[dict]:
        """[{"input": name, "output": name, "shape": [..., "batch", ...]}] in state order."""
        return self.manifest["encoder"]["state"]

    def initial_state(self) -> list[np.ndarray]:
        """The state before the first chunk of one stream (batch 1), in state order. Not
        always zeros: e.g. a running-mean input normalisation starts from the training mean."""
        with np.load(self.path(self.manifest["encoder"]["initial_state"]),
                     allow_pickle=False) as data:
            return [data[s["input"]].astype(np.float32) for s in self.state_specs()]


def state_shape(shape: list, batch: int) -> tuple[int, ...]:
    """A manifest shape with the symbolic batch axis replaced by `batch`."""
    return tuple(batch if d == contract.BATCH_DIM else int(d) for d in shape)


def batch_axis(shape: list) -> int:
    """Index of the batch axis of a manifest shape."""
    return list(shape).index(contract.BATCH_DIM)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_entry(root: Path, name: str) -> dict:
    """The manifest entry ({"sha256", "bytes"}) of the file `name` of a package."""
    path = Path(root) / name
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def manifest_text(manifest: dict) -> str:
    """model.json as written."""
    return json.dumps(manifest, indent=2, sort_keys=False) + "\n"


def write_manifest(root: Path, manifest: dict) -> Path:
    """Write model.json atomically, last: after the files it lists are in place and have
    passed every check, since a folder with a model.json loads as a package."""
    target = Path(root) / MANIFEST_NAME
    write_text_atomic(target, manifest_text(manifest))
    target.chmod(0o644)  # readable like the files it describes
    return target


def bundled_packages() -> list[str]:
    """Names of the packages shipped in edge_ser/models (`default`, ...)."""
    return sorted(p.parent.name for p in DEFAULT_PACKAGE.parent.glob(f"*/{MANIFEST_NAME}"))


def package_root(path: str | Path | None) -> Path:
    """The folder of a package: None is the bundled default; a bare name that is no folder here
    but names a bundled package (`--model default`) is that package; anything else a path."""
    if path is None:
        return DEFAULT_PACKAGE.resolve()
    path = Path(path)
    if not path.exists() and len(path.parts) == 1 and path.name in bundled_packages():
        return (DEFAULT_PACKAGE.parent / path.name).resolve()
    return path.resolve()


def load_package(path: str | Path | None = None, manifest: dict | None = None) -> ModelPackage:
    """Load and verify a model package (None: the bundled default package). `manifest`: verify
    this manifest, not yet written, against the files of `path` (an export before its gates)."""
    root = package_root(path)
    if manifest is None:
        manifest = _read_manifest(root)
    check = _Checker(root)
    check.equal("format", manifest.get("format"), FORMAT)
    version = manifest.get("format_version")
    if not isinstance(version, int) or version != FORMAT_VERSION:
        raise check.error("format_version", f"is {version!r}; this edge-ser reads format "
                          f"version {FORMAT_VERSION} (re-export the package with this version)")
    if manifest.get("family", "tcn") not in FAMILIES:
        raise check.error("family", f"is {manifest.get('family')!r}; this edge-ser runs "
                          f"{', '.join(FAMILIES)}")
    _verify_files(check, manifest)
    _verify_audio(check, manifest)
    labels = _verify_labels(check, manifest)
    encoder = check.mapping(manifest, "encoder")
    stride = check.positive_int(encoder, "encoder.stride")
    chunk_frames = check.positive_int(encoder, "encoder.chunk_frames")
    if chunk_frames % stride:
        raise check.error("encoder.chunk_frames", f"{chunk_frames} is not a multiple of the "
                          f"encoder stride {stride}")
    channels = check.positive_int(encoder, "encoder.channels")
    package = ModelPackage(root=root, manifest=manifest, labels=labels,
                           chunk_frames=chunk_frames, stride=stride, embedding_channels=channels)
    _verify_io_shapes(check, package)
    _verify_initial_state(check, package)
    embedding_dim = _verify_head(check, package)
    _verify_memory_bank(check, package, embedding_dim)
    _verify_adaptation_memory(check, package, embedding_dim)
    _verify_fusion(check, manifest)
    for precision in check.mapping(encoder, "encoder.files"):
        _verify_onnx(check, package, precision)
    return package


class _Checker:
    """Builds PackageErrors of the form '<package>: <field>: <problem>'."""

    def __init__(self, root: Path):
        self.root = root

    def error(self, field: str, problem: str) -> PackageError:
        return PackageError(f"{self.root}: {field}: {problem}")

    def equal(self, field: str, value: Any, expected: Any) -> None:
        same = (math.isclose(value, expected, rel_tol=1e-6, abs_tol=0.0)
                if isinstance(expected, float) and isinstance(value, (int, float))
                else value == expected)
        if not same:
            raise self.error(field, f"is {value!r}, expected {expected!r}")

    def mapping(self, parent: dict, field: str) -> dict:
        value = parent.get(field.rsplit(".", 1)[-1])
        if not isinstance(value, dict):
            raise self.error(field, f"missing or not a mapping (got {type(value).__name__})")
        return value

    def positive_int(self, parent: dict, field: str) -> int:
        value = parent.get(field.rsplit(".", 1)[-1])
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise self.error(field, f"must be a positive integer, got {value!r}")
        return value


def _read_manifest(root: Path) -> dict:
    if not root.is_dir():
        raise PackageError(f"{root}: not a model package directory (it does not exist or is a "
                           "file; a package is a folder with a model.json; bundled packages, "
                           f"by name: {', '.join(bundled_packages())})")
    path = root / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if UNFINISHED_MARK in root.name:
            raise PackageError(f"{root}: {MANIFEST_NAME}: missing: an export that did not "
                               "finish (a package gets its manifest only after passing every "
                               "check); the next export into the same place removes it") from None
        raise PackageError(f"{root}: {MANIFEST_NAME}: missing (not a model package)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PackageError(f"{root}: {MANIFEST_NAME}: cannot be read ({exc})") from None
    if not isinstance(manifest, dict):
        raise PackageError(f"{root}: {MANIFEST_NAME}: the top level must be a JSON object")
    return manifest


def _verify_files(check: _Checker, manifest: dict) -> None:
    files = check.mapping(manifest, "files")
    listed = dict(files)
    for engine in manifest.get("engines", []):
        listed[engine.get("file", "?")] = engine
    for name, entry in listed.items():
        field = f"files.{name}"
        path = check.root / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise check.error(field, "must be a plain path inside the package")
        if not path.is_file():
            raise check.error(field, f"listed in the manifest but {path} is missing")
        if path.stat().st_size != entry.get("bytes"):
            raise check.error(f"{field}.bytes", f"manifest says {entry.get('bytes')} bytes, the "
                              f"file has {path.stat().st_size}; the file was changed or "
                              "truncated after export: re-export the package")
        actual = sha256_file(path)
        if actual != entry.get("sha256"):
            raise check.error(f"{field}.sha256", f"mismatch (manifest {entry.get('sha256')}, "
                              f"file {actual}); the file was changed after export: re-export "
                              "the package")
    required = [*check.mapping(manifest, "encoder").get("files", {}).values(),
                check.mapping(manifest, "encoder").get("initial_state"),
                check.mapping(manifest, "head").get("file"),
                check.mapping(manifest, "memory_bank").get("file")]
    for name in required:
        if name not in files:
            raise check.error("files", f"{name!r} is used by the package but has no sha256 entry")


def _verify_audio(check: _Checker, manifest: dict) -> None:
    audio = check.mapping(manifest, "audio")
    for key, expected in audio_contract().items():
        if key not in audio:
            raise check.error(f"audio.{key}", f"missing; this runtime needs {expected!r}")
        check.equal(f"audio.{key}", audio[key], expected)


def _verify_labels(check: _Checker, manifest: dict) -> tuple[str, ...]:
    labels = manifest.get("labels")
    if (not isinstance(labels, list) or len(labels) < 2
            or not all(isinstance(x, str) and x for x in labels)):
        raise check.error("labels", f"must be a list of at least 2 class names, got {labels!r}")
    if len(set(labels)) != len(labels):
        raise check.error("labels", f"class names repeat: {labels}")
    return tuple(labels)


def _verify_io_shapes(check: _Checker, package: ModelPackage) -> None:
    encoder = package.manifest["encoder"]
    expected_in = [contract.BATCH_DIM, package.chunk_frames, contract.N_MELS]
    expected_out = [contract.BATCH_DIM, package.out_frames, package.embedding_channels]
    check.equal("encoder.input.name", encoder.get("input", {}).get("name"), contract.ENCODER_INPUT)
    check.equal("encoder.input.shape", encoder["input"].get("shape"), expected_in)
    check.equal("encoder.output.name", encoder.get("output", {}).get("name"),
                contract.ENCODER_OUTPUT)
    check.equal("encoder.output.shape", encoder["output"].get("shape"), expected_out)
    state = encoder.get("state")
    if not isinstance(state, list) or not state:
        raise check.error("encoder.state", "must list the encoder state tensors")
    for i, spec in enumerate(state):
        field = f"encoder.state[{i}]"
        check.equal(f"{field}.input", spec.get("input"), f"{contract.STATE_INPUT_PREFIX}{i}")
        check.equal(f"{field}.output", spec.get("output"), f"{contract.STATE_OUTPUT_PREFIX}{i}")
        shape = spec.get("shape")
        if (not isinstance(shape, list) or shape.count(contract.BATCH_DIM) != 1
                or not all(d == contract.BATCH_DIM or (isinstance(d, int) and d > 0)
                           for d in shape)):
            raise check.error(f"{field}.shape", f"must hold one {contract.BATCH_DIM!r} axis and "
                              f"positive sizes, got {shape!r}")


def load_npz(check: _Checker, name: str, field: str) -> dict[str, np.ndarray]:
    try:
        with np.load(check.root / name, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise check.error(field, f"{name} cannot be read without pickles ({exc})") from None


def _verify_initial_state(check: _Checker, package: ModelPackage) -> None:
    name = package.manifest["encoder"]["initial_state"]
    arrays = load_npz(check, name, "encoder.initial_state")
    for spec in package.state_specs():
        want = state_shape(spec["shape"], 1)
        have = arrays.get(spec["input"])
        if have is None or have.shape != want or not np.isfinite(have).all():
            raise check.error(f"encoder.initial_state.{spec['input']}", f"{name} must hold a "
                              f"finite array of shape {want}, got "
                              f"{None if have is None else have.shape}")


def _verify_head(check: _Checker, package: ModelPackage) -> int:
    spec = package.manifest["head"]
    head = load_npz(check, spec.get("file"), "head.file")
    if package.manifest.get("family", "tcn") == "multigate":
        return _verify_gated_head(check, package, head)
    shapes = {k: v.shape for k, v in head.items()}
    needed = ("projection_weight", "projection_bias", "classifier_weight", "classifier_bias")
    missing = [k for k in needed if k not in head]
    if missing:
        raise check.error("head.file", f"{spec.get('file')} lacks {', '.join(missing)}")
    embedding_dim, pooled_dim = shapes["projection_weight"]
    check.equal("head.pooled_dim", pooled_dim, 2 * package.embedding_channels)
    check.equal("head.embedding_dim", spec.get("embedding_dim"), embedding_dim)
    check.equal("head.projection_bias.shape", shapes["projection_bias"], (embedding_dim,))
    k = len(package.labels)
    if shapes["classifier_weight"] != (k, embedding_dim) or shapes["classifier_bias"] != (k,):
        raise check.error("labels", f"{k} labels, but the head's classifier has shape "
                          f"{shapes['classifier_weight']} (expected ({k}, {embedding_dim}))")
    return embedding_dim


def _verify_gated_head(check: _Checker, package: ModelPackage, head: dict) -> int:
    """A multigate head (`edge_ser.gated_scoring`): its arrays against the manifest, and the
    encoder's rows (per stream a logit and a vector) against the streams' widths."""
    from edge_ser.gated_scoring import head_problems

    spec = package.manifest["head"]
    problems, embedding_dim = head_problems(head, spec, len(package.labels))
    if problems:
        raise check.error(problems[0].split(":")[0], problems[0].split(": ", 1)[-1])
    row = sum(1 + int(s["dim"]) for s in spec["streams"])
    check.equal("head.streams", row, package.embedding_channels)
    check.equal("head.pooled_dim", spec.get("pooled_dim"), row - len(spec["streams"]))
    return embedding_dim


def _verify_memory_bank(check: _Checker, package: ModelPackage, embedding_dim: int) -> None:
    spec = package.manifest["memory_bank"]
    bank = load_npz(check, spec.get("file"), "memory_bank.file")
    for key in ("centroids", "centroid_labels", "temperature", "top_k", "labels"):
        if key not in bank:
            raise check.error("memory_bank.file", f"{spec.get('file')} lacks {key!r}")
    centroids, owners = bank["centroids"], bank["centroid_labels"]
    if centroids.ndim != 2 or centroids.shape[1] != embedding_dim:
        raise check.error("memory_bank.centroids", f"shape {centroids.shape}, expected "
                          f"(M, {embedding_dim}) to match the head's embedding")
    bank_labels = tuple(str(x) for x in bank["labels"])
    if bank_labels != package.labels:
        raise check.error("labels", f"{list(package.labels)} but the memory bank was built for "
                          f"{list(bank_labels)}")
    k = len(package.labels)
    if owners.shape != (centroids.shape[0],) or owners.min() < 0 or owners.max() >= k:
        raise check.error("memory_bank.centroid_labels", f"must index the {k} labels, one per "
                          "centroid")
    if len(np.unique(owners)) != k:
        raise check.error("memory_bank.centroid_labels", "every class needs at least one centroid")
    check.equal("memory_bank.temperature", spec.get("temperature"), float(bank["temperature"]))
    check.equal("memory_bank.top_k", spec.get("top_k"), int(bank["top_k"]))
    if not float(bank["temperature"]) > 0 or int(bank["top_k"]) < 1:
        raise check.error("memory_bank", "temperature must be > 0 and top_k >= 1")


def _verify_adaptation_memory(check: _Checker, package: ModelPackage, embedding_dim: int) -> None:
    """The optional source exemplar set (`edge_ser.adaptation_memory`), read only by `adapt`."""
    from edge_ser import adaptation_memory

    spec = package.manifest.get("adaptation_memory")
    if spec is None:
        return
    name = spec.get("file") if isinstance(spec, dict) else None
    if name not in package.manifest["files"]:
        raise check.error("adaptation_memory.file", f"{name!r} has no sha256 entry in files")
    found = adaptation_memory.problems(load_npz(check, name, "adaptation_memory.file"),
                                       package.labels, embedding_dim)
    if found:
        raise check.error(f"adaptation_memory.{found[0].split(':')[0]}",
                          found[0].split(": ", 1)[-1])


def _verify_fusion(check: _Checker, manifest: dict) -> None:
    fusion = check.mapping(manifest, "fusion")
    check.equal("fusion.rule", fusion.get("rule"), "log_linear")
    weight = fusion.get("memory_weight")
    if not isinstance(weight, (int, float)) or not 0.0 <= weight <= 1.0:
        raise check.error("fusion.memory_weight", f"must be in [0, 1], got {weight!r}")


def _verify_onnx(check: _Checker, package: ModelPackage, precision: str) -> None:
    """Tensor names, shapes and embedded contract of one ONNX encoder against the manifest."""
    import onnxruntime as ort

    path = package.encoder_path(precision)
    field = f"encoder.files.{precision}"
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise check.error(field, f"{path.name} is not a loadable ONNX model ({exc})") from None
    encoder = package.manifest["encoder"]
    expected = {encoder["input"]["name"]: encoder["input"]["shape"]}
    expected.update({s["input"]: s["shape"] for s in encoder["state"]})
    actual = {i.name: list(i.shape) for i in session.get_inputs()}
    outputs = {encoder["output"]["name"]: encoder["output"]["shape"]}
    outputs.update({s["output"]: s["shape"] for s in encoder["state"]})
    actual_out = {o.name: list(o.shape) for o in session.get_outputs()}
    for kind, want, have in (("inputs", expected, actual), ("outputs", outputs, actual_out)):
        if set(want) != set(have):
            raise check.error(field, f"{path.name} has {kind} {sorted(have)}, the manifest "
                              f"declares {sorted(want)}")
        for name, shape in want.items():
            if have[name] != shape:
                raise check.error(f"{field}.{name}", f"graph shape {have[name]} differs from the "
                                  f"manifest's {shape}")
    meta = session.get_modelmeta().custom_metadata_map
    facts = {"labels": list(package.labels), "chunk_frames": package.chunk_frames,
             "stride": package.stride, "format_version": FORMAT_VERSION,
             "sample_rate_hz": contract.SAMPLE_RATE_HZ, "n_mels": contract.N_MELS,
             "hop_samples": contract.HOP_SAMPLES}
    for key, value in facts.items():
        raw = meta.get(contract.METADATA_PREFIX + key)
        if raw is None or json.loads(raw) != value:
            raise check.error(f"{field}.metadata.{key}", f"{path.name} says {raw}, the package "
                              f"needs {json.dumps(value)}")
