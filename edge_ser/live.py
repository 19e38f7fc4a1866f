"""Live audio input: a PortAudio input stream whose callback never blocks, feeding the engine.

The callback copies each block into a bounded queue and returns; the engine runs in the caller's
thread, taking blocks off the queue. Input overflows reported by PortAudio are counted; blocks
that find the queue full are dropped, counted, and replaced by silence of the same length when
the engine catches up, so times stay true. A device that stops delivering audio (unplugged,
stream aborted) is reported as `LiveError` with what to try, as is a missing device or an
unsupported sample rate.

sounddevice (and PortAudio, `libportaudio2`) is imported only when live input is used.
"""

from __future__ import annotations

import queue
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from edge_ser.contract import SAMPLE_RATE_HZ
from edge_ser.runtime_config import LiveConfig

HINT = "see `--list-devices` and pick one with `--device`"


class LiveError(RuntimeError):
    """Live input cannot start or went away; the message says what to try."""


def import_sounddevice():
    """The sounddevice module, or LiveError naming what to install."""
    try:
        import sounddevice
    except OSError as exc:  # raised when the PortAudio library itself is missing
        raise LiveError(f"PortAudio is not available ({exc}); install libportaudio2 "
                        "(e.g. `apt-get install libportaudio2`)") from None
    except ImportError as exc:
        raise LiveError(f"the sounddevice package is missing ({exc}); install it with "
                        "`pip install sounddevice` (it needs libportaudio2)") from None
    return sounddevice


@dataclass(frozen=True)
class InputDevice:
    index: int
    name: str
    hostapi: str
    channels: int
    default_rate_hz: float
    is_default: bool


def input_devices() -> list[InputDevice]:
    """Every device with input channels, the default input marked."""
    sd = import_sounddevice()
    try:
        devices = sd.query_devices()
        hostapis = sd.query_hostapis()
        default = sd.default.device[0]
    except sd.PortAudioError as exc:
        raise LiveError(f"cannot list audio devices ({exc})") from None
    return [InputDevice(d["index"], d["name"], hostapis[d["hostapi"]]["name"],
                        d["max_input_channels"], d["default_samplerate"], d["index"] == default)
            for d in devices if d["max_input_channels"] > 0]


def _device_arg(device: str | None):
    """`--device` as PortAudio wants it: an index when numeric, else a name (substring)."""
    if device is None:
        return None
    return int(device) if device.strip().isdigit() else device


@dataclass
class Block:
    samples: np.ndarray  # (n,) float32 at the capture rate
    captured: float  # time.monotonic() when the callback received it
    gap_samples: int = 0  # samples dropped just before this block (queue full)


@dataclass
class CaptureStats:
    overflows: int = 0  # PortAudio input overflows (audio lost before it reached us)
    dropped_blocks: int = 0  # blocks dropped because the queue was full
    dropped_samples: int = 0
    blocks: int = 0


@dataclass
class MicInput:
    """An open microphone: `start()`, then `read(timeout)` blocks until `stop()`."""

    device: str | None
    rate_hz: int | None
    config: LiveConfig
    stats: CaptureStats = field(default_factory=CaptureStats)
    device_name: str = ""
    _stream: object = None
    _queue: queue.Queue | None = None
    _gap_samples: int = 0  # dropped since the last block that made it into the queue
    _held: Block | None = None  # a block waiting behind the silence that replaces a gap
    _last_audio: float = 0.0

    def start(self) -> None:
        sd = import_sounddevice()
        device = _device_arg(self.device)
        try:
            info = sd.query_devices(device, kind="input")
        except (sd.PortAudioError, ValueError) as exc:
            what = f"input device {self.device!r}" if self.device else "a default input device"
            raise LiveError(f"cannot open {what} ({exc}); connect a microphone or {HINT}"
                            ) from None
        self.device_name = f"{info['name']}"
        self.rate_hz = self.rate_hz or self._pick_rate(sd, device, info)
        block = max(1, self.rate_hz * self.config.block_ms // 1000)
        self._queue = queue.Queue(maxsize=max(1, round(self.config.queue_s * 1000
                                                       / self.config.block_ms)))
        try:
            self._stream = sd.InputStream(device=device, samplerate=self.rate_hz, channels=1,
                                          dtype="float32", blocksize=block,
                                          callback=self._callback)
            self._stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            raise LiveError(f"cannot record from {self.device_name!r} at {self.rate_hz} Hz "
                            f"({exc}); try another --rate or {HINT}") from None
        self._last_audio = time.monotonic()

    @staticmethod
    def _pick_rate(sd, device, info) -> int:
        """16 kHz when the device takes it (no resampling), else its default rate."""
        for rate in (SAMPLE_RATE_HZ, int(info["default_samplerate"])):
            try:
                sd.check_input_settings(device=device, samplerate=rate, channels=1,
                                        dtype="float32")
                return rate
            except (sd.PortAudioError, ValueError):
                continue
        raise LiveError(f"{info['name']!r} supports neither 16000 Hz nor its default "
                        f"{info['default_samplerate']:.0f} Hz for one float32 channel; pass "
                        f"--rate HZ or {HINT}")

    def _callback(self, indata, frames, time_info, status) -> None:
        """PortAudio's thread: copy and enqueue, never wait."""
        if status.input_overflow:
            self.stats.overflows += 1
        try:
            self._queue.put_nowait(Block(indata[:, 0].copy(), time.monotonic(),
                                         self._gap_samples))
            self._gap_samples = 0
        except queue.Full:
            self.stats.dropped_blocks += 1
            self.stats.dropped_samples += frames
            self._gap_samples += frames

    def read(self, timeout_s: float) -> Block | None:
        """The next block (None after `timeout_s` without one); a zero block stands in for
        audio that was dropped. LiveError when the device stopped delivering."""
        if self._held is not None:
            block, self._held = self._held, None
            return block
        try:
            block = self._queue.get(timeout=timeout_s)
        except queue.Empty:
            self._check_alive()
            return None
        self.stats.blocks += 1
        self._last_audio = time.monotonic()
        if block.gap_samples:  # silence where the dropped audio was, then the block
            self._held = block
            return Block(np.zeros(block.gap_samples, dtype=np.float32), block.captured)
        return block

    def pending(self) -> list[Block]:
        """Blocks still queued (after `stop`), dropped stretches as silence."""
        blocks = [self._held] if self._held is not None else []
        self._held = None
        while True:
            try:
                block = self._queue.get_nowait()
            except queue.Empty:
                return blocks
            if block.gap_samples:
                blocks.append(Block(np.zeros(block.gap_samples, dtype=np.float32),
                                    block.captured))
            blocks.append(block)

    def _check_alive(self) -> None:
        if self._stream is not None and not self._stream.active:
            raise LiveError(f"input device {self.device_name!r} stopped (unplugged or taken "
                            f"over?); reconnect it or {HINT}")
        silent_s = time.monotonic() - self._last_audio
        if silent_s > self.config.stall_s:
            raise LiveError(f"no audio from {self.device_name!r} for {silent_s:.0f} s (device "
                            f"lost?); check the device or {HINT}")

    def stop(self) -> None:
        if self._stream is not None:
            try:
                # abort, not stop: stop waits for a buffer a lost (or silent) device may never
                # fill; what the callback already queued is still read by `pending()`
                self._stream.abort()
                self._stream.close()
            except Exception as exc:  # noqa: BLE001 - a lost device may fail to close; say so
                print(f"edge-ser: note: closing the input device failed ({exc})",
                      file=sys.stderr)
            self._stream = None
