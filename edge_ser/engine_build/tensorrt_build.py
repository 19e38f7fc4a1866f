"""`export trt`: build a TensorRT engine of a package on the device that will run it.

    ONNX (encoder.int8.onnx, or encoder.onnx converted to an fp16 graph)
      -> TensorRT 10 ONNX parser into a strongly typed network (precisions come from the graph)
      -> two optimization profiles, both from the manifest's `encoder.profiles`:
         0 "stream": batch 1..stream.max, 1 "batch": batch min/opt/max
      -> build with a timing cache that persists between builds on this device
      -> engines/encoder.<precision>.trt<version>.<gpu>.sm<cc>.engine
      -> parity against onnxruntime (stream and batch profile); only then is the engine
         registered in the manifest (with its sha256) for the runtime to find.

No torch here: this runs on a Jetson with TensorRT, cuda-python, onnx and onnxruntime.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import numpy as np
import onnx

from edge_ser.backends.onnxruntime_backend import OnnxRuntimeBackend
from edge_ser.backends.tensorrt_backend import (
    DeviceIdentity,
    TensorRTBackend,
    device_identity,
    engine_file_name,
    import_tensorrt,
    version_tuple,
)
from edge_ser.engine_build.config import TensorRTConfig
from edge_ser.engine_build.errors import ExportError
from edge_ser.engine_build.fp16 import to_fp16
from edge_ser.engine_build.parity import batch_consistency, random_feats, stream_parity
from edge_ser.package import (
    ModelPackage,
    file_entry,
    load_package,
    state_shape,
    write_manifest,
)

PRECISIONS = ("int8", "fp16")
PROFILES = ("stream", "batch")
_ONNX_SOURCE = {"int8": "int8", "fp16": "fp32"}
"""Which ONNX encoder of the package each engine precision builds from and is checked against."""


def profile_shapes(package: ModelPackage, profile: str) -> dict[str, tuple[tuple, tuple, tuple]]:
    """{input name: (min, opt, max) shape} of one optimization profile of the manifest."""
    batches = package.manifest["encoder"]["profiles"][profile]
    specs = [package.manifest["encoder"]["input"],
             *({"name": s["input"], "shape": s["shape"]} for s in package.state_specs())]
    return {s["name"]: tuple(state_shape(s["shape"], batches[k]) for k in ("min", "opt", "max"))
            for s in specs}


def onnx_for_engine(package: ModelPackage, precision: str, workdir: Path) -> Path:
    """The ONNX file the engine of `precision` is built from (fp16: converted into workdir)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "int8":
        return package.encoder_path("int8")
    path = workdir / "encoder.fp16.onnx"
    onnx.save(to_fp16(onnx.load(str(package.encoder_path("fp32")))), str(path))
    return path


def trtexec_command(package: ModelPackage, precision: str, onnx_path: Path, engine_path: Path,
                    timing_cache: Path, cfg: TensorRTConfig) -> str:
    """The trtexec line that builds the same engine (the parity check and registration are
    then `export trt --engine FILE`)."""
    parts = ["trtexec", f"--onnx={onnx_path}", "--stronglyTyped", f"--saveEngine={engine_path}",
             f"--timingCacheFile={timing_cache}", f"--memPoolSize=workspace:{cfg.workspace_mib}",
             f"--builderOptimizationLevel={cfg.optimization_level}"]
    for index, profile in enumerate(PROFILES):
        shapes = profile_shapes(package, profile)
        parts.append(f"--profile={index}")
        for k, flag in enumerate(("--minShapes", "--optShapes", "--maxShapes")):
            spec = ",".join(f"{name}:{'x'.join(map(str, s[k]))}" for name, s in shapes.items())
            parts.append(f"{flag}={spec}")
    return " \\\n  ".join(parts)


def build_engine(package: ModelPackage, precision: str, onnx_path: Path, engine_path: Path,
                 timing_cache: Path, cfg: TensorRTConfig, log=print) -> None:
    """Parse, configure and build; writes the engine and the updated timing cache."""
    trt, _ = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT could not parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, cfg.workspace_mib << 20)
    config.builder_optimization_level = cfg.optimization_level
    cache_bytes = timing_cache.read_bytes() if timing_cache.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)
    for profile in PROFILES:
        optimization_profile = builder.create_optimization_profile()
        for name, (low, opt, high) in profile_shapes(package, profile).items():
            optimization_profile.set_shape(name, low, opt, high)
        config.add_optimization_profile(optimization_profile)
    log(f"  building {engine_path.name} (timing cache: {len(cache_bytes)} bytes loaded)")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT failed to build the {precision} engine (see its log above)")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    engine_path.write_bytes(bytes(serialized))
    timing_cache.parent.mkdir(parents=True, exist_ok=True)
    timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))


