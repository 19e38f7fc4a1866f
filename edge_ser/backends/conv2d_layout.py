"""The whole-segment graph rewritten for onnxruntime's fastest CPU kernels, same function.

The encoder is 1-D: every tensor between its input and output transposes is (batch, channels,
time). onnxruntime's CPU provider has blocked-channel (NCHWc) kernels only for 2-D
convolutions and pooling; its 1-D depthwise convolutions are slow (about 12 us per call
whatever the length) and the input norm's 100-tap box filter, a depthwise convolution with
equal weights, took a third of the encoder's time. So:

- every (batch, channels, time) tensor becomes (batch, channels, 1, time): the state inputs and
  the transposed features are unsqueezed, each Conv gets 4-D weights and (1, k) attributes,
  Concat over time moves one axis on, per-channel constants get a unit axis, and the output is
  squeezed back before its transpose;
- a depthwise Conv whose weights are all equal (a box filter) becomes AveragePool (times the
  weight sum when that is not 1).

The result equals the 1-D graph up to float rounding (the kernels sum in another order); the
backend's parity check measures that before the graph is used. A graph holding an operator this
rewrite does not know on the (batch, channels, time) path raises `LayoutError`, and the backend
keeps the 1-D graph.
"""

from __future__ import annotations

import numpy as np

from edge_ser.backends import segment_graph

TIME_AXIS_3D = 2
UNIT_AXIS = 2
"""Where the (batch, channels, time) tensors get their unit axis: (batch, channels, 1, time)."""
ELEMENTWISE = frozenset({"Add", "Sub", "Mul", "Relu"})


class LayoutError(ValueError):
    """The graph holds something the 2-D rewrite does not handle."""


