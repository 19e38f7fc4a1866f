"""`edge-ser export package` and `edge-ser export sweep`: the stages of `export` that read a
training checkpoint (torch). The device-side stages, `export trt` and `export check`, are the
runtime's (`edge_ser.commands.export`); the command line adds these to the same `export`."""

from __future__ import annotations

from pathlib import Path

from edge_ser.commands.common import (
    TRAIN_MODULES,
    UsageError,
    add_config_options,
    require_extra,
)

EXAMPLE_SET = "memory_bank.centroids_per_class=2"


def add_stages(stages) -> None:
    """Add `package` and `sweep` to the subparsers of `export`."""
    pkg = stages.add_parser(
        "package", help="checkpoint -> verified model package (ONNX fp32 + INT8, head, memory)",
        description="Export a training checkpoint into a model package, in stages that each end "
        "in a check: 1 ONNX fp32 (parity torch vs onnxruntime), 2 INT8 QDQ (static calibration "
        "on training speakers; QDQ and TensorRT operator checks), 3 head and memory bank, "
        "4 accuracy on the fixed held-out split through the runtime path and the INT8 accuracy "
        "gate, 5 size and onnxruntime speed. Needs the checkpoint's training corpora and the "
        "[train] extra (torch).")
    pkg.add_argument("--checkpoint", type=Path, required=True, help="model.pt from `train`")
    pkg.add_argument("--out", type=Path, required=True, help="package folder to write")
    pkg.add_argument("--force", action="store_true", help="replace --out if it exists")
    add_config_options(pkg, "export", "configs/export/default.yaml", EXAMPLE_SET)
    pkg.set_defaults(handler=_package)

    sweep = stages.add_parser(
        "sweep", help="held-out UA over memory bank and fusion settings",
        description="Score classifier, memory bank and fused predictions on the fixed held-out "
        "split for a grid of centroids per class, temperature, top-k and fusion weight (fp32 "
        "embeddings). Prints a table; changes nothing. Needs the [train] extra (torch).")
    sweep.add_argument("--checkpoint", type=Path, required=True)
    add_config_options(sweep, "export", "configs/export/default.yaml", "gate.test_fraction=0.3")
    sweep.set_defaults(handler=_sweep)


def _config(args):
    from edge_ser.config import load_config
    from edge_ser_export.config import ExportConfig

    return load_config(ExportConfig, args.config, args.overrides)


def _package(args) -> int:
    require_extra("edge-ser export package", "train", TRAIN_MODULES)
    from edge_ser_export.package_builder import build_package

    if not args.checkpoint.is_file():
        raise UsageError(f"{args.checkpoint}: checkpoint not found (train one with "
                         "`python main.py train`)")
    build_package(args.checkpoint, args.out, _config(args), force=args.force)
    return 0


def _sweep(args) -> int:
    require_extra("edge-ser export sweep", "train", TRAIN_MODULES)
    from edge_ser_export.sweep import print_sweep

    print_sweep(args.checkpoint, _config(args))
    return 0
