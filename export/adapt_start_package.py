"""The start model inside an adapted package, so that `edge-ser eval` can score it beside the
adapted one on a labelled sample, through the same runtime path.

    OUT/start/model.json         a package manifest (format, contract, labels, sha256 of files)
    OUT/start/encoder.onnx       the start model's fp32 encoder
    OUT/start/initial_state.npz
    OUT/start/head.npz
    OUT/start/memory_bank.npz    the start model's memory bank (or, for a checkpoint without
                                 one, built from the --source clips through the start model)

The least that `load_package` and the runtime scorer need: the fp32 encoder only (no INT8
graph, no engines, no checkpoint), about the size of the adapted package's `encoder.onnx` and
`head.npz` together. The adapted package's manifest records the folder and the sha256 of its
model.json (`adaptation.start_package`), so a start model swapped in later is refused. It is not
written when `adapt` kept the start model's weights: the package itself is then the start model.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from edge_ser.package import (
    FORMAT,
    FORMAT_VERSION,
    audio_contract,
    file_entry,
    load_package,
    sha256_file,
    write_manifest,
)
from edge_ser_export.config import ExportConfig
from edge_ser_export.memory_bank import save_memory_bank
from edge_ser_export.steps import (
    FILES,
    family,
    head_section,
    write_fp32,
    write_head,
    write_memory_bank,
)

FOLDER = "start"
PRECISION = "fp32"


def write_start_package(root: Path, model, labels: tuple[str, ...], cfg: ExportConfig,
                        bank: dict[str, np.ndarray] | None, source_feats: list[np.ndarray],
                        source_targets: np.ndarray | None, description: dict) -> dict:
    """Write the start model's runtime files and manifest into the new folder `root`; returns
    the record the adapted package keeps (`adaptation.start_package`)."""
    root = Path(root)
    root.mkdir(parents=True)
    created = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
    model = model.eval()
    spec = write_fp32(model, root, labels, cfg, {"created_utc": created})
    spec["files"] = {PRECISION: FILES["fp32"]}
    head = write_head(model, root)
    if bank is not None:
        save_memory_bank(root / FILES["memory_bank"], bank)
    else:
        bank = write_memory_bank(model, root, list(source_feats), np.asarray(source_targets),
                                 labels, cfg)
    names = (FILES["fp32"], FILES["initial_state"], FILES["head"], FILES["memory_bank"])
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "name": f"{cfg.package.name} (start model of an adaptation)", "created_utc": created,
        "family": family(model), "labels": list(labels), "audio": audio_contract(),
        "encoder": spec, "head": head_section(head, spec),
        "memory_bank": {"file": FILES["memory_bank"], "centroids": int(len(bank["centroids"])),
                        "temperature": float(bank["temperature"]), "top_k": int(bank["top_k"]),
                        "dtype": str(bank["centroids"].dtype)},
        "fusion": {"rule": "log_linear", "memory_weight": cfg.fusion.memory_weight},
        "files": {name: file_entry(root, name) for name in names},
        "engines": [],
        "provenance": {"role": "the model `adapt` started from", "start_model": description},
    }
    write_manifest(root, manifest)
    load_package(root)  # what eval will load, verified once
    return {"folder": FOLDER, "precision": PRECISION,
            "manifest_sha256": sha256_file(root / "model.json"),
            "bytes": sum(p.stat().st_size for p in root.iterdir() if p.is_file())}
