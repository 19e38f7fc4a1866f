"""What the speech check costs in the streaming pipeline, with it and without it side by side.

    python tools/bench_speech_check.py [--minutes 5] [--repeats 5]

The demo conversation looped to `--minutes`, fed in 100 ms chunks on one thread (as
`python main.py bench stream` does); passes with the check on and off alternate, so both see
the same machine load. Printed: CPU real-time factor and per-chunk p99 (thread CPU time) for
each, medians over the passes, and the CPU time spent inside the check itself per second of
audio. Only speech segments are judged, so silence costs nothing more.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge_ser.audio import load_mono_16k  # noqa: E402
from edge_ser.backends import create_backend  # noqa: E402
from edge_ser.bench.stream_bench import looped, single_thread_limits  # noqa: E402
from edge_ser.contract import SAMPLE_RATE_HZ  # noqa: E402
from edge_ser.package import load_package  # noqa: E402
from edge_ser.recognizer import Recognizer  # noqa: E402
from edge_ser.runtime_config import RuntimeConfig, SpeechCheckConfig  # noqa: E402
from edge_ser.speech_check import SpeechCheck  # noqa: E402

DEMO = ROOT / "edge_ser" / "demo" / "conversation.flac"


class TimedCheck:
    """The shipped check, with the thread CPU time of its calls added up."""

    def __init__(self, check: SpeechCheck) -> None:
        self._check = check
        self.cpu_s = 0.0

    def judge(self, frames, min_score):
        t0 = time.thread_time()
        try:
            return self._check.judge(frames, min_score)
        finally:
            self.cpu_s += time.thread_time() - t0

    def assess(self, frames):
        t0 = time.thread_time()
        try:
            return self._check.assess(frames)
        finally:
            self.cpu_s += time.thread_time() - t0


def one_pass(recognizer: Recognizer, audio: np.ndarray) -> tuple[float, np.ndarray]:
    """(thread CPU seconds of the whole pass, per-chunk thread CPU seconds)."""
    chunk = SAMPLE_RATE_HZ // 10
    stream = recognizer.create_stream(SAMPLE_RATE_HZ)
    per_chunk = []
    start = time.thread_time()
    for pos in range(0, audio.size, chunk):
        t0 = time.thread_time()
        stream.accept_waveform(audio[pos:pos + chunk])
        per_chunk.append(time.thread_time() - t0)
    stream.input_finished()
    return time.thread_time() - start, np.array(per_chunk)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    with single_thread_limits():
        return run(args)


def run(args: argparse.Namespace) -> int:
    audio = looped(load_mono_16k(DEMO), args.minutes * 60)
    package = load_package(None)
    backend = create_backend(package, name="onnxruntime", threads=1)
    timed = TimedCheck(SpeechCheck.load())
    on = Recognizer(package, backend, RuntimeConfig(), speech_check=timed)
    off = Recognizer(package, backend,
                     RuntimeConfig(speech_check=SpeechCheckConfig(enabled=False)))
    seconds = audio.size / SAMPLE_RATE_HZ
    runs: dict[str, list] = {"off": [], "on": []}
    check_s = []
    one_pass(on, audio[:SAMPLE_RATE_HZ * 10])  # warm-up
    for _ in range(args.repeats):
        for name, recognizer in (("off", off), ("on", on)):
            before = timed.cpu_s
            runs[name].append(one_pass(recognizer, audio))
            if name == "on":
                check_s.append(timed.cpu_s - before)
    print(f"{seconds:.0f} s of audio in 100 ms chunks, medians of {args.repeats} passes, "
          "thread CPU time")
    print("| speech check | real-time factor | p99 per 100 ms chunk | max per chunk |")
    print("|---|---|---|---|")
    for name in ("off", "on"):
        rtf = np.median([total for total, _ in runs[name]]) / seconds
        p99 = np.median([np.percentile(chunks, 99) for _, chunks in runs[name]]) * 1000
        worst = np.median([chunks.max() for _, chunks in runs[name]]) * 1000
        print(f"| {name} | {rtf:.4f} | {p99:.2f} ms | {worst:.2f} ms |")
    print(f"\ninside the check: {1000 * np.median(check_s) / seconds:.3f} ms of CPU per second "
          "of audio")
    backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
