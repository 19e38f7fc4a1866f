"""What an onnxruntime encoder call costs as a function of the chunk length.

Exports the checkpoint's encoder at several chunk lengths (the same weights) and times one
onnxruntime call per length, one thread, batch 1, the lengths interleaved in one process so
they share the machine's load. The cost of a call hardly grows with the frames it carries (the
grouped and depthwise convolutions pay a fixed price per call), so the cost per second of audio
falls with the chunk length; the chunk sets how often the live view can update.

    python tools/bench_encoder_chunk.py --checkpoint edge_ser/models/default/model.pt
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from edge_ser import contract

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path,
                        default=ROOT / "edge_ser" / "models" / "default" / "model.pt")
    parser.add_argument("--chunks", type=int, nargs="+", default=[10, 20, 40, 80])
    parser.add_argument("--calls", type=int, default=2000, help="timed calls per chunk length")
    args = parser.parse_args()

    import onnxruntime as ort

    from edge_ser_export.onnx_export import export_encoder
    from edge_ser_train.trainer import load_checkpoint

    model, _, payload = load_checkpoint(args.checkpoint)
    sessions = {}
    with tempfile.TemporaryDirectory() as tmp:
        for chunk in args.chunks:
            path = Path(tmp) / f"encoder_{chunk}.onnx"
            export_encoder(model.encoder.eval(), chunk, path, tuple(payload["labels"]), {})
            options = ort.SessionOptions()
            options.intra_op_num_threads = options.inter_op_num_threads = 1
            session = ort.InferenceSession(str(path), options,
                                           providers=["CPUExecutionProvider"])
            rng = np.random.default_rng(0)
            feed = {i.name: rng.standard_normal([1 if isinstance(d, str) else d
                                                 for d in i.shape]).astype(np.float32)
                    for i in session.get_inputs()}
            sessions[chunk] = (session, feed)
        times = {chunk: [] for chunk in args.chunks}
        for _ in range(args.calls):  # interleaved: every length sees the same load
            for chunk, (session, feed) in sessions.items():
                started = time.perf_counter()
                session.run(None, feed)
                times[chunk].append(time.perf_counter() - started)
    print(f"onnxruntime {ort.__version__}, one thread, batch 1, median of {args.calls} calls")
    print("| chunk | ms per call | ms per second of audio | calls per second of audio |")
    print("|---|---|---|---|")
    for chunk in args.chunks:
        per_call = 1e3 * float(np.median(times[chunk]))
        calls_per_s = contract.FRAMES_PER_S / chunk
        print(f"| {chunk} frames ({chunk * 10} ms) | {per_call:.3f} | "
              f"{per_call * calls_per_s:.3f} | {calls_per_s:g} |")


if __name__ == "__main__":
    main()
