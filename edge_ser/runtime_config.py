"""Runtime configuration: VAD segmentation, sliding windows, tracking, the speech check, live
input, features, batch jobs.

Frozen dataclasses loaded strictly by `edge_ser.config.load_config` from
`configs/runtime/default.yaml` (or any YAML) plus `--set` overrides. Every value carries its
unit in its name; cross-field rules are checked here and named in the error.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_ser.config import ConfigError, section, setting
from edge_ser.features import KERNELS


@dataclass(frozen=True)
class VadConfig:
    """webrtcvad speech segmentation (see `edge_ser.vad` for how the rules combine)."""

    frame_ms: int = setting(30, choices=(10, 20, 30),
                            help="webrtcvad frame length; the input is re-framed to it")
    aggressiveness: int = setting(2, min=0, max=3,
                                  help="webrtcvad mode: 0 keeps most audio, 3 is strictest")
    onset_frames: int = setting(3, min=1, max=100,
                                help="consecutive voiced frames that start speech")
    offset_frames: int = setting(3, min=1, max=200,
                                 help="consecutive unvoiced frames that end a speech run")
    pre_pad_ms: int = setting(150, min=0, max=1000,
                              help="audio before the speech onset fed to the encoder")
    post_pad_ms: int = setting(60, min=0, max=1000,
                               help="audio after the speech end fed to the encoder")
    min_speech_ms: int = setting(250, min=0, max=5000,
                                 help="shorter speech never becomes a segment")
    min_silence_ms: int = setting(90, min=10, max=10000,
                                  help="pauses shorter than this stay inside one segment")
    max_segment_s: float = setting(10.0, min=1.0, max=600.0,
                                   help="a longer segment is split at this length")

    def __post_init__(self) -> None:
        if self.max_segment_s * 1000 < self.min_speech_ms:
            raise ConfigError(f"'vad.max_segment_s' = {self.max_segment_s} is shorter than "
                              f"'vad.min_speech_ms' = {self.min_speech_ms}; raise it")


@dataclass(frozen=True)
class WindowConfig:
    """Sliding emotion windows over a segment's encoder frames."""

    window_s: float = setting(2.0, min=0.5, max=10.0, help="audio pooled per window")
    hop_s: float = setting(0.25, min=0.02, max=10.0, help="step between window ends")

    def __post_init__(self) -> None:
        if self.hop_s > self.window_s:
            raise ConfigError(f"'window.hop_s' = {self.hop_s} is longer than "
                              f"'window.window_s' = {self.window_s}; windows would leave gaps")


@dataclass(frozen=True)
class TrackerConfig:
    """Smoothing, the uncertain verdict and emotion-change hysteresis."""

    smoothing: float = setting(0.5, min=0.0, max=0.99,
                               help="weight of the past in the moving average of window "
                               "probabilities (0: no smoothing)")
    min_similarity: float = setting(0.4, min=-1.0, max=1.0,
                                    help="below this memory-bank cosine similarity a result "
                                    "is 'uncertain' (out of domain); depends on the model")
    change_margin: float = setting(0.1, min=0.0, max=1.0,
                                   help="a new emotion must lead the current one by this much")
    change_hold: int = setting(2, min=1, max=100,
                               help="observations in a row a new emotion must win to be "
                               "reported as a change")


@dataclass(frozen=True)
class SpeechCheckConfig:
    """Only speech gets an emotion: the non-speech check on each window and segment."""

    enabled: bool = setting(True, help="judge every window and segment; non-speech (tones, "
                            "hum, noise, DTMF, ringback, music) gets no emotion")
    min_score: float = setting(0.5, min=0.0, max=1.0,
                               help="below this speech score a span is non-speech "
                               "(0 passes everything, 1 almost nothing)")


@dataclass(frozen=True)
class LiveConfig:
    """Microphone input."""

    block_ms: int = setting(100, min=10, max=1000, help="audio per input callback")
    queue_s: float = setting(30.0, min=1.0, max=600.0,
                             help="audio the callback queue holds before dropping blocks")
    stall_s: float = setting(5.0, min=1.0, max=600.0,
                             help="no audio for this long means the device is lost")


@dataclass(frozen=True)
class FeaturesConfig:
    """The log-mel front end's implementation; every choice gives the same features."""

    kernels: str = setting("numpy", choices=KERNELS,
                           help="numpy never loads numba (about 120 MiB less resident memory); "
                           "numba saves 0.2-0.3 ms of CPU per second of audio; the features "
                           "are the same bit for bit")


@dataclass(frozen=True)
class BatchConfig:
    """How `batch` runs the encoder over recordings."""

    encoder_calls: str = setting("segment", choices=("segment", "chunk"),
                                 help="segment: one call per speech segment, a fraction of the "
                                 "CPU, results equal to streaming up to float rounding (1e-5); "
                                 "chunk: the streaming engine's fixed chunks, equal bit for bit")


@dataclass(frozen=True)
class RuntimeConfig:
    vad: VadConfig = section(VadConfig)
    window: WindowConfig = section(WindowConfig)
    tracker: TrackerConfig = section(TrackerConfig)
    speech_check: SpeechCheckConfig = section(SpeechCheckConfig)
    live: LiveConfig = section(LiveConfig)
    features: FeaturesConfig = section(FeaturesConfig)
    batch: BatchConfig = section(BatchConfig)
