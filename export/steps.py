"""The files of a model package, one writer per file, given a model and the speech they need.

`package_builder` runs these in order with the corpora and checks every result; the tests run
them with synthetic speech on small models. Each writer returns what the manifest records.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from edge_ser import adaptation_memory, contract
from edge_ser.package import (
    FORMAT,
    FORMAT_VERSION,
    ModelPackage,
    audio_contract,
    file_entry,
    write_manifest,
)
from edge_ser_export import adaptation_memory as exemplar_set
from edge_ser_export import multigate_head
from edge_ser_export.config import ExportConfig
from edge_ser_export.head import head_arrays, save_head
from edge_ser_export.memory_bank import build_memory_bank, clip_embeddings, save_memory_bank
from edge_ser_export.multigate_graph import MultiGateChunkEncoder
from edge_ser_export.onnx_export import export_encoder, save_initial_state
from edge_ser_export.quantize import batch_feeds, calibration_chunks, quantize_int8

FILES = {"fp32": "encoder.onnx", "int8": "encoder.int8.onnx", "head": "head.npz",
         "memory_bank": "memory_bank.npz", "initial_state": "initial_state.npz",
         "checkpoint": "model.pt", "adaptation_memory": adaptation_memory.FILE}
"""Files of a package. `model.pt` is the training checkpoint (weights only): the runtime never
reads it; `adapt` fine-tunes from it, so a package can be adapted with no other file.
`adaptation_memory.npz` (optional) is the source exemplar set `adapt` uses without source
audio; the runtime never reads it either."""
OPTIONAL = (FILES["checkpoint"], FILES["adaptation_memory"])
"""Files a package may lack."""


def family(model) -> str:
    """The model family a checkpoint's model belongs to (the manifest's `family`)."""
    return "multigate" if hasattr(model, "stream_names") else "tcn"


def streamed_part(model):
    """What runs chunk by chunk with its state carried: the `tcn` family's encoder, or every
    stream of a multigate model up to the per-frame attention quantities."""
    if family(model) == "multigate":
        return MultiGateChunkEncoder(model)
    return model.encoder


def write_fp32(model, root: Path, labels: tuple[str, ...], cfg: ExportConfig,
               metadata: dict) -> dict:
    """encoder.onnx and initial_state.npz; returns the manifest's `encoder` section."""
    streamed = streamed_part(model)
    spec = export_encoder(streamed, cfg.encoder.chunk_frames, root / FILES["fp32"], labels,
                          metadata, cfg.encoder.opset)
    spec["files"] = {"fp32": FILES["fp32"], "int8": FILES["int8"]}
    spec["initial_state"] = FILES["initial_state"]
    save_initial_state(root / FILES["initial_state"], streamed, spec)
    spec["profiles"] = {"stream": {"min": 1, "opt": 1, "max": cfg.profiles.stream_max},
                        "batch": {"min": cfg.profiles.batch_min, "opt": cfg.profiles.batch_opt,
                                  "max": cfg.profiles.batch_max}}
    return spec


def draft_package(root: Path, spec: dict, labels: tuple[str, ...]) -> ModelPackage:
    """An unverified package view of a half-written folder, for backends during export."""
    return ModelPackage(root=root, manifest={"encoder": spec}, labels=labels,
                        chunk_frames=spec["chunk_frames"], stride=spec["stride"],
                        embedding_channels=spec["channels"])


def write_int8(model, root: Path, spec: dict, calibration_feats: list[np.ndarray],
               cfg: ExportConfig) -> dict:
    """encoder.int8.onnx, calibrated on `calibration_feats` (whole clips, (T, N_MELS))."""
    axes = {spec["input"]["name"]: 0}
    axes.update({s["input"]: s["shape"].index(contract.BATCH_DIM) for s in spec["state"]})
    feeds = calibration_chunks(streamed_part(model), calibration_feats, spec["chunk_frames"])
    if not feeds:
        raise ValueError("no calibration chunk: the calibration clips are shorter than a chunk")
    batches = batch_feeds(feeds, axes, cfg.calibration.batch, cfg.calibration.seed)
    root_logger = logging.getLogger()
    level = root_logger.level
    root_logger.setLevel(logging.ERROR)  # onnxruntime's generic pre-processing advice
    try:
        quantization = quantize_int8(root / FILES["fp32"], root / FILES["int8"], batches,
                                     cfg.calibration)
    finally:
        root_logger.setLevel(level)
    quantization["calibration_clips"] = len(calibration_feats)
    return quantization


def write_head(model, root: Path) -> dict[str, np.ndarray]:
    """head.npz; returns its arrays, and for a multigate model also its manifest fields
    (under the key `spec`, not saved)."""
    if family(model) == "multigate":
        head, head_spec = multigate_head.head_arrays(model)
        save_head(root / FILES["head"], head)
        return {**head, "spec": head_spec}
    head = head_arrays(model)
    save_head(root / FILES["head"], head)
    return head


