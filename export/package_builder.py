"""`export package`: a training checkpoint in, a verified model package out, in numbered stages.

    1 ONNX fp32      export, graph checks, parity torch vs onnxruntime (stream + batch)
    2 INT8 (QDQ)     calibration on training speakers, quantize, QDQ/TensorRT checks, parity
    3 head + memory  folded head (parity vs torch), memory bank centroids (size limit), the
                     source exemplar set for adaptation (shrunk to its size limit)
    4 accuracy       the package loaded by `load_package`, held-out split through the runtime
                     path in fp32 and INT8; the INT8 accuracy gate
    5 size + speed   file sizes (total limit), onnxruntime one-thread latency fp32 vs INT8

Every stage ends in a check; a failed check stops the export and leaves nothing at `out`.
The package is assembled in a staging folder beside `out` and moved there only when complete;
its model.json is written last, after every gate, so an unfinished folder never loads as a
package. Work folders left by a killed export or adaptation are removed by the next one.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx

from edge_ser import family
from edge_ser.backends import segment_graph
from edge_ser.backends.onnxruntime_backend import OnnxRuntimeBackend
from edge_ser.config import to_dict
from edge_ser.engine_build.errors import ExportError
from edge_ser.engine_build.graph_checks import check_deployable
from edge_ser.engine_build.parity import batch_consistency, stream_of_chunks, stream_parity
from edge_ser.package import (
    UNFINISHED_MARK,
    load_package,
    manifest_text,
    sha256_file,
    write_manifest,
)
from edge_ser_export import evaluate, multigate_head, steps
from edge_ser_export.adaptation_memory import manifest_section as exemplar_section
from edge_ser_export.adaptation_memory import save as save_exemplars
from edge_ser_export.config import ExportConfig
from edge_ser_export.data import ExportData
from edge_ser_export.head import head_parity
from edge_ser_export.latency import onnxruntime_latency
from edge_ser_export.memory_bank import clip_embeddings, save_memory_bank
from edge_ser_export.steps import FILES
from edge_ser_export.torch_reference import TorchBackend
from edge_ser_train.trainer import load_checkpoint, predict_logits

STAGES = 5


def _versions() -> dict:
    out = {}
    for name in ("edge-ser", "torch", "onnx", "onnxruntime", "numpy"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "unknown"
    return out


def _git_commit() -> str:
    from edge_ser_train.run import git_commit

    return git_commit()


class _Stages:
    def __init__(self, log):
        self.log = log
        self.number = 0

    def start(self, title: str) -> None:
        self.number += 1
        self.log(f"[{self.number}/{STAGES}] {title}")


def build_package(checkpoint: Path, out: Path, cfg: ExportConfig, force: bool = False,
                  log=print, data=None, bank: dict | None = None,
                  extra: dict | None = None, exemplars: dict | None = None) -> dict:
    """Export `checkpoint` into the package folder `out`; returns the manifest.

    By default the speech comes from the checkpoint's training corpora (`ExportData`). An
    adapted model passes its own `data` (`export.adapted_data.AdaptedExportData`), optionally
    the memory `bank` to ship as it is, and `extra` manifest entries (its adaptation record).
    With a given `bank`, the exemplar set is `exemplars` ({"arrays", "origin"}) shipped as it
    is, or none; without, it is built from the training clips like the bank."""
    out = Path(out).resolve()
    if out.exists() and not force:
        raise ExportError(f"{out} exists; pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned(out)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=work_prefix(out, "staging")))
    try:
        manifest = _build(Path(checkpoint), staging, cfg, log, data, bank, extra or {},
                          exemplars)
        staging.chmod(0o755)  # mkdtemp makes it private; a package is read by other users
        for path in staging.iterdir():
            path.chmod(0o644)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    load_package(out)  # what the runtime will load, verified once more in place
    log(f"wrote {out} ({package_bytes(out)} bytes)")
    return manifest


WORK_KINDS = ("staging", "adapt")
"""Hidden work folders beside an output `OUT`: `.OUT.staging.<pid>.<id>` (a package being
assembled) and `.OUT.adapt.<pid>.<id>` (an adapted checkpoint being exported)."""


def work_prefix(out: Path, kind: str) -> str:
    """The name prefix of this process's work folder of `kind` beside `out`."""
    return f".{out.name}{UNFINISHED_MARK if kind == 'staging' else '.' + kind + '.'}" \
        f"{os.getpid()}."


