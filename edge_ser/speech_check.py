"""Is it speech? A cheap check on the log-mel frames the stream already has.

webrtcvad calls tones, hum, noise, DTMF, ringback and hold music speech, and the emotion model
then gives them an emotion with a memory-bank similarity in the range of real speech. This
check scores a span of log-mel frames (the stream scores 1 s spans of each segment's speech,
see `edge_ser.speech_spans`) from a few descriptors that speech and those signals differ in:

    level_spread_db   spread of the frame level (10th to 90th percentile, so a few frames of
                      padding do not count): speech rises and falls with its syllables; tones,
                      hum, noise and square waves hold one level
    rhythm_share      share of the level's modulation power at 2-8 Hz (the syllable rate)
    flux_db           median frame-to-frame change of the spectral shape (level removed):
                      formants and pitch move in speech, a note or a tone holds still
    steady_share      share of frames whose shape barely changes (held notes, tones)
    shape_std_db      spread of each mel band's shape over the span, averaged over bands
    peak_db           how far the strongest band stands above the median band (pure tones)
    contrast_db       log of the arithmetic over the geometric mean of the mel powers (a flat,
                      noise-like spectrum is near 0)

A logistic regression over the standardised descriptors z and their squares (speech lies
between the extremes: noise is flatter and steadier in shape, tones are peakier; the squares
let one linear model fence speech in from both sides; weights in `speech_check.npz`,
trained by `tools/train_speech_check.py` on generated non-speech against real speech of the
corpora, provenance inside the file) gives a speech score in [0, 1]; what scores below
`speech_check.min_score` is non-speech and gets no emotion. The reason given is the descriptor
that argued most against speech.

Shapes: frames (n, N_MELS) float32 log-mel (natural log of the mel power) -> (D,) float64.
Each descriptor is a function of the span's frames only, so any chunking gives the same score.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_ser.contract import FRAMES_PER_S

WEIGHTS_PATH = Path(__file__).resolve().parent / "speech_check.npz"
"""The shipped classifier (numpy arrays only, loaded without pickle)."""

DESCRIPTORS = ("level_spread_db", "rhythm_share", "flux_db", "steady_share", "shape_std_db",
               "peak_db", "contrast_db")
REASONS = {  # descriptor: (what it says when below speech's range, when above it)
    "level_spread_db": ("steady level", "on-off bursts"),
    "rhythm_share": ("no syllable rhythm", "rhythm unlike speech"),
    "flux_db": ("steady spectrum", "erratic spectrum"),
    "steady_share": ("restless spectrum", "held tones"),
    "shape_std_db": ("steady spectrum", "jumping spectrum"),
    "peak_db": ("noise-like spectrum", "tonal"),
    "contrast_db": ("noise-like spectrum", "tonal"),
}
"""What a descriptor that argues against speech says about the audio (the result's `reason`),
by the side of the training mean it lies on."""

DB_PER_NEPER = 10.0 / np.log(10.0)
RHYTHM_BAND_HZ = (2.0, 8.0)
MODULATION_BAND_HZ = (0.5, 20.0)
STEADY_FLUX_DB = 1.0
FLOOR_DB = 50.0
MIN_FRAMES = 2
BLOCK_FRAMES = 50
"""A segment's speech is scored in 1 s spans every 0.5 s (`edge_ser.speech_spans`) ..."""
SPAN_BLOCKS = 2
"""... of two 0.5 s blocks each."""


def describe(frames: np.ndarray) -> np.ndarray:
    """The descriptors (D,) float64 of a span of log-mel frames (n, N_MELS), n >= 2.

    The per-frame work runs in float32 (the frames' own precision; a third of the time of
    float64), the sums over frames in float64."""
    x = np.asarray(frames, dtype=np.float32) * np.float32(DB_PER_NEPER)  # dB
    n, bands = x.shape
    if n < MIN_FRAMES:
        raise ValueError(f"the speech check needs at least {MIN_FRAMES} frames, got {n}")
    # bands far below the span's loudest are the noise floor (or outside a telephone band):
    # clipped, so their random ups and downs do not count as spectral change
    np.maximum(x, x.max() - np.float32(FLOOR_DB), out=x)
    peak = x.max(axis=1).astype(np.float64)
    mean = x.sum(axis=1, dtype=np.float64) / bands
    power = np.exp((x - peak[:, None].astype(np.float32)) * np.float32(1.0 / DB_PER_NEPER)
                   ).sum(axis=1, dtype=np.float64) / bands
    level = peak + DB_PER_NEPER * np.log(power)  # dB of the mean band power
    shape = x - mean[:, None].astype(np.float32)
    diff = shape[1:] - shape[:-1]
    step = np.sqrt(np.einsum("ij,ij->i", diff, diff, dtype=np.float64) / bands)  # (n - 1,) dB
    middle = np.partition(x, (bands // 2 - 1, bands // 2), axis=1)
    median = 0.5 * (middle[:, bands // 2 - 1].astype(np.float64) + middle[:, bands // 2])
    low, high = np.percentile(level, [10, 90])
    return np.array([
        float(high - low),
        _rhythm_share(level),
        np.log(_median(step) + 0.1),
        float(np.count_nonzero(step < STEADY_FLUX_DB) / step.size),
        float(shape.std(axis=0, dtype=np.float64).mean()),
        float((peak - median).mean()),
        float((level - mean).mean()),
    ])


def _median(v: np.ndarray) -> float:
    k = v.size // 2
    if v.size % 2:
        return float(np.partition(v, k)[k])
    part = np.partition(v, (k - 1, k))
    return float(0.5 * (part[k - 1] + part[k]))


@functools.lru_cache(maxsize=64)
def _modulation_plan(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Window and band masks of the level's modulation spectrum for spans of n frames."""
    freqs = np.fft.rfftfreq(n, 1.0 / FRAMES_PER_S)
    return (np.hanning(n),
            (freqs >= MODULATION_BAND_HZ[0]) & (freqs <= MODULATION_BAND_HZ[1]),
            (freqs >= RHYTHM_BAND_HZ[0]) & (freqs <= RHYTHM_BAND_HZ[1]))


def _rhythm_share(level_db: np.ndarray) -> float:
    """Share of the level's modulation power (0.5-20 Hz) that lies at 2-8 Hz."""
    window, modulation, rhythm = _modulation_plan(level_db.size)
    spectrum = np.fft.rfft((level_db - level_db.mean()) * window)
    power = spectrum.real ** 2 + spectrum.imag ** 2
    total = power[modulation].sum()
    return float(power[rhythm].sum() / total) if total > 1e-9 else 0.0


@dataclass(frozen=True)
class Verdict:
    speech: bool
    score: float
    """Speech score in [0, 1] (the classifier's probability of speech)."""
    reason: str | None
    """None for speech; else what argued most against speech (a value of `REASONS`)."""


@dataclass(frozen=True)
class SpeechCheck:
    """The trained classifier: standardisation of `DESCRIPTORS` (D,), weights (2D,) over
    [z, z * z] and a bias."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float
    provenance: dict

    @classmethod
    def load(cls, path: str | Path = WEIGHTS_PATH) -> SpeechCheck:
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                names = tuple(str(s) for s in data["descriptors"])
                if names != DESCRIPTORS:
                    raise ValueError(f"{path}: descriptors {names} differ from this runtime's "
                                     f"{DESCRIPTORS}; retrain with tools/train_speech_check.py")
                d = len(DESCRIPTORS)
                for name, shape in (("mean", (d,)), ("scale", (d,)), ("weights", (2 * d,))):
                    if data[name].shape != shape:
                        raise ValueError(f"{path}: '{name}' has shape {data[name].shape}, "
                                         f"expected {shape}")
                return cls(mean=data["mean"].astype(np.float64),
                           scale=data["scale"].astype(np.float64),
                           weights=data["weights"].astype(np.float64),
                           bias=float(data["bias"]),
                           provenance=json.loads(str(data["provenance"])))
        except (OSError, KeyError) as exc:
            raise ValueError(f"{path}: cannot load the speech check ({exc})") from exc

    def score(self, descriptors: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """Speech probability, each descriptor's contribution to the logit, and the
        standardised descriptors z."""
        z = (descriptors - self.mean) / self.scale
        d = z.size
        contributions = self.weights[:d] * z + self.weights[d:] * z * z
        logit = float(contributions.sum() + self.bias)
        return float(1.0 / (1.0 + np.exp(-np.clip(logit, -50.0, 50.0)))), contributions, z

    def judge(self, frames: np.ndarray, min_score: float) -> Verdict:
        """The verdict on a span of log-mel frames (n, N_MELS); fewer than 2 frames is speech
        by default (nothing to judge)."""
        score, reason = self.assess(frames)
        if score >= min_score:
            return Verdict(speech=True, score=score, reason=None)
        return Verdict(speech=False, score=score, reason=reason)

    def assess(self, frames: np.ndarray) -> tuple[float, str | None]:
        """The speech score of a span and what argues most against speech in it (whatever
        the score; None for fewer than 2 frames, which score 1)."""
        if frames.shape[0] < MIN_FRAMES:
            return 1.0, None
        score, contributions, z = self.score(describe(frames))
        worst = int(np.argmin(contributions))
        return score, REASONS[DESCRIPTORS[worst]][int(z[worst] > 0)]