def as_conv2d(serialized: bytes, feature_input: str) -> tuple[bytes, dict[str, int]]:
    """The serialized graph rewritten, and what was: {"convolutions", "box_filters"}."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(serialized)
    graph = model.graph
    constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    rewriter = _Rewriter(graph, constants, feature_input)
    nodes = []
    for node in graph.node:
        nodes.extend(rewriter.node(node))
    del graph.node[:]
    graph.node.extend(nodes)
    segment_graph.drop_unused(graph)  # the 1-D weights the 4-D copies replaced
    onnx.checker.check_model(model)
    return model.SerializeToString(), {"convolutions": rewriter.convolutions,
                                       "box_filters": rewriter.box_filters}


class _Rewriter:
    def __init__(self, graph, constants: dict[str, np.ndarray], feature_input: str) -> None:
        self.graph = graph
        self.constants = constants
        self.feature_input = feature_input
        self.inputs_3d = {i.name for i in graph.input
                          if i.name != feature_input and len(i.type.tensor_type.shape.dim) == 3}
        self.unsqueezed: dict[str, str] = {}  # graph input -> its 4-D copy
        self.four_d: set[str] = set()  # tensors now (batch, channels, 1, time)
        self.convolutions = 0
        self.box_filters = 0

    def node(self, node) -> list:
        from onnx import helper

        added = []
        for j, name in enumerate(node.input):
            if name in self.inputs_3d:  # a state input: unsqueezed once, where first used
                if name not in self.unsqueezed:
                    self.unsqueezed[name] = f"{name}/4d"
                    added.append(self._unsqueeze(name, self.unsqueezed[name]))
                    self.four_d.add(self.unsqueezed[name])
                node.input[j] = self.unsqueezed[name]
        if node.op_type == "Transpose" and self.feature_input in node.input:
            # (batch, time, mels) -> (batch, mels, time): unsqueezed right after
            if _attributes(node).get("perm") != [0, 2, 1]:
                raise LayoutError(f"{node.name}: the features are not transposed to "
                                  "(batch, mels, time)")
            output = node.output[0]
            node.output[0] = f"{output}/3d"
            self.four_d.add(output)
            return [*added, node, self._unsqueeze(node.output[0], output)]
        if not any(name in self.four_d for name in node.input):
            return [*added, node]
        for name in node.input:
            if name and name not in self.four_d and name not in self.constants:
                raise LayoutError(f"{node.name}: {name} joins the (batch, channels, time) "
                                  "path from elsewhere")
        if node.op_type == "Transpose":  # back to (batch, time, channels)
            squeezed = f"{node.input[0]}/3d"
            axis = self._constant(f"{squeezed}/axis", np.array([UNIT_AXIS], np.int64))
            squeeze = helper.make_node("Squeeze", [node.input[0], axis], [squeezed])
            node.input[0] = squeezed
            return [*added, squeeze, node]
        if node.op_type == "Conv":
            added += self._conv(node)
        elif node.op_type == "Concat":
            axis = _attributes(node)["axis"]
            if axis not in (TIME_AXIS_3D, -1):
                raise LayoutError(f"{node.name}: Concat over axis {axis}, not time")
            _set_attributes(node, axis=-1)
            added.append(node)
        elif node.op_type in ELEMENTWISE:
            for j, name in enumerate(node.input):
                value = self.constants.get(name)
                if value is not None and value.ndim >= 2:  # per channel: (C, 1) -> (C, 1, 1)
                    node.input[j] = self._constant(
                        f"{name}/4d", value.reshape(value.shape[:-1] + (1, value.shape[-1])))
            added.append(node)
        else:
            raise LayoutError(f"{node.name}: {node.op_type} on the (batch, channels, time) path")
        self.four_d.update(node.output)
        return added

    def _conv(self, node) -> list:
        from onnx import helper

        weights = self.constants.get(node.input[1])
        if weights is None or weights.ndim != 3:
            raise LayoutError(f"{node.name}: Conv weights are not a 3-D constant")
        attributes = _attributes(node)
        if attributes.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            raise LayoutError(f"{node.name}: auto_pad is not supported")
        channels, _, taps = weights.shape
        box = (len(node.input) == 2 and attributes.get("group", 1) == channels
               and weights.shape[1] == 1 and np.all(weights == weights.flat[0])
               and all(attributes.get(k, [1]) == [1] for k in ("strides", "dilations"))
               and not any(attributes.get("pads", [0])))
        if box:
            self.box_filters += 1
            scale = np.float32(float(weights.flat[0]) * taps)
            pooled = node.output[0] if scale == 1 else f"{node.output[0]}/mean"
            nodes = [helper.make_node("AveragePool", [node.input[0]], [pooled],
                                      name=f"{node.name}/box", kernel_shape=[1, taps],
                                      strides=[1, 1])]
            if scale != 1:
                nodes.append(helper.make_node(
                    "Mul", [pooled, self._constant(f"{node.name}/box_sum", scale)],
                    [node.output[0]], name=f"{node.name}/box_sum"))
            return nodes
        self.convolutions += 1
        node.input[1] = self._constant(f"{node.input[1]}/4d", weights[:, :, None, :])
        pads = attributes.get("pads", [0, 0])
        _set_attributes(node, kernel_shape=[1, taps], group=attributes.get("group", 1),
                        strides=[1, *attributes.get("strides", [1])],
                        dilations=[1, *attributes.get("dilations", [1])],
                        pads=[0, pads[0], 0, pads[1]])
        return [node]

    def _unsqueeze(self, name: str, output: str):
        from onnx import helper

        axis = self._constant(f"{output}/axis", np.array([UNIT_AXIS], np.int64))
        return helper.make_node("Unsqueeze", [name, axis], [output])

    def _constant(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        if name not in self.constants:
            self.constants[name] = value
            self.graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
        return name


def _attributes(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _set_attributes(node, **values) -> None:
    from onnx import helper

    kept = [a for a in node.attribute if a.name not in values]
    del node.attribute[:]
    node.attribute.extend(kept)
    node.attribute.extend(helper.make_attribute(k, v) for k, v in values.items())
