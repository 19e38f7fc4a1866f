"""Live input without a sound card: the callback never blocks, drops are counted and replaced by
silence in the right place, a lost device is a LiveError saying what to try."""

from __future__ import annotations

import types

import numpy as np
import pytest

from edge_ser import live
from edge_ser.runtime_config import LiveConfig


class FakeSoundDevice:
    """The part of sounddevice MicInput uses; the test drives the callback itself."""

    class PortAudioError(Exception):
        pass

    def __init__(self, rates=(16_000,)) -> None:
        self.rates = rates
        self.stream = None

    def query_devices(self, device=None, kind=None):
        return {"name": "fake mic", "default_samplerate": 48_000.0}

    def check_input_settings(self, device=None, samplerate=None, channels=None, dtype=None):
        if samplerate not in self.rates:
            raise self.PortAudioError(f"Invalid sample rate {samplerate}")

    def InputStream(self, **kwargs):  # noqa: N802 - sounddevice's name
        self.stream = types.SimpleNamespace(kwargs=kwargs, active=True, start=lambda: None,
                                            abort=lambda: None, close=lambda: None)
        return self.stream


OK = types.SimpleNamespace(input_overflow=False)
OVERFLOW = types.SimpleNamespace(input_overflow=True)


@pytest.fixture
def fake_sd(monkeypatch):
    sd = FakeSoundDevice()
    monkeypatch.setattr(live, "import_sounddevice", lambda: sd)
    return sd


def block(value: float, n: int = 1600) -> np.ndarray:
    return np.full((n, 1), value, dtype=np.float32)


def test_full_queue_drops_blocks_and_silence_takes_their_place(fake_sd):
    mic = live.MicInput(None, None, LiveConfig(block_ms=100, queue_s=2.0))
    mic.start()
    assert mic.rate_hz == 16_000 and fake_sd.stream.kwargs["blocksize"] == 1600
    mic._queue.maxsize = 2  # a small queue, so the third block finds it full
    for value, status in ((1.0, OK), (2.0, OVERFLOW), (3.0, OK)):
        mic._callback(block(value), 1600, None, status)
    assert mic.read(0.01).samples[0] == 1.0
    mic._callback(block(4.0), 1600, None, OK)  # block 3 was dropped before this one
    got = [mic.read(0.01).samples for _ in range(3)]
    assert [g[0] for g in got] == [2.0, 0.0, 4.0] and got[1].size == 1600
    assert mic.stats.overflows == 1 and mic.stats.dropped_blocks == 1
    assert mic.stats.dropped_samples == 1600
    mic.stop()


def test_pending_returns_what_was_queued_at_stop(fake_sd):
    mic = live.MicInput(None, None, LiveConfig())
    mic.start()
    for value in (1.0, 2.0):
        mic._callback(block(value), 1600, None, OK)
    mic.stop()
    assert [b.samples[0] for b in mic.pending()] == [1.0, 2.0]


def test_rate_falls_back_to_the_device_default(fake_sd):
    fake_sd.rates = (48_000,)
    mic = live.MicInput(None, None, LiveConfig())
    mic.start()
    assert mic.rate_hz == 48_000


def test_unsupported_rates_are_one_error_saying_what_to_try(fake_sd):
    fake_sd.rates = ()
    with pytest.raises(live.LiveError, match=r"--rate.*--list-devices.*--device"):
        live.MicInput(None, None, LiveConfig()).start()


def test_a_device_that_stops_is_reported(fake_sd):
    mic = live.MicInput(None, None, LiveConfig())
    mic.start()
    assert mic.read(0.01) is None  # no audio yet, not for long: fine
    fake_sd.stream.active = False
    with pytest.raises(live.LiveError, match="stopped.*--device"):
        mic.read(0.01)


def test_a_device_that_goes_silent_is_reported(fake_sd):
    mic = live.MicInput(None, None, LiveConfig(stall_s=1.0))
    mic.start()
    mic._last_audio -= 2.0
    with pytest.raises(live.LiveError, match="no audio .* for 2 s"):
        mic.read(0.01)
