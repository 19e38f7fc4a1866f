"""Static checks of an exported encoder graph, run at export and in the tests (no GPU needed).

- only operators that the TensorRT 10 ONNX parser imports;
- only the declared dynamic axis: every input and output dimension is fixed except the one
  named `batch`, and the fixed ones equal the manifest's shapes;
- explicit INT8 quantization in the form TensorRT builds into INT8 kernels: every Conv, MatMul
  and Gemm reads DequantizeLinear on its data input (fed by a QuantizeLinear, int8, zero point
  0: symmetric) and on its weight input (an int8 constant, per-channel scales along the output
  channel axis, zero point 0); biases stay float (TensorRT has no int32 DequantizeLinear).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from edge_ser import contract

TRT10_ONNX_OPS = frozenset({
    # The subset of the TensorRT 10 ONNX parser's operators (onnx-tensorrt operators.md) that
    # an encoder export may produce; anything else is refused before it reaches a device.
    "Add", "Sub", "Mul", "Div", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Clip", "Abs", "Neg",
    "Sqrt", "Exp", "Log", "Pow", "Conv", "MatMul", "Gemm", "BatchNormalization", "GRU", "LSTM",
    "Concat", "Slice", "Transpose", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Constant",
    "Cast", "Shape", "Gather", "ReduceMean", "ReduceSum", "Softmax", "Pad", "Split",
    "QuantizeLinear", "DequantizeLinear",
})
QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")


class GraphCheckError(ValueError):
    """An exported graph breaks a deployment rule; the message lists every violation."""


def _raise(problems: list[str], what: str) -> None:
    if problems:
        raise GraphCheckError(f"{what}: " + "; ".join(problems))


def check_operators(model: onnx.ModelProto) -> None:
    """Every node is an ONNX-domain operator that TensorRT 10 imports."""
    problems = sorted({f"{n.op_type} ({n.domain or 'ai.onnx'}) is not supported by TensorRT 10"
                       for n in model.graph.node
                       if n.op_type not in TRT10_ONNX_OPS or n.domain not in ("", "ai.onnx")})
    _raise(problems, "unsupported operators")


def _dims(value_info) -> list:
    return [d.dim_param if d.HasField("dim_param") else (d.dim_value if d.HasField("dim_value")
                                                         else None)
            for d in value_info.type.tensor_type.shape.dim]


def check_io_shapes(model: onnx.ModelProto, encoder_spec: dict) -> None:
    """Graph inputs/outputs are exactly the manifest's, with `batch` the only dynamic axis."""
    expected = {encoder_spec["input"]["name"]: encoder_spec["input"]["shape"],
                encoder_spec["output"]["name"]: encoder_spec["output"]["shape"]}
    for s in encoder_spec["state"]:
        expected[s["input"]] = s["shape"]
        expected[s["output"]] = s["shape"]
    actual = {vi.name: _dims(vi) for vi in [*model.graph.input, *model.graph.output]}
    problems = []
    if set(actual) != set(expected):
        problems.append(f"graph tensors {sorted(actual)} differ from the manifest's "
                        f"{sorted(expected)}")
    for name in sorted(set(actual) & set(expected)):
        dynamic = [d for d in actual[name] if not isinstance(d, int)]
        if dynamic != [contract.BATCH_DIM]:
            problems.append(f"{name} has dynamic axes {dynamic}, only one "
                            f"'{contract.BATCH_DIM}' axis is declared")
        elif actual[name] != expected[name]:
            problems.append(f"{name} has shape {actual[name]}, the manifest says "
                            f"{expected[name]}")
    for vi in [*model.graph.input, *model.graph.output]:
        if vi.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            problems.append(f"{vi.name} is not float32")
    _raise(problems, "input/output shapes")


def check_qdq(model: onnx.ModelProto) -> dict:
    """Explicit symmetric INT8 on both inputs of every Conv/MatMul/Gemm. Returns a summary."""
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    inits = {i.name: i for i in graph.initializer}

    def array(name):
        if name in inits:
            return numpy_helper.to_array(inits[name])
        node = producer.get(name)
        if node is not None and node.op_type == "Constant":
            return numpy_helper.to_array(node.attribute[0].t)
        return None

    def zero_point_ok(node) -> bool:
        zp = array(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        return zp is None or (zp.dtype == np.int8 and not zp.any())

    problems, quantized = [], 0
    for node in graph.node:
        if node.op_type not in QUANTIZED_OPS:
            continue
        label = f"{node.op_type} {node.name or node.output[0]}"
        data_dq, weight_dq = (producer.get(node.input[0]), producer.get(node.input[1]))
        if data_dq is None or data_dq.op_type != "DequantizeLinear":
            problems.append(f"{label}: data input is not fed by DequantizeLinear")
        else:
            q = producer.get(data_dq.input[0])
            if q is None or q.op_type != "QuantizeLinear":
                problems.append(f"{label}: data DequantizeLinear is not fed by QuantizeLinear")
            elif not (zero_point_ok(q) and zero_point_ok(data_dq)):
                problems.append(f"{label}: activation zero point is not int8 0 (asymmetric)")
            scale = array(data_dq.input[1])
            if scale is None or scale.size != 1:
                problems.append(f"{label}: activation scale must be one constant")
        if weight_dq is None or weight_dq.op_type != "DequantizeLinear":
            problems.append(f"{label}: weight input is not fed by DequantizeLinear")
        else:
            weight = array(weight_dq.input[0])
            if weight is None or weight.dtype != np.int8:
                problems.append(f"{label}: weight is not an int8 constant")
            elif not zero_point_ok(weight_dq):
                problems.append(f"{label}: weight zero point is not int8 0 (asymmetric)")
            else:
                scale = array(weight_dq.input[1])
                axis = next((a.i for a in weight_dq.attribute if a.name == "axis"), 1)
                channels = weight.shape[0 if node.op_type == "Conv" else -1]
                if scale is None or scale.ndim != 1 or scale.size != channels:
                    problems.append(f"{label}: weight scales are not per output channel")
                elif node.op_type == "Conv" and axis != 0:
                    problems.append(f"{label}: per-channel axis {axis}, expected 0")
        if len(node.input) > 2 and node.input[2]:
            bias_src = producer.get(node.input[2])
            if bias_src is not None and bias_src.op_type == "DequantizeLinear":
                problems.append(f"{label}: bias is quantized (TensorRT needs a float bias)")
        quantized += 1
    _raise(problems, "INT8 QDQ pattern")
    if quantized == 0:
        raise GraphCheckError("INT8 QDQ pattern: the graph has no Conv/MatMul/Gemm to quantize")
    return {"quantized_ops": quantized,
            "quantize_nodes": sum(n.op_type == "QuantizeLinear" for n in graph.node),
            "dequantize_nodes": sum(n.op_type == "DequantizeLinear" for n in graph.node)}


def check_deployable(model: onnx.ModelProto, encoder_spec: dict, quantized: bool) -> dict:
    """All checks for one encoder graph; returns a summary for the manifest."""
    onnx.checker.check_model(model, full_check=True)
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset < contract.ONNX_OPSET:
        raise GraphCheckError(f"opset {opset} is below {contract.ONNX_OPSET}")
    check_operators(model)
    check_io_shapes(model, encoder_spec)
    summary = {"opset": opset, "nodes": len(model.graph.node)}
    if quantized:
        summary.update(check_qdq(model))
    return summary
