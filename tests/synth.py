"""Synthetic test audio at 16 kHz: a voiced, speech-like tone complex and a quiet noise floor.

webrtcvad calls the tone complex speech and the noise floor silence, so segment boundaries in
tests are known to the sample without any corpus.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_ser.contract import SAMPLE_RATE_HZ

DEMO_DIR = Path(__file__).resolve().parent.parent / "edge_ser" / "demo"
DEMO_AUDIO = DEMO_DIR / "conversation.flac"
DEMO_LABELS = DEMO_DIR / "conversation.labels.csv"


def voiced(duration_s: float, f0_hz: float = 140.0, seed: int = 0) -> np.ndarray:
    """A harmonic complex with vibrato and a 4 Hz syllable-like envelope, float32 (n,)."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(duration_s * SAMPLE_RATE_HZ)) / SAMPLE_RATE_HZ
    freq = f0_hz * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))
    phase = 2 * np.pi * np.cumsum(freq) / SAMPLE_RATE_HZ
    tone = sum(np.sin(k * phase) / k for k in range(1, 25) if k * f0_hz < 3800)
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)
    x = 0.1 * tone * envelope / np.abs(tone).max() + 0.002 * rng.standard_normal(t.size)
    return x.astype(np.float32)


def silence(duration_s: float, seed: int = 1) -> np.ndarray:
    """A quiet noise floor (about -70 dBFS), float32 (n,)."""
    n = round(duration_s * SAMPLE_RATE_HZ)
    return (0.0003 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def concat(*parts: np.ndarray) -> np.ndarray:
    return np.concatenate(parts).astype(np.float32)


def feed(stream, samples: np.ndarray, sizes) -> list:
    """Feed `samples` to `stream` in chunks of the given sizes (cycled), then finish it."""
    events, pos, sizes = [], 0, list(sizes)
    i = 0
    while pos < samples.shape[0]:
        n = sizes[i % len(sizes)]
        events += stream.accept_waveform(samples[pos:pos + n])
        pos += n
        i += 1
    return events + stream.input_finished()


def read_labels(path: Path = DEMO_LABELS) -> list[dict[str, str]]:
    import csv

    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))
