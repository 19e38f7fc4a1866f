"""`edge-ser stream FILE...`: the live streaming loop over recordings.

Each recording is decoded block by block and fed to its own stream, as fast as possible or, with
`--realtime`, paced like a live source. Finished segments are printed one per line (with
`--labels`, beside the known label of the segment they overlap most); `--jsonl` logs every event.
A file that cannot be read gets a one-line error naming it; the other files are still processed
and the exit status is non-zero.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from edge_ser.commands.common import check_range
from edge_ser.commands.runtime_options import (
    add_output_options,
    add_runtime_options,
    build_recognizer,
    load_runtime_config,
    open_jsonl,
)
from edge_ser.console import (
    SEGMENT_HEADER,
    EventSink,
    LiveView,
    Printer,
    read_references,
    references_for,
)

MAX_BLOCK_MS = 60_000


def add_parser(sub) -> None:
    p = sub.add_parser(
        "stream", help="stream recordings through the live engine",
        description="Run the streaming engine (VAD, incremental features, encoder, sliding "
        "emotion windows, tracker) over recordings: one line per speech segment, every event "
        "to --jsonl. The same loop as `--mic`, fed from files.")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE",
                   help="recordings (any format libsndfile reads, any sample rate)")
    p.add_argument("--realtime", action="store_true",
                   help="pace the input like a live source (one second of audio per second)")
    p.add_argument("--labels", type=Path, metavar="CSV",
                   help="known segments (start_s, end_s, emotion[, file]) shown beside the tags")
    p.add_argument("--block-ms", type=int, default=100,
                   help="audio fed per call, in ms (default: 100)")
    add_runtime_options(p)
    p.set_defaults(handler=run)
    add_output_options(p)


def run(args: argparse.Namespace) -> int:
    from edge_ser.audio import AudioError

    check_range("--block-ms", args.block_ms, 1, MAX_BLOCK_MS)
    config = load_runtime_config(args)
    references = read_references(args.labels) if args.labels else None
    printer = Printer(sys.stdout, live=sys.stdout.isatty(), quiet=args.quiet)
    failed = 0
    with build_recognizer(args, config) as recognizer:
        writer = open_jsonl(args.jsonl, config) if args.jsonl else None
        try:
            for path in args.files:
                known = references_for(references, path) if references is not None else None
                output = EventSink(printer, writer, known, extra={"file": str(path)})
                try:
                    _stream_file(recognizer, path, args, output)
                except AudioError as exc:
                    printer.clear()
                    print(f"edge-ser stream: error: {exc}", file=sys.stderr)
                    failed += 1
        except OSError as exc:
            if writer is None:
                raise
            printer.clear()  # the --jsonl log cannot be written (e.g. the disk is full)
            print(f"edge-ser stream: error: --jsonl {args.jsonl}: cannot write "
                  f"({exc.strerror or exc})", file=sys.stderr)
            return 1
        finally:
            if writer is not None:
                writer.close()
    if failed:
        print(f"edge-ser stream: {failed} of {len(args.files)} file(s) failed", file=sys.stderr)
        return 2
    return 0


def _stream_file(recognizer, path: Path, args: argparse.Namespace, output: EventSink) -> None:
    from edge_ser.audio import iter_blocks

    view = LiveView(recognizer.labels)
    output.printer.info(f"== {path}")
    output.printer.info(SEGMENT_HEADER + ("  | known label" if output.known is not None else ""))
    stream = None
    audio_s = 0.0
    started = time.perf_counter()
    for block, rate_hz in iter_blocks(path, args.block_ms / 1000):
        if stream is None:
            stream = recognizer.create_stream(rate_hz)
        if args.realtime:  # pace: this block is due once the audio before it has "played"
            delay = started + audio_s - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        tick = time.perf_counter()
        events = stream.accept_waveform(block)
        view.processing_ms = 1000 * (time.perf_counter() - tick)
        audio_s += block.shape[0] / rate_hz
        output.handle(events, stream, view)
    output.handle(stream.input_finished(), stream, view)
    elapsed = time.perf_counter() - started
    output.printer.info(f"   {output.summary.text(audio_s)}; processed in {elapsed:.2f} s "
                        f"(real-time factor {elapsed / max(audio_s, 1e-9):.4f})")
