"""`edge-ser adapt`: a model and a folder of unlabelled recordings in, an adapted model package
out.

    start   the model to adapt: a checkpoint (`.pt`, or a folder holding `model.pt`) or a model
            package (its memory bank; the weights from the checkpoint it was exported from)
    target  the folder's recordings, cut into speech segments (`edge_ser_train.target_audio`)
    source  --source corpora: full NNPM (source memory from their utterances, memory loss,
            source cross-entropy); none: NNPM from the model's source exemplar set
            (adaptation_memory.npz) or, when it has none, its memory bank; no source audio
    out     a complete model package (`package_builder`: ONNX fp32 and INT8 encoders
            calibrated on the target's segments, head, memory bank, model.json recording the
            adaptation, and model.pt, the adapted checkpoint), plus
            OUT/adaptation.json            target description, sizes, settings, history, timings
            OUT/adapt_config.resolved.yaml
            OUT/start/                     the start model, for `eval` to score beside the
                                           adapted one (`adapt_start_package`)
    guard   the adapted model is compared with the start model (`edge_ser_train.adapt_guard`);
            when it looks worse the package holds the start model's weights instead (unless
            guard.enabled is false), said in one printed line and recorded under `guard`
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edge_ser.atomic_write import write_text_atomic
from edge_ser.config import load_config, save_resolved, to_dict
from edge_ser_export.adapt_start_package import write_start_package
from edge_ser_export.adapted_data import AdaptedExportData, FeatureItem
from edge_ser_export.config import ExportConfig
from edge_ser_train.adapt import AdaptData, AdaptResult, adapt
from edge_ser_train.adapt_config import AdaptConfig
from edge_ser_train.adapt_guard import GuardReport, judge
from edge_ser_train.config import TrainConfig
from edge_ser_train.corpus import CorpusError, describe, labelled, read_corpus
from edge_ser_train.inference import predict
from edge_ser_train.memory import SourceMemory
from edge_ser_train.model import EmotionModel
from edge_ser_train.target_audio import read_target
from edge_ser_train.trainer import TrainResult, load_checkpoint, save_checkpoint
from edge_ser_train.views import load_views

BANK_KEYS = ("centroids", "centroid_labels", "temperature", "top_k")


class AdaptError(ValueError):
    """The model or the sources cannot be adapted as asked; the message says why."""


@dataclass
class StartModel:
    model: EmotionModel
    train_config: TrainConfig
    labels: tuple[str, ...]
    bank: dict[str, np.ndarray] | None
    """Memory bank arrays (package format) or None."""
    description: dict
    exemplars: dict[str, np.ndarray] | None = None
    """Source exemplar set arrays (`edge_ser.adaptation_memory`) or None."""


def _sha256(path: Path) -> str:
    from edge_ser.package import sha256_file

    return sha256_file(path)


def load_start_model(path: Path) -> StartModel:
    """The model to adapt, from a checkpoint, a folder with `model.pt` or a model package."""
    path = Path(path)
    bank = exemplars = None
    description: dict = {"path": str(path)}
    if path.is_dir() and (path / "model.json").is_file():
        checkpoint, bank, exemplars, description = _from_package(path)
    elif path.is_dir() and (path / "model.pt").is_file():
        checkpoint = path / "model.pt"
    elif path.is_file():
        checkpoint = path
    else:
        raise AdaptError(f"{path}: no model there (expected a checkpoint .pt, a folder with "
                         "model.pt, or a model package folder with model.json)")
    model, cfg, payload = load_checkpoint(checkpoint)
    labels = tuple(payload["labels"])
    if bank is None and payload.get("extra", {}).get("memory_bank"):
        stored = payload["extra"]["memory_bank"]
        bank = {k: np.asarray(stored[k].numpy() if torch.is_tensor(stored[k]) else stored[k])
                for k in BANK_KEYS}
        bank["labels"] = np.asarray(labels)
    if exemplars is None and payload.get("extra", {}).get("adaptation_memory"):
        exemplars = {k: np.asarray(v) for k, v in payload["extra"]["adaptation_memory"].items()}
    for name, arrays in (("memory bank", bank), ("exemplar set", exemplars)):
        if arrays is not None and tuple(str(x) for x in arrays["labels"]) != labels:
            raise AdaptError(f"{path}: the {name}'s labels {list(arrays['labels'])} differ from "
                             f"the model's {list(labels)}")
    description.update({"checkpoint": str(checkpoint), "sha256": _sha256(checkpoint)})
    return StartModel(model, cfg, labels, bank, description, exemplars)


def _from_package(root: Path) -> tuple[Path, dict, dict | None, dict]:
    """(checkpoint, memory bank arrays, exemplar set arrays or None, description) of a model
    package.

    A package's encoder is ONNX; its trainable weights are the checkpoint it was exported from,
    `model.pt` inside the package (listed among its files, so loading verified its sha256)."""
    from edge_ser.package import load_package
    from edge_ser_export.steps import FILES

    package = load_package(root)
    with np.load(package.path(package.manifest["memory_bank"]["file"]),
                 allow_pickle=False) as data:
        bank = {k: data[k] for k in (*BANK_KEYS, "labels")}
    exemplars = None
    if "adaptation_memory" in package.manifest:  # verified by load_package
        with np.load(package.path(package.manifest["adaptation_memory"]["file"]),
                     allow_pickle=False) as data:
            exemplars = {k: data[k] for k in data.files}
    if FILES["checkpoint"] not in package.manifest.get("files", {}):
        raise AdaptError(f"{root}: this model package carries no trainable weights "
                         f"({FILES['checkpoint']}); pass the checkpoint it was exported from "
                         "as --model")
    description = {"package": str(root), "package_name": package.manifest.get("name", "")}
    if exemplars is not None:
        description["exemplar_origin"] = package.manifest["adaptation_memory"].get("origin", "")
    return package.path(FILES["checkpoint"]), bank, exemplars, description


def load_sources(cfg: AdaptConfig, corpora: list[Path], labels: tuple[str, ...], log):
    """(labelled clips, their cached views) of the source corpora."""
    clips = []
    for folder in corpora:
        part = labelled(read_corpus(folder), labels)
        if not part:
            raise CorpusError(f"{folder}: no clip carries one of the labels {', '.join(labels)}")
        clips.extend(part)
    log("source corpora:\n" + describe(clips))
    started = time.perf_counter()
    views = load_views(clips, cfg.augment.views, cfg.augment, cfg.source.max_clip_s,
                       cfg.source.cache_dir, workers=cfg.optim.threads)
    log(f"source views ready in {time.perf_counter() - started:.0f} s "
        f"(cached in {cfg.source.cache_dir})")
    return clips, views


def run_adaptation(cfg: AdaptConfig, target: Path, out: Path, model_path: Path,
                   sources: list[Path], log=print, export_overrides: list[str] = ()) -> dict:
    """Adapt the model at `model_path` to the recordings in `target`; export it into the model
    package `out` (the export config's defaults with `export_overrides`)."""
    started = time.perf_counter()
    export_cfg = load_config(ExportConfig, None, list(export_overrides))  # before any work
    start = load_start_model(model_path)
    log(f"model: {start.description.get('package') or start.description['checkpoint']} "
        f"({', '.join(start.labels)})")
    if tuple(cfg.source.labels) != start.labels:
        cfg = _with_labels(cfg, start.labels)
    if not sources and start.bank is None:
        raise AdaptError(f"{model_path}: this model carries no memory bank, so adapting without "
                         "source audio is not possible; pass --source with labelled corpora "
                         "(folders with labels.csv), or a model package")
    log(f"target: reading recordings in {target}")
    target_audio = read_target(target, cfg.target, cfg.augment, cfg.optim.seed, log)
    notes = []
    if target_audio.skipped:
        notes.append(f"{len(target_audio.skipped)} unreadable, skipped")
    if target_audio.without_speech:
        notes.append(f"{len(target_audio.without_speech)} without speech")
    log(f"target: {len(target_audio.segments)} speech segments, {target_audio.speech_s:.0f} s "
        f"of speech from {len(target_audio.files) - len(target_audio.skipped)} files"
        + (f" ({'; '.join(notes)})" if notes else ""))

    fixed_memory = None
    source_items = []
    if sources:
        clips, views = load_sources(cfg, sources, start.labels, log)
        data = AdaptData.from_clips(start.labels, clips, views, target_audio.views)
        source_record = {"corpora": [str(s) for s in sources], "clips": len(clips),
                         "memory": f"{len(clips)} source utterances"}
        source_items = [FeatureItem(str(c.path), c.corpus, c.label, v[0], c.language)
                        for c, v in zip(clips, views)]
    else:
        data = AdaptData(labels=start.labels, target_views=target_audio.views)
        if start.exemplars is not None:
            fixed_memory = SourceMemory.from_exemplars(start.exemplars, len(start.labels))
            memory_text = (f"the model's source exemplar set ({len(fixed_memory)} exemplars of "
                           f"{', '.join(str(g) for g in start.exemplars['groups'])})")
        else:
            fixed_memory = SourceMemory.from_bank(start.bank, len(start.labels))
            memory_text = f"the model's memory bank ({len(fixed_memory)} centroids)"
        source_record = {"corpora": [], "clips": 0, "memory": memory_text}
    log(f"adapting with {cfg.method.upper()} ({'source corpora' if sources else 'no source audio'}"
        f", batch norm {cfg.batchnorm}), {cfg.optim.epochs} epochs")
    start_weights = copy.deepcopy(start.model)  # adapt trains start.model in place
    result = adapt(cfg, data, model=start.model, memory=fixed_memory, log=log)
    guard = judge(cfg.guard, start_weights, result.model, [v[0] for v in target_audio.views],
                  start.labels, memory=(SourceMemory.from_bank(start.bank, len(start.labels))
                                        if start.bank is not None else None),
                  source_feats=[i.feats for i in source_items],
                  source_targets=data.source_targets, seed=cfg.optim.seed)
    log(guard.line())
    delivered = result.model if guard.keep_adapted else start_weights
    record = _record(cfg, start, target_audio, source_record, result, delivered, guard, started)
    export_data = AdaptedExportData(
        labels=start.labels, train=source_items,
        heldout=[FeatureItem(f"{seg.path}@{seg.start_s:.2f}s", "target", None, views[0])
                 for seg, views in zip(target_audio.segments, target_audio.views)],
        corpora=[{"name": "target", "path": str(target), "segments":
                  len(target_audio.segments), "labelled": False}])
    log("exporting the adapted model into a package")
    start_copy = (start_weights, [i.feats for i in source_items], data.source_targets) \
        if guard.keep_adapted else None
    _write(out, cfg, export_cfg, start, result, delivered, None if sources else start.bank,
           record, sources, export_data, start_copy, log)
    record["seconds"] = round(time.perf_counter() - started, 1)
    write_text_atomic(out / "adaptation.json", json.dumps(record, indent=2))
    shares = guard.to_dict()["target_class_shares"]
    log(f"wrote the {'adapted' if guard.keep_adapted else 'start'} model package {out} "
        f"({record['seconds']:.0f} s); predicted class shares on the target: start model "
        f"{_shares(shares['start'])}, adapted model {_shares(shares['adapted'])}")
    return record


def _shares(shares: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.0%}" for k, v in shares.items())


def _with_labels(cfg: AdaptConfig, labels: tuple[str, ...]) -> AdaptConfig:
    """The config with the start model's labels (the model decides the classes)."""
    import dataclasses

    return dataclasses.replace(cfg, source=dataclasses.replace(cfg.source, labels=labels))


def _record(cfg: AdaptConfig, start: StartModel, target_audio, source_record: dict,
            result: AdaptResult, delivered: EmotionModel, guard: GuardReport,
            started: float) -> dict:
    predictions = predict(delivered, [v[0] for v in target_audio.views])
    counts = np.bincount(predictions, minlength=len(start.labels))
    from edge_ser_train.run import git_commit

    return {
        "created_utc": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        "method": cfg.method, "start_model": start.description,
        "target": target_audio.describe(), "source": source_record,
        "target_predictions": {k: int(v) for k, v in zip(start.labels, counts)},
        "pseudo_labels": result.pseudo.stats(start.labels) if result.pseudo else None,
        "guard": guard.to_dict(),
        "history": result.history, "settings": to_dict(cfg),
        "train_seconds": round(result.seconds, 1),
        "seconds": round(time.perf_counter() - started, 1), "git_commit": git_commit(),
    }


def _carried_exemplars(start: StartModel) -> dict | None:
    """The start model's exemplar set, for the package of a model adapted without source audio.

    It cannot be re-embedded (no source audio), so it is carried unchanged, like the memory
    bank, and recorded as living in the start model's embedding space: the one the adapted
    encoder was trained toward (its target features pulled to these fixed slots under the
    frozen head), and so the evidence a further source-free adaptation should start from."""
    if start.exemplars is None:
        return None
    name = start.description.get("package") or start.description["checkpoint"]
    origin = (f"carried unchanged from the start model {name} (sha256 of its checkpoint "
              f"{start.description['sha256']}): its embedding space")
    if start.description.get("exemplar_origin"):
        origin += f"; there: {start.description['exemplar_origin']}"
    return {"arrays": start.exemplars, "origin": origin}


def _write(out: Path, cfg: AdaptConfig, export_cfg: ExportConfig, start: StartModel,
           result: AdaptResult, delivered: EmotionModel, bank: dict[str, np.ndarray] | None,
           record: dict, sources: list[Path], export_data: AdaptedExportData, start_copy,
           log) -> None:
    """The delivered checkpoint (adapted, or the start model's when the guard kept it),
    exported into the package `out` (replacing what was there); `start_copy` (start model,
    source features, source class indices): also the start model in `out/start`."""
    import dataclasses

    from edge_ser_export.package_builder import build_package, remove_abandoned, work_prefix

    train_cfg = start.train_config
    if sources:
        train_cfg = dataclasses.replace(train_cfg, data=dataclasses.replace(
            train_cfg.data, corpora=tuple(str(s) for s in sources)))
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned(out)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=work_prefix(out, "adapt")) as tmp:
        checkpoint = Path(tmp) / "model.pt"
        if start_copy is not None:
            model, source_feats, source_targets = start_copy
            record["start_package"] = write_start_package(
                Path(tmp) / "start", model, start.labels, export_cfg, start.bank, source_feats,
                source_targets, start.description)
            log(f"  the start model, for eval to compare: {record['start_package']['folder']}/ "
                f"({record['start_package']['bytes']} bytes)")
        save_checkpoint(TrainResult(delivered, start.labels, result.history, result.seconds),
                        train_cfg, checkpoint,
                        extra={"adaptation": json.loads(json.dumps(record))})
        summary = {k: v for k, v in record.items() if k != "history"}
        build_package(checkpoint, out, export_cfg, force=True,
                      log=lambda m: log("  " + m), data=export_data, bank=bank,
                      extra={"adaptation": json.loads(json.dumps(summary))},
                      exemplars=_carried_exemplars(start) if not sources else None)
        if start_copy is not None:  # beside the verified package; its manifest names it
            (Path(tmp) / "start").rename(out / "start")
    save_resolved(cfg, out, "adapt_config.resolved.yaml")
