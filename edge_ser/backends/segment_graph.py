"""The whole-segment encoder: a package's streaming graph with a free number of frames.

    feats (batch, frames, N_MELS), state_in_i (the initial state)
        -> frames (batch, frames / stride, C)

The streaming encoder takes fixed chunks of `chunk_frames`, and on onnxruntime a call costs
about the same whatever its length (per-node overhead dominates a 20-frame call), so a batch job
would spend most of its encoder time on call overhead. This graph is the same graph and weights
with the frames axis left free and the state outputs (and the nodes computing them) removed: one
call encodes a whole speech segment from the initial state. Every layer is causal over the
concatenation [state, input], so the outputs are the streaming outputs up to float rounding
(the GEMMs block differently for other lengths). The graph is derived in memory when a backend
first needs it, so every package has it and none carries a second copy of the weights;
`check_parity` measures the difference, and a graph that differs is not used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_ser import contract, encoding

FRAMES_DIM = "frames"
OUT_FRAMES_DIM = "out_frames"
PARITY_ATOL = 1e-4
"""Largest |difference| from the streaming encoder accepted, relative to the output scale."""


class SegmentGraphError(ValueError):
    """The streaming graph cannot be turned into a whole-segment graph, or the result differs
    from the streaming encoder."""


def segment_graph(streaming_path: str | Path) -> bytes:
    """The serialized whole-segment graph of the streaming ONNX encoder at `streaming_path`."""
    import onnx  # only batch jobs need it: live streams never load it

    model = onnx.load(str(streaming_path))
    graph = model.graph
    inputs = {i.name: i for i in graph.input}
    if contract.ENCODER_INPUT not in inputs:
        raise SegmentGraphError(f"{streaming_path}: no input {contract.ENCODER_INPUT!r}")
    inputs[contract.ENCODER_INPUT].type.tensor_type.shape.dim[1].dim_param = FRAMES_DIM
    kept = [o for o in graph.output if o.name == contract.ENCODER_OUTPUT]
    if not kept:
        raise SegmentGraphError(f"{streaming_path}: no output {contract.ENCODER_OUTPUT!r}")
    kept[0].type.tensor_type.shape.dim[1].dim_param = OUT_FRAMES_DIM
    del graph.output[:]
    graph.output.extend(kept)
    drop_unused(graph)
    del graph.value_info[:]  # inferred for the fixed chunk; stale now
    onnx.checker.check_model(model)
    return model.SerializeToString()


def drop_unused(graph) -> None:
    """Remove the nodes and constants no graph output depends on (the next state's, or those a
    rewrite replaced)."""
    needed = {o.name for o in graph.output}
    keep = []
    for node in reversed(graph.node):  # ONNX nodes are stored in topological order
        if any(name in needed for name in node.output):
            keep.append(node)
            needed.update(name for name in node.input if name)
    keep.reverse()
    del graph.node[:]
    graph.node.extend(keep)
    for init in [i for i in graph.initializer if i.name not in needed]:
        graph.initializer.remove(init)


def check_parity(backend, clips: list[np.ndarray], atol: float | None = None) -> dict:
    """Encode each clip (n, N_MELS) as a stream does (fixed chunks) and in one segment call.

    Returns {clips, frames, max_abs_diff, scale}; SegmentGraphError when some output differs by
    more than atol (default PARITY_ATOL) * scale, scale being max(1, the largest |output|).
    """
    atol = PARITY_ATOL if atol is None else atol
    worst, scale, frames = 0.0, 1.0, 0
    for feats in clips:
        state = encoding.init_state(backend)
        chunked = np.concatenate([encoding.feed(state, backend, feats),
                                  encoding.finish(state, backend)])
        whole = encoding.encode_segment(backend, feats)
        if whole.shape != chunked.shape:
            raise SegmentGraphError(f"the whole-segment encoder gives {whole.shape} frames for "
                                    f"{len(feats)} feature frames, the stream {chunked.shape}")
        worst = max(worst, float(np.abs(whole - chunked).max()))
        scale = max(scale, float(np.abs(chunked).max()))
        frames += len(feats)
    if worst > atol * scale:
        raise SegmentGraphError(f"the whole-segment encoder differs from the streaming encoder "
                                f"by {worst:.3g} (limit {atol * scale:.3g})")
    return {"clips": len(clips), "frames": frames, "max_abs_diff": worst, "scale": scale}


def probe_clips(chunk_frames: int, seed: int = 0) -> list[np.ndarray]:
    """Feature-like clips of 1 frame, one chunk and a few chunks and a half, fixed by `seed`:
    what a backend checks a derived graph on before using it."""
    rng = np.random.default_rng(seed)
    lengths = (1, chunk_frames, 3 * chunk_frames + chunk_frames // 2 + 1)
    # log-mel values of speech lie around -10..5; the exact distribution does not matter here
    return [(rng.standard_normal((n, contract.N_MELS)) * 3.0 - 4.0).astype(np.float32)
            for n in lengths]
