"""The fp32 encoder as an fp16 graph with float32 inputs and outputs, for a strongly typed
TensorRT FP16 engine (a strongly typed network takes every precision from the graph itself).

Float initializers and Constant values become float16; each float input is cast to float16 on
entry and each output back to float32 on exit, so the engine keeps the package's float32
calling convention (the state is carried in float32 between calls).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edge_ser.engine_build.onnx_metadata import set_metadata


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    for init in graph.initializer:
        if init.data_type == TensorProto.FLOAT:
            init.CopyFrom(numpy_helper.from_array(
                numpy_helper.to_array(init).astype(np.float16), init.name))
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type == TensorProto.FLOAT:
                    attr.t.CopyFrom(numpy_helper.from_array(
                        numpy_helper.to_array(attr.t).astype(np.float16), attr.t.name))
        if node.op_type == "Cast":
            for attr in node.attribute:
                if attr.name == "to" and attr.i == TensorProto.FLOAT:
                    attr.i = TensorProto.FLOAT16
    casts_in, casts_out = [], []
    for vi in graph.input:
        if vi.type.tensor_type.elem_type != TensorProto.FLOAT:
            continue
        half = f"{vi.name}__fp16"
        for node in graph.node:
            node.input[:] = [half if i == vi.name else i for i in node.input]
        casts_in.append(helper.make_node("Cast", [vi.name], [half], to=TensorProto.FLOAT16,
                                         name=f"cast_in_{vi.name}"))
    for vi in graph.output:
        if vi.type.tensor_type.elem_type != TensorProto.FLOAT:
            continue
        half = f"{vi.name}__fp16"
        for node in graph.node:
            node.output[:] = [half if o == vi.name else o for o in node.output]
            node.input[:] = [half if i == vi.name else i for i in node.input]
        casts_out.append(helper.make_node("Cast", [half], [vi.name], to=TensorProto.FLOAT,
                                          name=f"cast_out_{vi.name}"))
    nodes = [*casts_in, *graph.node, *casts_out]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]
    metadata = {p.key: p.value for p in out.metadata_props}
    metadata = {k: ('"fp16"' if k.endswith(".precision") else v) for k, v in metadata.items()}
    set_metadata(out, metadata)
    onnx.checker.check_model(out, full_check=True)
    return out