def check_engine(package: ModelPackage, precision: str, engine_file: str, cfg: TensorRTConfig,
                 feats: np.ndarray, chunks: int) -> dict:
    """Parity of the engine against onnxruntime, on the streaming and the batch profile."""
    limit = cfg.int8_max_rel_rms if precision == "int8" else cfg.fp16_max_rel_rms
    engine = TensorRTBackend(package, precision, engine_file=engine_file)
    reference = OnnxRuntimeBackend(package, _ONNX_SOURCE[precision])
    try:
        speech = np.resize(feats, (chunks * package.chunk_frames, feats.shape[1]))
        batch = package.manifest["encoder"]["profiles"]["batch"]["opt"]
        report = {"reference": f"onnxruntime {_ONNX_SOURCE[precision]}",
                  "stream": stream_parity(reference, engine, speech).to_dict(),
                  "batch": stream_parity(reference, engine, speech, batch=batch).to_dict(),
                  "batch_vs_single_max_abs": batch_consistency(engine, speech),
                  "limit_rel_rms": limit}
    finally:
        engine.close()
        reference.close()
    worst = max(report["stream"]["rel_rms_frames"], report["batch"]["rel_rms_frames"])
    if worst > limit:
        raise ExportError(f"{engine_file}: parity against {report['reference']} failed: relative "
                          f"RMS error {worst:.4f} > {limit}")
    return report


def register_engine(package: ModelPackage, precision: str, engine_file: str,
                    identity: DeviceIdentity, parity: dict) -> ModelPackage:
    """Add (or replace) the engine's manifest entry, then reload and verify the package."""
    manifest = dict(package.manifest)
    entry = {"file": engine_file, "precision": precision, **file_entry(package.root, engine_file),
             "tensorrt_version": identity.tensorrt_version, "gpu": identity.gpu,
             "compute_capability": identity.compute_capability,
             "profiles": package.manifest["encoder"]["profiles"],
             "built_utc": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
             "parity": parity}
    manifest["engines"] = [
        e for e in manifest.get("engines", [])
        if not (e.get("precision") == precision and e.get("gpu") == identity.gpu
                and e.get("compute_capability") == identity.compute_capability
                and version_tuple(e.get("tensorrt_version", "")) ==
                version_tuple(identity.tensorrt_version))] + [entry]
    write_manifest(package.root, manifest)
    return load_package(package.root)


def export_trt(package: ModelPackage, precision: str, cfg: TensorRTConfig, timing_cache: Path,
               feats: np.ndarray | None = None, engine: Path | None = None, chunks: int = 200,
               log=print) -> dict:
    """Build (or take `engine`, e.g. from trtexec), check parity, register. Returns the entry."""
    identity = device_identity()
    engine_file = engine_file_name(precision, identity)
    engine_path = package.path(engine_file)
    log(f"[1/3] {precision} engine for {identity.gpu} (sm {identity.compute_capability}), "
        f"TensorRT {identity.tensorrt_version}")
    if engine is not None:
        engine_path.parent.mkdir(parents=True, exist_ok=True)
        engine_path.write_bytes(Path(engine).read_bytes())
    else:
        with tempfile.TemporaryDirectory() as workdir:
            build_engine(package, precision, onnx_for_engine(package, precision, Path(workdir)),
                         engine_path, timing_cache, cfg, log)
    log("[2/3] parity against onnxruntime")
    speech = feats if feats is not None else random_feats(chunks * package.chunk_frames)
    try:
        parity = check_engine(package, precision, engine_file, cfg, speech, chunks)
    except BaseException:
        engine_path.unlink(missing_ok=True)  # an engine that fails its check is not kept
        raise
    log(f"  stream rel. RMS {parity['stream']['rel_rms_frames']:.2e}, batch rel. RMS "
        f"{parity['batch']['rel_rms_frames']:.2e} (limit {parity['limit_rel_rms']})")
    log("[3/3] registering the engine in the manifest")
    package = register_engine(package, precision, engine_file, identity, parity)
    log(f"wrote {engine_path} ({engine_path.stat().st_size} bytes)")
    return next(e for e in package.manifest["engines"] if e["file"] == engine_file)
