"""The contract written into ONNX metadata (metadata_props), shared by every exported graph.

Keys are `contract.METADATA_PREFIX` + a manifest field name; values are JSON. No torch here:
the TensorRT build on a device reads and writes these too.
"""

from __future__ import annotations

import json

import onnx

from edge_ser import contract
from edge_ser.package import FORMAT_VERSION, audio_contract


def contract_metadata(spec: dict, labels: tuple[str, ...], extra: dict) -> dict[str, str]:
    """ONNX metadata_props: METADATA_PREFIX + field -> JSON value."""
    facts = {**audio_contract(), "labels": list(labels), "format_version": FORMAT_VERSION,
             "chunk_frames": spec["chunk_frames"], "stride": spec["stride"],
             "channels": spec["channels"], "input": spec["input"], "output": spec["output"],
             "state": spec["state"], **extra}
    return {contract.METADATA_PREFIX + k: json.dumps(v) for k, v in facts.items()}


def set_metadata(model: onnx.ModelProto, metadata: dict[str, str]) -> None:
    keep = [p for p in model.metadata_props if p.key not in metadata]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
