"""`edge-ser export`: training checkpoint -> model package; TensorRT engines on the device.

    export package --checkpoint CKPT --out PKG   the numbered stages (ONNX fp32, INT8 QDQ, head
                                                 and memory bank, accuracy gate, size/speed),
                                                 each ending in a check (needs torch)
    export trt --model PKG --precision int8|fp16 build a TensorRT engine on this device, check
                                                 it against onnxruntime, register it in PKG
    export check --model PKG                     verify a package and its graphs (no GPU)
    export sweep --checkpoint CKPT               memory bank / fusion settings vs held-out UA
                                                 (needs torch)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge_ser.commands.common import add_config_options

ENGINE_CONFIG_DOC = "edge_ser/engine_build/config.py: a `tensorrt:` section"
DEFAULT_TIMING_CACHE = Path.home() / ".cache" / "edge-ser" / "tensorrt-timing.cache"


def add_parser(sub):
    """Register `export` with its device-side stages, `trt` and `check`; returns its stage
    subparsers, to which the export layer adds `package` and `sweep` (they read a training
    checkpoint: `edge_ser_export.package_command.add_stages`)."""
    p = sub.add_parser("export", help="export a checkpoint to a model package; TensorRT engines",
                       description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    stages = p.add_subparsers(dest="export_command", metavar="WHAT", required=True)

    trt = stages.add_parser(
        "trt", help="build a TensorRT engine of a package on this device",
        description="Build a TensorRT 10 engine from the package's INT8 (QDQ) or fp32->fp16 "
        "ONNX encoder on this GPU (strongly typed network; a streaming and a batch "
        "optimization profile from the manifest; a persistent timing cache), check it against "
        "onnxruntime, and register it in the package's manifest. Needs tensorrt and "
        "cuda-python. With --trtexec it only prints the equivalent trtexec command.")
    trt.add_argument("--model", type=Path, required=True, help="model package folder")
    trt.add_argument("--precision", choices=("int8", "fp16"), default="int8",
                     help="int8: from the package's INT8 (QDQ) encoder; fp16: from its fp32 "
                     "encoder converted to an fp16 graph (default: int8)")
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
    add_config_options(trt, "engine build", ENGINE_CONFIG_DOC, "tensorrt.workspace_mib=1024")
    trt.set_defaults(handler=_trt)

    check = stages.add_parser("check", help="verify a package and its ONNX graphs",
                              description="Load a package as the runtime does (checksums, "
                              "contract, shapes) and run the deployment checks on its graphs: "
                              "TensorRT 10 operators, declared dynamic axes, the INT8 QDQ "
                              "pattern, TensorRT profile shapes. Prints a JSON summary, with "
                              "the engine build settings `export trt` would use (--config, "
                              "--set).")
    check.add_argument("--model", type=Path, help="package folder (default: the bundled one)")
    add_config_options(check, "engine build", ENGINE_CONFIG_DOC,
                       "tensorrt.int8_max_rel_rms=0.05")
    check.set_defaults(handler=_check)

    return stages


def _config(args):
    from edge_ser.config import load_config
    from edge_ser.engine_build.config import EngineBuildConfig

    return load_config(EngineBuildConfig, args.config, args.overrides)


def run(args: argparse.Namespace) -> int:
    return args.handler(args)


def _trt(args) -> int:
    from edge_ser.engine_build import tensorrt_build
    from edge_ser.package import load_package

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

    from edge_ser.config import to_dict
    from edge_ser.engine_build.graph_checks import check_deployable
    from edge_ser.engine_build.tensorrt_build import PROFILES, profile_shapes
    from edge_ser.package import load_package

    cfg = _config(args)
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
    summary["engine_build"] = to_dict(cfg)
    print(json.dumps(summary, indent=2))
    return 0