def remove_abandoned(out: Path) -> list[Path]:
    """Delete the work folders beside `out` that a killed export or adaptation left (their
    process is gone); returns them. Folders of a live process are kept."""
    out = Path(out).resolve()
    removed = []
    try:
        entries = list(out.parent.iterdir())
    except OSError:
        return removed
    for path in entries:
        for kind in WORK_KINDS:
            head = f".{out.name}.{kind}."
            if not path.name.startswith(head) or not path.is_dir() or path.is_symlink():
                continue
            pid = path.name[len(head):].split(".", 1)[0]
            if pid.isdigit() and _alive(int(pid)):
                continue
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _build(checkpoint: Path, root: Path, cfg: ExportConfig, log, data, given_bank: dict | None,
           extra: dict, given_exemplars: dict | None) -> dict:
    stages = _Stages(log)
    model, train_cfg, payload = load_checkpoint(checkpoint)
    labels = tuple(payload["labels"])
    if data is None:
        data = ExportData.from_config(train_cfg, cfg.gate)
    chunk = cfg.encoder.chunk_frames
    created = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
    commit = _git_commit()
    metrics: dict = {}

    stages.start("ONNX fp32 encoder")
    spec = steps.write_fp32(model, root, labels, cfg,
                            {"git_commit": commit, "created_utc": created,
                             "edge_ser_version": _versions()["edge-ser"]})
    graph = {"fp32": check_deployable(onnx.load(str(root / FILES["fp32"])), spec, False)}
    draft = steps.draft_package(root, spec, labels)
    heldout_feats, heldout = data.features(data.heldout, log)
    speech = stream_of_chunks(heldout_feats, cfg.parity.chunks, chunk)
    reference = TorchBackend(steps.streamed_part(model), chunk)
    fp32 = OnnxRuntimeBackend(draft, "fp32")
    parity = fp32_parity(reference, fp32, speech, cfg, steps.family(model) == "multigate")
    log(f"  parity torch vs onnxruntime over {parity['fp32_vs_torch']['chunks']} chunks: "
        f"max |diff| {parity['fp32_worst_abs']:.2e} (limit {cfg.parity.fp32_atol:g})")
    if fp32.runs_segments:  # what batch jobs run (edge_ser.backends.segment_graph)
        try:
            parity["segment_vs_stream"] = segment_graph.check_parity(fp32, heldout_feats)
        except segment_graph.SegmentGraphError as exc:
            raise ExportError(f"whole-segment encoder on the held-out clips: {exc}") from None
        log(f"  whole-segment encoder vs streaming over {len(heldout_feats)} clips: max |diff| "
            f"{parity['segment_vs_stream']['max_abs_diff']:.2e}")
    else:
        parity["segment_vs_stream"] = {"unavailable": fp32.segment_status}
        log(f"  no whole-segment encoder ({fp32.segment_status}); batch jobs will use chunks")

    stages.start("INT8 encoder (QDQ, static calibration)")
    calib_feats, _ = data.features(
        data.calibration_clips(cfg.calibration.clips, cfg.calibration.seed), log)
    quantization = steps.write_int8(model, root, spec, calib_feats, cfg)
    graph["int8"] = check_deployable(onnx.load(str(root / FILES["int8"])), spec, True)
    int8 = OnnxRuntimeBackend(draft, "int8")
    parity.update(int8_parity(fp32, int8, speech, cfg))
    log(f"  {graph['int8']['quantized_ops']} Conv/MatMul/Gemm quantized; int8 vs fp32 relative "
        f"RMS error {parity['int8_vs_fp32']['rel_rms_frames']:.3f} "
        f"(limit {cfg.parity.int8_max_rel_rms:g})")

    stages.start("head and memory bank")
    head = steps.write_head(model, root)
    parity["head_numpy_vs_torch_max_abs"] = (
        multigate_head.head_parity(model, head, head["spec"]) if "spec" in head
        else head_parity(model, head))
    if parity["head_numpy_vs_torch_max_abs"] > cfg.parity.fp32_atol:
        raise ExportError(f"head parity failed: {parity['head_numpy_vs_torch_max_abs']:.3g}")
    exemplars = None
    if given_bank is None:
        train_feats, train_clips = data.features(data.train, log)
        embeddings = clip_embeddings(model, train_feats)
        targets = data.targets(train_clips)
        bank = steps.write_memory_bank(model, root, train_feats, targets, labels, cfg,
                                       embeddings)
        origin = f"from {len(train_clips)} training clips"
        exemplars = steps.write_adaptation_memory(
            root, embeddings, targets, [c.corpus for c in train_clips],
            {c.corpus: c.language for c in train_clips if getattr(c, "language", None)},
            labels, cfg)
    else:
        bank = given_bank
        save_memory_bank(root / FILES["memory_bank"], bank)
        origin = "given (the start model's)"
        if given_exemplars is not None:
            save_exemplars(root / FILES["adaptation_memory"], given_exemplars["arrays"])
            exemplars = exemplar_section(given_exemplars["arrays"], None, None,
                                         given_exemplars["origin"])
    if exemplars is not None:
        log(f"  adaptation memory: {exemplars['exemplars']} source exemplars of "
            f"{len(exemplars['groups'])} corpora, "
            f"{(root / FILES['adaptation_memory']).stat().st_size} bytes ({exemplars['origin']})")
    bank_bytes = (root / FILES["memory_bank"]).stat().st_size
    log(f"  memory bank: {len(bank['centroids'])} centroids {origin}, {bank_bytes} bytes")
    if bank_bytes > cfg.memory_bank.max_bytes:
        raise ExportError(f"memory bank of {bank_bytes} bytes exceeds memory_bank.max_bytes "
                          f"{cfg.memory_bank.max_bytes}")
    shutil.copyfile(checkpoint, root / FILES["checkpoint"])
    provenance = {
        "corpora": data.corpora, "labels_column": "emotion4",
        "checkpoint": {"file": FILES["checkpoint"], "sha256": sha256_file(checkpoint),
                       "git_commit": payload.get("extra", {}).get("metrics", {})
                       .get("git_commit", "unknown")},
        "train_config": payload["config"], "export_config": to_dict(cfg),
        "git_commit": commit, "versions": _versions()}
    # model.json is written last, once every gate has passed: a folder left by a killed
    # export has no manifest, so nothing loads it as a package
    manifest = steps.package_manifest(root, labels, spec, head, bank, cfg, quantization,
                                      created, provenance, metrics, exemplars)
    manifest.update(extra)

    stages.start("accuracy through the runtime path, INT8 gate")
    package = load_package(root, manifest=manifest)
    scorer = family.scorer_for(package)
    pool = family.pooling_for(package, package.embedding_channels).pool_frames
    targets = data.targets(heldout)
    accuracy = {"split": {"test_fraction": cfg.gate.test_fraction, "seed": cfg.gate.seed,
                          "speaker_independent": data.heldout_is_unseen, "clips": len(heldout),
                          "labelled": targets is not None}}
    predictions = {}
    for precision, backend in (("fp32", fp32), ("int8", int8)):
        pooled = evaluate.pooled_clips(backend, heldout_feats, pool)
        predictions[precision] = evaluate.head_predictions(scorer, pooled)
        if targets is None:
            continue
        accuracy[precision] = evaluate.accuracy_report(predictions[precision], targets, heldout,
                                                       labels)
        log(f"  {precision}: UA classifier {accuracy[precision]['all']['classifier']['ua']:.1%}"
            f", memory {accuracy[precision]['all']['memory']['ua']:.1%}, fused "
            f"{accuracy[precision]['all']['fused']['ua']:.1%}")
    torch_pred = predict_logits(model, heldout_feats).argmax(1)
    parity["runtime_fp32_vs_torch_agreement"] = float(
        np.mean(predictions["fp32"]["classifier"] == torch_pred))
    if targets is None:  # unlabelled speech (an adapted model): INT8 must agree with fp32
        accuracy["gate"] = evaluate.agreement_gate(predictions["fp32"], predictions["int8"],
                                                   cfg.gate.min_agreement)
        log(f"  INT8 gate passed: agreement with fp32 {accuracy['gate']['agreement']} "
            f"(at least {cfg.gate.min_agreement})")
    else:
        accuracy["torch_classifier"] = evaluate.accuracy_report(
            {"classifier": torch_pred}, targets, heldout, labels)
        accuracy["gate"] = evaluate.accuracy_gate(accuracy["fp32"], accuracy["int8"],
                                                  cfg.gate.max_ua_drop_points)
        log(f"  INT8 gate passed: UA drop {accuracy['gate']['ua_drop_points']} points "
            f"(limit {cfg.gate.max_ua_drop_points})")

    stages.start("size and speed")
    sizes = {name: (root / name).stat().st_size for name in FILES.values()
             if (root / name).is_file()}
    latency = onnxruntime_latency(package, speech, cfg.package.latency_runs)
    log(f"  sizes: fp32 {sizes[FILES['fp32']]} B, int8 {sizes[FILES['int8']]} B; latency per "
        f"chunk, one thread: fp32 {latency['fp32']['median_ms']:.3f} ms, int8 "
        f"{latency['int8']['median_ms']:.3f} ms")
    for backend in (fp32, int8, reference):
        backend.close()

    metrics.update({"parity": parity, "graph": graph, "accuracy": accuracy, "sizes": sizes,
                    "latency_onnxruntime": latency})
    total = package_bytes(root) + len(manifest_text(manifest).encode("utf-8"))
    limit_key = "max_total_bytes" if manifest["family"] == "tcn" else "multigate_max_total_bytes"
    if total > getattr(cfg.package, limit_key):
        raise ExportError(f"package of {total} bytes exceeds package.{limit_key} "
                          f"{getattr(cfg.package, limit_key)}")
    write_manifest(root, manifest)
    return manifest


