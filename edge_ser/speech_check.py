"""Is it speech? A cheap check on the log-mel frames the stream already has.

webrtcvad calls tones, hum, noise, DTMF, ringback and hold music speech, and the emotion model
then gives them an emotion with a memory-bank similarity in the range of real speech. This
check scores a span of log-mel frames (a window, or a whole segment) from a few descriptors
that speech and those signals differ in:

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
corpora, provenance inside the file) gives a speech score in [0, 1]; spans scoring below
`speech_check.min_score` are non-speech and get no emotion. The reason given is the descriptor
that argued most against speech.

Shapes: frames (n, N_MELS) float32 log-mel (natural log of the mel power) -> (D,) float64.
Each descriptor is a function of the span's frames only, so any chunking gives the same score.
"""

from __future__ import annotations

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
"""Parts of a segment are told apart in blocks of 0.5 s ..."""
SPAN_BLOCKS = 2
"""... each judged within the 1 s spans (every 0.5 s) that hold it ..."""
MIN_PART_BLOCKS = 2
"""... and a part shorter than 1 s stays with its neighbour."""


def describe(frames: np.ndarray) -> np.ndarray:
    """The descriptors (D,) float64 of a span of log-mel frames (n, N_MELS), n >= 2."""
    x = np.asarray(frames, dtype=np.float64) * DB_PER_NEPER  # dB
    # bands far below the span's loudest are the noise floor (or outside a telephone band):
    # clipped, so their random ups and downs do not count as spectral change
    x = np.maximum(x, x.max() - FLOOR_DB)
    n = x.shape[0]
    if n < MIN_FRAMES:
        raise ValueError(f"the speech check needs at least {MIN_FRAMES} frames, got {n}")
    peak = x.max(axis=1)
    level = peak + DB_PER_NEPER * np.log(
        np.exp((x - peak[:, None]) / DB_PER_NEPER).mean(axis=1))  # dB of the mean band power
    shape = x - x.mean(axis=1, keepdims=True)
    step = np.sqrt(np.mean(np.diff(shape, axis=0) ** 2, axis=1))  # (n - 1,) dB
    return np.array([
        float(np.subtract(*np.percentile(level, [90, 10]))),
        _rhythm_share(level),
        np.log(np.median(step) + 0.1),
        float(np.mean(step < STEADY_FLUX_DB)),
        shape.std(axis=0).mean(),
        float(np.mean(peak - np.median(x, axis=1))),
        float(np.mean(level - x.mean(axis=1))),
    ])


def _rhythm_share(level_db: np.ndarray) -> float:
    """Share of the level's modulation power (0.5-20 Hz) that lies at 2-8 Hz."""
    n = level_db.size
    centred = (level_db - level_db.mean()) * np.hanning(n)
    power = np.abs(np.fft.rfft(centred)) ** 2
    freqs = np.fft.rfftfreq(n, 1.0 / FRAMES_PER_S)
    total = power[(freqs >= MODULATION_BAND_HZ[0]) & (freqs <= MODULATION_BAND_HZ[1])].sum()
    rhythm = power[(freqs >= RHYTHM_BAND_HZ[0]) & (freqs <= RHYTHM_BAND_HZ[1])].sum()
    return float(rhythm / total) if total > 1e-9 else 0.0


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
        if frames.shape[0] < MIN_FRAMES:
            return Verdict(speech=True, score=1.0, reason=None)
        score, contributions, z = self.score(describe(frames))
        if score >= min_score:
            return Verdict(speech=True, score=score, reason=None)
        worst = int(np.argmin(contributions))
        return Verdict(speech=False, score=score,
                       reason=REASONS[DESCRIPTORS[worst]][int(z[worst] > 0)])


def parts(check: SpeechCheck, frames: np.ndarray, min_score: float) -> list[tuple[int, int]]:
    """Where a segment's frames (n, N_MELS) change between speech and non-speech: the [first,
    end) frame ranges of its parts, in order, covering all n frames (one part when it does
    not change, e.g. a turn with hold music right after it, within one VAD segment, gives two).

    The frames are cut into 0.5 s blocks (the last one takes the remainder); each 1 s span of
    two neighbouring blocks is scored, and a block is speech when the mean score of the spans
    that hold it reaches `min_score`. Runs of equal blocks are the parts; a run shorter than
    1 s joins its neighbours.
    """
    n = frames.shape[0]
    blocks = n // BLOCK_FRAMES
    if blocks < 2 * MIN_PART_BLOCKS:
        return [(0, n)]
    scores = [check.judge(frames[k * BLOCK_FRAMES:(k + SPAN_BLOCKS) * BLOCK_FRAMES
                                 if k + SPAN_BLOCKS < blocks else n], min_score).score
              for k in range(blocks - SPAN_BLOCKS + 1)]
    speech = [np.mean(scores[max(0, b - SPAN_BLOCKS + 1):min(b + 1, len(scores))]) >= min_score
              for b in range(blocks)]
    runs: list[list] = []  # [flag, first block, end block]
    for b, flag in enumerate(speech):
        if runs and runs[-1][0] == flag:
            runs[-1][2] = b + 1
        else:
            runs.append([flag, b, b + 1])
    merged: list[list] = []
    for run in runs:
        if merged and (run[2] - run[1] < MIN_PART_BLOCKS or merged[-1][0] == run[0]):
            merged[-1][2] = run[2]  # too short, or equal after a join: part of the previous
        elif merged and merged[-1][2] - merged[-1][1] < MIN_PART_BLOCKS:
            merged[-1] = [run[0], merged[-1][1], run[2]]  # the previous was too short
        else:
            merged.append(list(run))
    bounds = [run[1] * BLOCK_FRAMES for run in merged] + [n]
    return list(zip(bounds[:-1], bounds[1:]))
