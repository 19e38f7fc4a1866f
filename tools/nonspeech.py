"""Generated non-speech of call-center audio: tones, DTMF, noise colours, music-like harmonic
sequences, square waves and clipping, mains hum, ringback and busy tones.

Every generator takes a numpy Generator and a duration and returns float32 (n,) at 16 kHz in
[-1, 1]; `KINDS` maps a name to its generator, and `generate(kind, seconds, rng)` draws one
signal with random parameters (frequencies, levels, tempos), so a seed fixes every sample.
Used to train `edge_ser/speech_check.npz` (tools/train_speech_check.py) and to measure it
(tools/score_nonspeech.py) with different seeds.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edge_ser.contract import SAMPLE_RATE_HZ

DTMF_ROWS_HZ = (697.0, 770.0, 852.0, 941.0)
DTMF_COLS_HZ = (1209.0, 1336.0, 1477.0, 1633.0)
RINGBACKS = (  # (frequencies, cadence on/off pairs in seconds)
    ((440.0, 480.0), (2.0, 4.0)),  # North America
    ((425.0,), (1.0, 4.0)),  # much of Europe
    ((400.0, 450.0), (0.4, 0.2, 0.4, 2.0)),  # UK
)
BUSY = ((480.0, 620.0), (0.5, 0.5))
SCALE_SEMITONES = (0, 2, 4, 5, 7, 9, 11)


def _t(seconds: float) -> np.ndarray:
    return np.arange(round(seconds * SAMPLE_RATE_HZ)) / SAMPLE_RATE_HZ


def _level(x: np.ndarray, rng: np.random.Generator, dbfs: tuple[float, float]) -> np.ndarray:
    """Scale to a random RMS level in dBFS, peaks kept within [-1, 1]."""
    rms = float(np.sqrt(np.mean(x * x))) or 1.0
    x = x * (10 ** (rng.uniform(*dbfs) / 20) / rms)
    peak = float(np.abs(x).max())
    return (x / peak if peak > 1.0 else x).astype(np.float32)


def _cadence(t: np.ndarray, pattern: tuple[float, ...], offset_s: float) -> np.ndarray:
    """1 where the on/off cadence (on, off, on, off, ...) is on, with 5 ms ramps."""
    period = sum(pattern)
    phase = (t + offset_s) % period
    on = np.zeros_like(t)
    start = 0.0
    for i, length in enumerate(pattern):
        if i % 2 == 0:
            on[(phase >= start) & (phase < start + length)] = 1.0
        start += length
    ramp = max(1, int(0.005 * SAMPLE_RATE_HZ))
    return np.convolve(on, np.ones(ramp) / ramp, mode="same")


def sine(rng: np.random.Generator, seconds: float) -> np.ndarray:
    t = _t(seconds)
    return _level(np.sin(2 * np.pi * rng.uniform(100, 3400) * t + rng.uniform(0, 6.3)), rng,
                  (-30, -3))


def dtmf(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Dialled digits (40-200 ms on, 40-200 ms off) or one held key."""
    n = round(seconds * SAMPLE_RATE_HZ)
    x = np.zeros(n)
    held = rng.random() < 0.25
    pos = 0
    while pos < n:
        on = n if held else round(rng.uniform(0.04, 0.2) * SAMPLE_RATE_HZ)
        t = np.arange(min(on, n - pos)) / SAMPLE_RATE_HZ
        f1, f2 = rng.choice(DTMF_ROWS_HZ), rng.choice(DTMF_COLS_HZ)
        x[pos:pos + t.size] = np.sin(2 * np.pi * f1 * t) + 0.8 * np.sin(2 * np.pi * f2 * t)
        pos += t.size + round(rng.uniform(0.04, 0.2) * SAMPLE_RATE_HZ)
    return _level(x, rng, (-30, -6))


def noise(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """White, pink, brown or blue noise (power ~ f^-2 .. f^1)."""
    n = round(seconds * SAMPLE_RATE_HZ)
    exponent = rng.choice((0.0, -1.0, -2.0, 1.0))
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.maximum(np.fft.rfftfreq(n, 1 / SAMPLE_RATE_HZ), 20.0)
    x = np.fft.irfft(spectrum * freqs ** (exponent / 2), n)
    return _level(x, rng, (-45, -10))


def music(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """A hold-music-like melody: harmonic notes of a scale (100-700 ms, attack and decay),
    sometimes with a second voice, a bass line or vibrato."""
    n = round(seconds * SAMPLE_RATE_HZ)
    x = np.zeros(n)
    voices = int(rng.integers(1, 4))
    for v in range(voices):
        root_hz = rng.uniform(110, 440) / (2 if v == 2 else 1)
        harmonics = int(rng.integers(1, 9))
        decay = rng.uniform(0.3, 0.9)
        vibrato = rng.uniform(0, 0.01) if rng.random() < 0.4 else 0.0
        pos = 0
        while pos < n:
            length = min(n - pos, round(rng.uniform(0.1, 0.7) * SAMPLE_RATE_HZ))
            step = rng.choice(SCALE_SEMITONES) + 12 * int(rng.integers(0, 2))
            f0 = root_hz * 2 ** (step / 12)
            t = np.arange(length) / SAMPLE_RATE_HZ
            freq = f0 * (1 + vibrato * np.sin(2 * np.pi * 5.5 * t))
            phase = 2 * np.pi * np.cumsum(freq) / SAMPLE_RATE_HZ
            note = sum(decay ** k * np.sin((k + 1) * phase)
                       for k in range(harmonics) if (k + 1) * f0 < 7000)
            env = np.minimum(1.0, t / 0.01) * np.exp(-t * rng.uniform(0.5, 6.0))
            x[pos:pos + length] += note * env / (v + 1)
            pos += length
    return _level(x, rng, (-30, -8))


def square(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """A square wave (full scale or lower) or a hard-clipped sine."""
    t = _t(seconds)
    wave = np.sin(2 * np.pi * rng.uniform(50, 1500) * t)
    if rng.random() < 0.5:
        return (np.sign(wave) * rng.uniform(0.3, 1.0)).astype(np.float32)
    return np.clip(wave * rng.uniform(2, 20), -1, 1).astype(np.float32)


def hum(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Mains hum: 50 or 60 Hz and harmonics, sometimes with a buzz of odd harmonics."""
    t = _t(seconds)
    f0 = rng.choice((50.0, 60.0))
    buzz = rng.random() < 0.5
    x = sum(rng.uniform(0.1, 1.0) / (k if buzz else k * k) * np.sin(2 * np.pi * k * f0 * t)
            for k in range(1, 40 if buzz else 6) if not buzz or k % 2)
    return _level(x, rng, (-40, -6))


def ringback(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """A ringback or busy tone with its cadence."""
    t = _t(seconds)
    freqs, pattern = (RINGBACKS + (BUSY,))[int(rng.integers(0, len(RINGBACKS) + 1))]
    tone = sum(np.sin(2 * np.pi * f * t) for f in freqs)
    return _level(tone * _cadence(t, pattern, rng.uniform(0, sum(pattern))), rng, (-30, -8))


KINDS: dict[str, Callable[[np.random.Generator, float], np.ndarray]] = {
    "sine": sine, "dtmf": dtmf, "noise": noise, "music": music, "square": square, "hum": hum,
    "ringback": ringback,
}


def generate(kind: str, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """One signal of `kind` (a key of `KINDS`), float32 (n,) at 16 kHz."""
    if kind not in KINDS:
        raise ValueError(f"unknown non-speech kind {kind!r}; one of {', '.join(KINDS)}")
    return KINDS[kind](rng, seconds)