def fp32_parity(reference, fp32, speech: np.ndarray, cfg: ExportConfig,
                scaled_state: bool = False) -> dict:
    """torch vs onnxruntime fp32: one stream, four streams batched, batched vs alone.

    `scaled_state` (the multigate family): the state's error counts relative to its size
    (`ParityReport.max_scaled_state`), since the GE2E LSTM's cell state grows over a long stream
    (to tens over the 200 chunks here) and float32 rounding grows with it."""
    parity = {"fp32_vs_torch": stream_parity(reference, fp32, speech).to_dict(),
              "fp32_vs_torch_batch4": stream_parity(reference, fp32, speech, batch=4).to_dict(),
              "fp32_batch_vs_single_max_abs": batch_consistency(fp32, speech)}
    state_key = "max_scaled_state" if scaled_state else "max_abs_state"
    parity["fp32_state_criterion"] = state_key
    parity["fp32_worst_abs"] = max(
        parity["fp32_vs_torch"]["max_abs_frames"], parity["fp32_vs_torch"][state_key],
        parity["fp32_vs_torch_batch4"]["max_abs_frames"],
        parity["fp32_vs_torch_batch4"][state_key],
        parity["fp32_batch_vs_single_max_abs"])
    if parity["fp32_worst_abs"] > cfg.parity.fp32_atol:
        raise ExportError(f"fp32 parity failed: max |torch - onnxruntime| "
                          f"{parity['fp32_worst_abs']:.3g} > {cfg.parity.fp32_atol:g}")
    return parity


def int8_parity(fp32, int8, speech: np.ndarray, cfg: ExportConfig) -> dict:
    report = stream_parity(fp32, int8, speech).to_dict()
    if report["rel_rms_frames"] > cfg.parity.int8_max_rel_rms:
        raise ExportError(f"int8 parity failed: relative RMS error {report['rel_rms_frames']:.3f}"
                          f" > {cfg.parity.int8_max_rel_rms:g}")
    return {"int8_vs_fp32": report}


def package_bytes(root: Path) -> int:
    """Bytes of every file of the package folder (manifest included)."""
    return sum(p.stat().st_size for p in Path(root).rglob("*") if p.is_file())
