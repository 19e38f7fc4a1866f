"""`edge-ser export`: training checkpoint -> model package; TensorRT engines on the device.

    export package --checkpoint CKPT --out PKG   the numbered stages (ONNX fp32, INT8 QDQ, head
                                                 and memory bank, accuracy gate, size/speed),
                                                 each ending in a check
    export trt --model PKG --precision int8|fp16 build a TensorRT engine on this device, check
                                                 it against onnxruntime, register it in PKG
    export check --model PKG                     verify a package and its graphs (no GPU)
    export sweep --checkpoint CKPT               memory bank / fusion settings vs held-out UA
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge_ser.commands.common import REPO_ROOT, UsageError, add_config_options

DEFAULT_EXPORT_CONFIG = REPO_ROOT / "configs" / "export" / "default.yaml"
DEFAULT_TIMING_CACHE = Path.home() / ".cache" / "edge-ser" / "tensorrt-timing.cache"


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="export a checkpoint to a model package; TensorRT engines",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    stages = p.add_subparsers(dest="export_command", metavar="WHAT", required=True)

    pkg = stages.add_parser(
        "package", help="checkpoint -> verified model package (ONNX fp32 + INT8, head, memory)",
        description="Export a training checkpoint into a model package, in stages that each end "
        "in a check: 1 ONNX fp32 (parity torch vs onnxruntime), 2 INT8 QDQ (static calibration "
        "on training speakers; QDQ and TensorRT operator checks), 3 head and memory bank, "
        "4 accuracy on the fixed held-out split through the runtime path and the INT8 accuracy "
        "gate, 5 size and onnxruntime speed. Needs the checkpoint's training corpora.")
    pkg.add_argument("--checkpoint", type=Path, required=True, help="model.pt from `train`")
    pkg.add_argument("--out", type=Path, required=True, help="package folder to write")
    pkg.add_argument("--force", action="store_true", help="replace --out if it exists")
    add_config_options(pkg, DEFAULT_EXPORT_CONFIG)

    trt = stages.add_parser(
        "trt", help="build a TensorRT engine of a package on this device",
        description="Build a TensorRT 10 engine from the package's INT8 (QDQ) or fp32->fp16 "
        "ONNX encoder on this GPU (strongly typed network; a streaming and a batch "
        "optimization profile from the manifest; a persistent timing cache), check it against "
        "onnxruntime, and register it in the package's manifest. Needs tensorrt and "
        "cuda-python. With --trtexec it only prints the equivalent trtexec command.")
    trt.add_argument("--model", type=Path, required=True, help="model package folder")
    trt.add_argument("--precision", choices=("int8", "fp16"), default="int8")
    trt.add_argument("--timing-cache", type=Path, default=DEFAULT_TIMING_CACHE,
                     help=f"timing cache file, read and updated (default: {DEFAULT_TIMING_CACHE})")
    trt.add_argument("--audio", type=Path, nargs="+",
                     help="speech files for the parity check (default: synthetic log-mel)")
    trt.add_argument("--engine", type=Path,
                     help="check and register this engine (e.g. built by trtexec) instead of "
                     "building one")
    trt.add_argument("--trtexec", action="store_true",
                     help="print the equivalent trtexec command (writes the fp16 ONNX it needs "
                     "to PKG/engines/) and stop")
    add_config_options(trt, DEFAULT_EXPORT_CONFIG)

    check = stages.add_parser("check", help="verify a package and its ONNX graphs",
                              description="Load a package as the runtime does (checksums, "
                              "contract, shapes) and run the deployment checks on its graphs: "
                              "TensorRT 10 operators, declared dynamic axes, the INT8 QDQ "
                              "pattern, TensorRT profile shapes. Prints a JSON summary.")
    check.add_argument("--model", type=Path, help="package folder (default: the bundled one)")

    sweep = stages.add_parser(
        "sweep", help="held-out UA over memory bank and fusion settings",
        description="Score classifier, memory bank and fused predictions on the fixed held-out "
        "split for a grid of centroids per class, temperature, top-k and fusion weight (fp32 "
        "embeddings). Prints a table; changes nothing.")
    sweep.add_argument("--checkpoint", type=Path, required=True)
    add_config_options(sweep, DEFAULT_EXPORT_CONFIG)


def _config(args):
    from edge_ser.config import load_config
    from edge_ser_export.config import ExportConfig

    return load_config(ExportConfig, args.config, args.overrides)


def run(args: argparse.Namespace) -> int:
    return {"package": _package, "trt": _trt, "check": _check, "sweep": _sweep}[
        args.export_command](args)


def _package(args) -> int:
    from edge_ser_export.package_builder import build_package

    if not args.checkpoint.is_file():
        raise UsageError(f"{args.checkpoint}: checkpoint not found (train one with "
                         "`python main.py train`)")
    build_package(args.checkpoint, args.out, _config(args), force=args.force)
    return 0


def _trt(args) -> int:
    from edge_ser.package import load_package
    from edge_ser_export import tensorrt_build

    cfg = _config(args)
    package = load_package(args.model)
    if args.trtexec:
        workdir = package.path("engines")
        if args.precision == "fp16":  # the fp16 graph is written for trtexec to read
            workdir.mkdir(exist_ok=True)
        onnx_path = tensorrt_build.onnx_for_engine(package, args.precision, workdir)
        engine = workdir / f"encoder.{args.precision}.trtexec.engine"
        print(tensorrt_build.trtexec_command(package, args.precision, onnx_path, engine,
                                             args.timing_cache, cfg.tensorrt))
        print(f"# then: python main.py export trt --model {args.model} --precision "
              f"{args.precision} --engine {engine}")
        return 0
    feats = None
    if args.audio:
        import numpy as np

        from edge_ser.audio import load_mono_16k
        from edge_ser.features import log_mel

        feats = np.concatenate([log_mel(load_mono_16k(p)) for p in args.audio])
    tensorrt_build.export_trt(package, args.precision, cfg.tensorrt, args.timing_cache,
                              feats=feats, engine=args.engine)
    return 0


def _check(args) -> int:
    import onnx

    from edge_ser.package import load_package
    from edge_ser_export.graph_checks import check_deployable
    from edge_ser_export.tensorrt_build import PROFILES, profile_shapes

    package = load_package(args.model)
    spec = package.manifest["encoder"]
    summary = {"package": str(package.root), "labels": list(package.labels), "graphs": {}}
    for precision in spec["files"]:
        model = onnx.load(str(package.encoder_path(precision)))
        summary["graphs"][precision] = check_deployable(model, spec, precision == "int8")
    summary["tensorrt_profiles"] = {p: {k: list(map(list, v)) for k, v in
                                        profile_shapes(package, p).items()} for p in PROFILES}
    summary["engines"] = [{k: e[k] for k in ("file", "precision", "gpu", "tensorrt_version")}
                          for e in package.manifest.get("engines", [])]
    print(json.dumps(summary, indent=2))
    return 0


def _sweep(args) -> int:
    from edge_ser_export.sweep import print_sweep

    print_sweep(args.checkpoint, _config(args))
    return 0