def head_section(head: dict, spec: dict) -> dict:
    """The manifest's `head` section."""
    if "spec" in head:
        return {"file": FILES["head"], **head["spec"]}
    return {"file": FILES["head"], "pooled_dim": 2 * spec["channels"],
            "embedding_dim": int(head["projection_weight"].shape[0])}


def write_memory_bank(model, root: Path, feats: list[np.ndarray], targets: np.ndarray,
                      labels: tuple[str, ...], cfg: ExportConfig,
                      embeddings: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """memory_bank.npz from the clips `feats` (or their `embeddings`, when already computed)."""
    if embeddings is None:
        embeddings = clip_embeddings(model, feats)
    bank = build_memory_bank(embeddings, targets, labels, cfg.memory_bank)
    save_memory_bank(root / FILES["memory_bank"], bank)
    return bank


def write_adaptation_memory(root: Path, embeddings: np.ndarray, targets: np.ndarray,
                            corpora: list[str], languages: dict[str, str],
                            labels: tuple[str, ...], cfg: ExportConfig) -> dict | None:
    """adaptation_memory.npz from source clip `embeddings` (n, E), their classes and corpus
    names; returns the manifest section (None, and no file, when the config turns it off)."""
    if not cfg.adaptation_memory.enabled:
        return None
    arrays, per_cell = exemplar_set.build_within_limit(embeddings, targets, corpora, languages,
                                                       labels, cfg.adaptation_memory)
    exemplar_set.save(root / FILES["adaptation_memory"], arrays)
    return exemplar_set.manifest_section(
        arrays, per_cell, cfg.adaptation_memory,
        f"from {len(embeddings)} source clips through this model")


def write_package_manifest(root: Path, labels: tuple[str, ...], spec: dict, head: dict,
                           bank: dict, cfg: ExportConfig, quantization: dict, created: str,
                           provenance: dict, metrics: dict,
                           exemplars: dict | None = None) -> dict:
    """model.json over the files written above (their sha256 and sizes taken now)."""
    manifest = package_manifest(root, labels, spec, head, bank, cfg, quantization, created,
                                provenance, metrics, exemplars)
    write_manifest(root, manifest)
    return manifest


def package_manifest(root: Path, labels: tuple[str, ...], spec: dict, head: dict,
                     bank: dict, cfg: ExportConfig, quantization: dict, created: str,
                     provenance: dict, metrics: dict, exemplars: dict | None = None) -> dict:
    """The manifest over the files written above, not yet written (see write_manifest);
    `exemplars`: the `adaptation_memory` section of the exemplar set written (None: none)."""
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "name": cfg.package.name,
        "family": "multigate" if "spec" in head else "tcn",
        "created_utc": created, "labels": list(labels), "audio": audio_contract(),
        "encoder": spec,
        "head": head_section(head, spec),
        "memory_bank": {"file": FILES["memory_bank"], "centroids": int(len(bank["centroids"])),
                        "centroids_per_class": int(np.bincount(bank["centroid_labels"]).max()),
                        "temperature": float(bank["temperature"]),
                        "top_k": int(bank["top_k"]), "dtype": "float16",
                        "scoring": "per class, mean of the top_k cosine similarities; softmax "
                                   "over classes at temperature"},
        "fusion": {"rule": "log_linear", "memory_weight": cfg.fusion.memory_weight,
                   "formula": "softmax((1 - w) * log p_classifier + w * log p_memory)"},
        "quantization": quantization,
        "files": {name: file_entry(root, name) for name in FILES.values()
                  if name not in OPTIONAL or (root / name).is_file()},
        "engines": [],
        "provenance": provenance,
        "metrics": metrics,
    }
    if exemplars is not None:
        manifest["adaptation_memory"] = exemplars
    return manifest


def write_package(model, root: Path, labels: tuple[str, ...], cfg: ExportConfig,
                  calibration_feats: list[np.ndarray], memory_feats: list[np.ndarray],
                  memory_targets: np.ndarray, provenance: dict | None = None,
                  metrics: dict | None = None, memory_corpora: list[str] | None = None
                  ) -> dict:
    """Every file and the manifest, from given speech and no further checks: for packages made
    from speech other than the training corpora (the checked export is `package_builder`).
    `memory_corpora`: the corpus of each memory clip; with it, the exemplar set is written
    too (when the config asks for one)."""
    import datetime as dt

    root.mkdir(parents=True, exist_ok=True)
    created = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
    spec = write_fp32(model, root, labels, cfg, {"created_utc": created})
    quantization = write_int8(model, root, spec, calibration_feats, cfg)
    head = write_head(model, root)
    embeddings = clip_embeddings(model, memory_feats)
    bank = write_memory_bank(model, root, memory_feats, memory_targets, labels, cfg, embeddings)
    exemplars = None
    if memory_corpora is not None:
        exemplars = write_adaptation_memory(root, embeddings, memory_targets, memory_corpora,
                                            {}, labels, cfg)
    return write_package_manifest(root, labels, spec, head, bank, cfg, quantization, created,
                                  provenance or {}, metrics or {}, exemplars)
