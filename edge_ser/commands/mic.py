"""`edge-ser --mic` (or `edge-ser mic`): live emotion tagging from a microphone.

The terminal shows one live line (time, speech or silence, the tracked emotion, probability
bars, processing time per block and the lag behind the microphone) and prints one line per
finished segment. Ctrl-C (or `--max-seconds`) stops: the last segment is flushed and a summary
printed. A missing device, an unsupported rate or a lost device is a one-line error saying what
to try, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from edge_ser.commands.common import check_range
from edge_ser.commands.runtime_options import (
    add_output_options,
    add_runtime_options,
    build_recognizer,
    load_runtime_config,
    open_jsonl,
)
from edge_ser.console import SEGMENT_HEADER, EventSink, LiveView, Printer

MIN_SECONDS, MAX_SECONDS = 0.01, 7 * 24 * 3600.0
"""--max-seconds: up to a week."""
MIN_RATE_HZ, MAX_RATE_HZ = 4000, 384_000


def add_parser(sub) -> None:
    p = sub.add_parser(
        "mic", help="live tagging from a microphone (same as `--mic`)",
        description="Live emotion tagging from an input device: a live status line, one line "
        "per finished speech segment, every event to --jsonl. Ctrl-C stops and flushes.")
    p.add_argument("--list-devices", action="store_true",
                   help="list the input devices and exit")
    p.add_argument("--device", metavar="ID",
                   help="input device: index or (part of the) name (default: system default)")
    p.add_argument("--rate", type=int, metavar="HZ",
                   help="capture rate (default: 16000 when the device takes it, else its own)")
    p.add_argument("--max-seconds", type=float, metavar="N",
                   help="stop by itself after N seconds")
    add_runtime_options(p)
    p.set_defaults(handler=run)
    add_output_options(p)


def run(args: argparse.Namespace) -> int:
    from edge_ser.live import LiveError

    try:
        if args.list_devices:
            return _list_devices()
        return _tag_live(args)
    except LiveError as exc:
        print(f"edge-ser mic: error: {exc}", file=sys.stderr)
        return 1


def _list_devices() -> int:
    from edge_ser.live import input_devices

    devices = input_devices()
    if not devices:
        print("no input devices found; connect a microphone (PortAudio sees none)")
        return 1
    for d in devices:
        mark = "*" if d.is_default else " "
        print(f"{mark} {d.index:3d}  {d.name} ({d.hostapi}), {d.channels} in, "
              f"{d.default_rate_hz:.0f} Hz")
    print("* = default input; pick one with --device ID")
    return 0


def _tag_live(args: argparse.Namespace) -> int:
    from edge_ser.live import LiveError, MicInput

    check_range("--max-seconds", args.max_seconds, MIN_SECONDS, MAX_SECONDS)
    check_range("--rate", args.rate, MIN_RATE_HZ, MAX_RATE_HZ)
    config = load_runtime_config(args)
    printer = Printer(sys.stdout, live=sys.stdout.isatty(), quiet=args.quiet)
    with build_recognizer(args, config) as recognizer:  # load the model before the mic opens
        writer = open_jsonl(args.jsonl, config) if args.jsonl else None
        mic = MicInput(args.device, args.rate, config.live)
        sink = EventSink(printer, writer, None, extra={"source": "mic"})
        try:
            mic.start()
            print(f"listening on {mic.device_name!r} at {mic.rate_hz} Hz; Ctrl-C to stop",
                  file=sys.stderr, flush=True)
            printer.info(SEGMENT_HEADER)
            stream = recognizer.create_stream(mic.rate_hz)
            view = LiveView(recognizer.labels)
            timings: list[float] = []
            failure: LiveError | None = None
            started = time.monotonic()
            try:
                while args.max_seconds is None or time.monotonic() - started < args.max_seconds:
                    block = mic.read(timeout_s=0.1)
                    if block is None:
                        continue
                    tick = time.perf_counter()
                    events = stream.accept_waveform(block.samples)
                    timings.append(time.perf_counter() - tick)
                    view.processing_ms = 1000 * timings[-1]
                    view.latency_ms = 1000 * (time.monotonic() - block.captured)
                    sink.handle(events, stream, view)
            except KeyboardInterrupt:
                printer.clear()
            except LiveError as exc:
                failure = exc
            mic.stop()
            for block in mic.pending():  # what the callback queued before the stop
                sink.handle(stream.accept_waveform(block.samples), stream, view)
            sink.handle(stream.input_finished(), stream, view)
            printer.clear()
            _summary(printer, sink, mic, stream.time_s, timings)
            if failure is not None:
                raise failure
        finally:
            mic.stop()
            if writer is not None:
                writer.close()
    return 0


def _summary(printer: Printer, sink: EventSink, mic, audio_s: float, timings: list[float]
             ) -> None:
    stats = mic.stats
    printer.info(f"{sink.summary.text(audio_s)}")
    if timings:
        ms = 1000 * np.asarray(timings)
        block_ms = mic.config.block_ms
        printer.info(f"processing per {block_ms} ms block: median {np.median(ms):.2f} ms, "
                     f"p99 {np.percentile(ms, 99):.2f} ms, max {ms.max():.2f} ms")
    printer.info(f"input overflows {stats.overflows}, blocks dropped {stats.dropped_blocks} "
                 f"({stats.dropped_samples / max(mic.rate_hz or 1, 1):.2f} s replaced by "
                 "silence)")
