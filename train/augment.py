"""Waveform augmentation for the conditions the product meets: unknown gain, background noise,
telephone channels (8 kHz, 300-3400 Hz, mu-law), rooms, and different speaking rates and pitch.

All functions take and return mono float32 at 16 kHz and draw their randomness from a numpy
Generator, so a (clip, view, seed) triple always gives the same augmented audio.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from edge_ser.audio import resample
from edge_ser.contract import SAMPLE_RATE_HZ
from edge_ser_train.config import AugmentConfig

TELEPHONE_RATE_HZ = 8_000
TELEPHONE_BAND_HZ = (300.0, 3_400.0)
MU_LAW_LEVELS = 256
_TELEPHONE_SOS = signal.butter(4, TELEPHONE_BAND_HZ, btype="bandpass", fs=TELEPHONE_RATE_HZ,
                               output="sos")


def change_speed(x: np.ndarray, factor: float) -> np.ndarray:
    """Play `factor` times faster (tempo and pitch together), as a tape would."""
    return resample(x, round(SAMPLE_RATE_HZ * factor), SAMPLE_RATE_HZ)


def telephone(x: np.ndarray) -> np.ndarray:
    """Narrowband telephone channel: 8 kHz, 300-3400 Hz band, 8-bit mu-law, back to 16 kHz."""
    narrow = resample(x, SAMPLE_RATE_HZ, TELEPHONE_RATE_HZ)
    narrow = signal.sosfilt(_TELEPHONE_SOS, narrow).astype(np.float32)
    return resample(mu_law_round_trip(narrow), TELEPHONE_RATE_HZ, SAMPLE_RATE_HZ)


def mu_law_round_trip(x: np.ndarray) -> np.ndarray:
    """G.711-style mu-law companding to 256 levels and back."""
    mu = MU_LAW_LEVELS - 1
    x = np.clip(x, -1.0, 1.0)
    encoded = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    quantised = np.round((encoded + 1.0) / 2.0 * mu) / mu * 2.0 - 1.0
    return (np.sign(quantised) * np.expm1(np.abs(quantised) * np.log1p(mu)) / mu).astype(
        np.float32)


def coloured_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """White, pink or brown noise of unit power: spectral slope 0, -1/2 or -1 in amplitude."""
    exponent = rng.choice([0.0, 0.5, 1.0])
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n)
    freqs[0] = freqs[1] if n > 1 else 1.0
    noise = np.fft.irfft(spectrum / freqs ** exponent, n)
    return (noise / (np.sqrt(np.mean(noise ** 2)) + 1e-12)).astype(np.float32)


def add_noise(x: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    power = float(np.mean(x ** 2))
    if power <= 0.0:
        return x
    noise = coloured_noise(len(x), rng) * np.sqrt(power / 10 ** (snr_db / 10))
    return x + noise


def reverberate(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Convolve with a synthetic room response: exponentially decaying noise, RT60 0.2-0.8 s."""
    rt60_s = rng.uniform(0.2, 0.8)
    n = int(min(rt60_s, 0.5) * SAMPLE_RATE_HZ)
    t_s = np.arange(n) / SAMPLE_RATE_HZ
    rir = rng.standard_normal(n) * np.exp(-6.9 * t_s / rt60_s)  # -60 dB at rt60
    rir[0] = 1.0  # direct path
    rir /= np.sqrt(np.sum(rir ** 2))
    wet = signal.fftconvolve(x, rir)[: len(x)]
    return (wet * np.sqrt(np.mean(x ** 2) / (np.mean(wet ** 2) + 1e-12))).astype(np.float32)


def augment(x: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """One random augmented view of `x` (mono float32, 16 kHz)."""
    if rng.random() < cfg.speed_prob and cfg.speed_max_change > 0:
        x = change_speed(x, 1.0 + rng.uniform(-cfg.speed_max_change, cfg.speed_max_change))
    if rng.random() < cfg.reverb_prob:
        x = reverberate(x, rng)
    if rng.random() < cfg.noise_prob:
        x = add_noise(x, rng.uniform(cfg.snr_db_min, cfg.snr_db_max), rng)
    if rng.random() < cfg.telephone_prob:
        x = telephone(x)
    x = x * 10 ** (rng.uniform(-cfg.gain_db, cfg.gain_db) / 20)
    return np.clip(x, -1.0, 1.0).astype(np.float32)
