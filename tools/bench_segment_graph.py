"""What one whole-segment encoder call costs, in the 1-D graph as derived and in the 2-D layout
the onnxruntime backend runs (`edge_ser.backends.conv2d_layout`).

Both graphs of the package's fp32 encoder are timed in one process, one thread, batch 1, the
layouts interleaved per segment length so they share the machine's load; the figures are
medians over rounds. The largest difference between the two outputs is printed beside them.

    python tools/bench_segment_graph.py [--model PKG] [--frames 50 250 1000]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from edge_ser import contract
from edge_ser.backends import conv2d_layout, segment_graph
from edge_ser.package import load_package


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model package (default: bundled)")
    parser.add_argument("--frames", type=int, nargs="+", default=[50, 250, 1000],
                        help="segment lengths in feature frames (10 ms each)")
    parser.add_argument("--calls", type=int, default=50, help="calls per round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    import onnxruntime as ort

    package = load_package(args.model)
    graph_1d = segment_graph.segment_graph(package.encoder_path("fp32"))
    graph_2d, rewritten = conv2d_layout.as_conv2d(graph_1d, contract.ENCODER_INPUT)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    sessions = {layout: ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
                for layout, graph in (("1-D", graph_1d), ("2-D", graph_2d))}
    initial = dict(zip([s["input"] for s in package.state_specs()], package.initial_state()))
    rng = np.random.default_rng(0)
    print(f"rewritten: {rewritten}")
    print("| frames | 1-D us per call | 2-D us per call | 1-D / 2-D | max abs diff |")
    print("|---|---|---|---|---|")
    for frames in args.frames:
        feats = (rng.standard_normal((1, frames, contract.N_MELS)) * 3 - 4).astype(np.float32)
        feed = {contract.ENCODER_INPUT: feats, **initial}
        outputs = {k: s.run([contract.ENCODER_OUTPUT], feed)[0] for k, s in sessions.items()}
        times: dict[str, list[float]] = {k: [] for k in sessions}
        for _ in range(args.rounds):
            for layout, session in sessions.items():
                start = time.perf_counter()
                for _ in range(args.calls):
                    session.run([contract.ENCODER_OUTPUT], feed)
                times[layout].append((time.perf_counter() - start) / args.calls * 1e6)
        one, two = statistics.median(times["1-D"]), statistics.median(times["2-D"])
        diff = float(np.abs(outputs["1-D"] - outputs["2-D"]).max())
        print(f"| {frames} | {one:.0f} | {two:.0f} | {one / two:.2f}x | {diff:.1e} |")


if __name__ == "__main__":
    main()
