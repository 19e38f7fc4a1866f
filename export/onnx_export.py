"""Stage 1: the streamable encoder as an ONNX graph with its state as inputs and outputs.

    feats (batch, chunk_frames, N_MELS), state_in_i
        -> frames (batch, chunk_frames / stride, C), state_out_i

Only the batch axis is dynamic (bulk processing stacks streams or clips); the chunk and state
shapes are fixed, so the graph has no shape arithmetic left after `fold_static_shapes` and
TensorRT sees plain Conv/Concat/Slice layers. The contract (audio and feature parameters, labels,
chunk and state shapes, tensor names, versions, commit) is written into the ONNX metadata.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from edge_ser import contract
from edge_ser.engine_build.errors import ExportError
from edge_ser.engine_build.onnx_metadata import contract_metadata, set_metadata


class _ChunkGraph(torch.nn.Module):
    """forward(feats, *state) -> (frames, *new_state): forward_chunk with a flat signature."""

    def __init__(self, encoder: torch.nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, feats, *state):
        out, new_state = self.encoder.forward_chunk(feats, tuple(state))
        return (out, *new_state)


def state_batch_axes(encoder) -> list[int]:
    """The batch axis of each state tensor (TCN caches: 0; GRU hidden state: 1)."""
    one, two = encoder.init_state(1), encoder.init_state(2)
    axes = []
    for i, (a, b) in enumerate(zip(one, two)):
        differ = [d for d in range(a.dim()) if a.shape[d] != b.shape[d]]
        if len(differ) != 1:
            raise ExportError(f"state[{i}] of shape {tuple(a.shape)} has no single batch axis")
        axes.append(differ[0])
    return axes


def encoder_spec(encoder, chunk_frames: int) -> dict:
    """The manifest's `encoder` section (names and shapes, batch axis symbolic)."""
    if chunk_frames % encoder.stride:
        raise ExportError(f"chunk_frames {chunk_frames} is not a multiple of the encoder stride "
                          f"{encoder.stride}")
    batch = contract.BATCH_DIM
    state = []
    for i, (tensor, axis) in enumerate(zip(encoder.init_state(1), state_batch_axes(encoder))):
        if 0 in tensor.shape:
            raise ExportError(f"state[{i}] is empty {tuple(tensor.shape)}: this encoder "
                              "configuration keeps no context there and cannot be exported")
        shape: list = list(tensor.shape)
        shape[axis] = batch
        state.append({"input": f"{contract.STATE_INPUT_PREFIX}{i}",
                      "output": f"{contract.STATE_OUTPUT_PREFIX}{i}", "shape": shape})
    return {
        "arch": type(encoder).__name__,
        "stride": encoder.stride,
        "chunk_frames": chunk_frames,
        "channels": encoder.out_dim,
        "receptive_field_frames": encoder.receptive_field_frames(),
        "input": {"name": contract.ENCODER_INPUT,
                  "shape": [batch, chunk_frames, contract.N_MELS]},
        "output": {"name": contract.ENCODER_OUTPUT,
                   "shape": [batch, chunk_frames // encoder.stride, encoder.out_dim]},
        "state": state,
    }


def export_encoder(encoder, chunk_frames: int, path: Path, labels: tuple[str, ...],
                   extra_metadata: dict, opset: int = contract.ONNX_OPSET) -> dict:
    """Write the fp32 encoder graph to `path`; returns its manifest `encoder` section."""
    spec = encoder_spec(encoder, chunk_frames)
    encoder = encoder.eval()
    state = encoder.init_state(1)
    feats = torch.zeros(1, chunk_frames, contract.N_MELS)
    inputs = [spec["input"]["name"], *(s["input"] for s in spec["state"])]
    outputs = [spec["output"]["name"], *(s["output"] for s in spec["state"])]
    dynamic = {spec["input"]["name"]: {0: contract.BATCH_DIM},
               spec["output"]["name"]: {0: contract.BATCH_DIM}}
    for s in spec["state"]:
        axis = s["shape"].index(contract.BATCH_DIM)
        dynamic[s["input"]] = {axis: contract.BATCH_DIM}
        dynamic[s["output"]] = {axis: contract.BATCH_DIM}
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter is the one that needs no extra packages; its deprecation
        # notice and the tracer's note on the stride check (a constant here) are expected.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # GRU: the exporter's batch-size advice does not apply, h0 is a graph input here.
        warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size")
        # The wrapper must be in eval mode: the exporter restores the wrapper's mode on all
        # submodules afterwards, which would leave the encoder training (BatchNorm, dropout).
        try:
            torch.onnx.export(_ChunkGraph(encoder).eval(), (feats, *state), str(path),
                              input_names=inputs, output_names=outputs, dynamic_axes=dynamic,
                              opset_version=opset, do_constant_folding=True, dynamo=False)
        except torch.onnx.errors.OnnxExporterError as exc:
            raise ExportError(f"{type(encoder).__name__}.forward_chunk cannot be traced to ONNX "
                              f"({str(exc).splitlines()[0]}); a weight or shape computed from "
                              "a tensor's size must come from Python ints or buffers") from exc
    model = fold_static_shapes(onnx.load(str(path)))
    declare_io_shapes(model, spec)
    model.producer_name = "edge-ser"
    model.doc_string = "edge-ser streamable emotion encoder (fp32)"
    set_metadata(model, contract_metadata(spec, labels, {**extra_metadata, "precision": "fp32"}))
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return spec


def save_initial_state(path: Path, encoder, spec: dict) -> None:
    """initial_state.npz: the encoder's state before the first chunk, batch 1, by input name."""
    arrays = {s["input"]: t.detach().numpy().astype(np.float32)
              for s, t in zip(spec["state"], encoder.init_state(1))}
    np.savez_compressed(path, **arrays)


def declare_io_shapes(model: onnx.ModelProto, spec: dict) -> None:
    """Write the manifest's shapes onto the graph inputs and outputs: the tracer names the
    fixed time axis of sliced state outputs as if it were dynamic. Shape inference (strict, in
    the checker) then confirms the graph computes exactly these shapes."""
    shapes = {spec["input"]["name"]: spec["input"]["shape"],
              spec["output"]["name"]: spec["output"]["shape"]}
    for s in spec["state"]:
        shapes[s["input"]] = s["shape"]
        shapes[s["output"]] = s["shape"]
    for vi in [*model.graph.input, *model.graph.output]:
        dims = vi.type.tensor_type.shape.dim
        del dims[:]
        for d in shapes[vi.name]:
            dim = dims.add()
            if isinstance(d, str):
                dim.dim_param = d
            else:
                dim.dim_value = d


def _static_dims(value_info) -> list[int | None]:
    dims = value_info.type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else None for d in dims]


def fold_static_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Replace shape arithmetic on fixed axes by constants and drop what becomes dead.

    Tracing records `x.shape[2]` as Shape -> Gather even where axis 2 is fixed; with only the
    batch axis dynamic, every such value is a constant. A node is folded when all its inputs are
    known: initializers, Constant nodes, and Shape/Gather on fixed axes of inferred shapes."""
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    graph = inferred.graph
    dims = {vi.name: _static_dims(vi)
            for vi in [*graph.value_info, *graph.input, *graph.output]}
    known = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    shapes: dict[str, list[int | None]] = {}  # outputs of Shape nodes with some axes dynamic
    kept, folded = [], []
    for node in graph.node:
        value = None
        if node.op_type == "Constant":
            value = numpy_helper.to_array(node.attribute[0].t) if (
                node.attribute[0].name == "value") else None
        elif node.op_type == "Shape" and node.input[0] in dims and not node.attribute:
            shape = dims[node.input[0]]
            if all(d is not None for d in shape):
                value = np.array(shape, dtype=np.int64)
            else:
                shapes[node.output[0]] = shape
        elif (node.op_type == "Gather" and node.input[0] in shapes
              and node.input[1] in known):
            picked = np.asarray(shapes[node.input[0]], dtype=object)[known[node.input[1]]]
            if all(d is not None for d in np.atleast_1d(picked)):
                value = np.asarray(picked, dtype=np.int64)
        elif node.input and all(name in known for name in node.input if name):
            value = _evaluate(node, known, inferred.opset_import)
        if value is not None and len(node.output) == 1:
            known[node.output[0]] = value
            folded.append(node.output[0])
        else:
            kept.append(node)
    # Keep only nodes that feed a graph output, and the constants they read.
    needed = {o.name for o in graph.output}
    live = []
    for node in reversed(kept):
        if any(o in needed for o in node.output):
            live.append(node)
            needed.update(i for i in node.input if i)
    live.reverse()
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(live)
    initializers = [numpy_helper.from_array(np.asarray(known[name]), name)
                    for name in [*(i.name for i in model.graph.initializer), *folded]
                    if name in needed]
    del out.graph.initializer[:]
    out.graph.initializer.extend(initializers)
    del out.graph.value_info[:]
    return out


def _evaluate(node, known: dict, opset_import) -> np.ndarray | None:
    """Run one node on constant inputs with the ONNX reference implementation."""
    if node.op_type in ("RandomNormal", "RandomUniform", "RandomNormalLike",
                        "RandomUniformLike", "Multinomial") or len(node.output) != 1:
        return None
    inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(known[n].dtype),
                                            known[n].shape) for n in node.input if n]
    output = helper.make_tensor_value_info(node.output[0], onnx.TensorProto.UNDEFINED, None)
    single = helper.make_model(helper.make_graph([node], "fold", inputs, [output]),
                               opset_imports=list(opset_import))
    result = ReferenceEvaluator(single).run(None, {n: known[n] for n in node.input if n})
    return np.asarray(result[0])
