"""A folder of unlabelled recordings -> speech segments -> log-mel views for adaptation.

Every file under the folder whose name ends in an audio extension is decoded (any format and
rate libsndfile reads; `edge_ser.audio`), mixed to mono 16 kHz and cut into speech segments by
the runtime's VAD (`edge_ser.vad`, the same segmentation the live recognizer uses), each at most
`max_segment_s` long; segments shorter than `min_segment_s` are dropped. A file that cannot be
decoded is listed and skipped; a file with no speech is listed. Each segment gets a clean
log-mel view and `views` augmented ones (`train.augment`, the training augmentation).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_ser import vad
from edge_ser.audio import AudioError, load_mono_16k
from edge_ser.contract import FRAMES_PER_S, HOP_SAMPLES, SAMPLE_RATE_HZ, WINDOW_SAMPLES
from edge_ser.features import log_mel
from edge_ser.runtime_config import VadConfig
from edge_ser_train.adapt_config import TargetConfig
from edge_ser_train.augment import augment
from edge_ser_train.config import AugmentConfig

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".aif", ".aiff", ".aifc",
                  ".au", ".snd", ".caf", ".w64", ".rf64", ".wv", ".sd2", ".voc")


class TargetAudioError(ValueError):
    """The target folder holds no usable speech; the message says what was found."""


@dataclass(frozen=True)
class Segment:
    path: Path
    start_s: float
    end_s: float


@dataclass
class TargetAudio:
    """Speech segments of a folder of recordings, with their log-mel views."""

    folder: Path
    segments: list[Segment]
    views: list[list[np.ndarray]]
    """Per segment: [clean (frames, N_MELS), augmented ...], float32."""
    files: list[Path]
    """Every audio file found."""
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    """Files that could not be decoded, with the reason."""
    without_speech: list[Path] = field(default_factory=list)
    audio_s: float = 0.0
    speech_s: float = 0.0

    def describe(self) -> dict:
        """The target description recorded beside an adapted model."""
        return {"folder": str(self.folder), "files_found": len(self.files),
                "files_used": len({s.path for s in self.segments}),
                "files_skipped": [{"file": str(p), "reason": r} for p, r in self.skipped],
                "files_without_speech": [str(p) for p in self.without_speech],
                "segments": len(self.segments), "audio_s": round(self.audio_s, 1),
                "speech_s": round(self.speech_s, 1)}


def find_audio(folder: Path) -> list[Path]:
    """Audio files under `folder` (recursively, by extension, case-insensitive), sorted."""
    if not folder.is_dir():
        raise TargetAudioError(f"{folder}: not a folder; --target takes a folder of recordings")
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)


def speech_spans(audio: np.ndarray, cfg: TargetConfig) -> list[tuple[int, int]]:
    """(start, end) feature frames of the speech segments of 16 kHz `audio` (n,)."""
    vad_cfg = VadConfig(max_segment_s=cfg.max_segment_s)
    state = vad.init_state(vad_cfg)
    events = vad.accept(state, vad_cfg, audio) + vad.finish(state, vad_cfg)
    spans, start = [], None
    min_frames = round(cfg.min_segment_s * FRAMES_PER_S)
    for event in events:
        if isinstance(event, vad.SegmentOpen):
            start = event.start_frame
        elif start is not None:
            if event.end_frame - start >= min_frames:
                spans.append((start, event.end_frame))
            start = None
    return spans


def read_target(folder: str | Path, cfg: TargetConfig, aug: AugmentConfig, seed: int = 0,
                log=print) -> TargetAudio:
    """Find, decode and segment every recording under `folder`; raises TargetAudioError when
    no audio or too little speech is found."""
    folder = Path(folder)
    files = find_audio(folder)
    if not files:
        raise TargetAudioError(f"{folder}: no audio files found (looked for "
                               f"{', '.join(AUDIO_SUFFIXES[:6])}, ... in every subfolder)")
    result = TargetAudio(folder=folder, segments=[], views=[], files=files)
    pieces: list[tuple[Segment, np.ndarray]] = []
    report_every = max(1, len(files) // 10)
    for n, path in enumerate(files, start=1):
        try:
            audio = load_mono_16k(path)
        except AudioError as exc:
            result.skipped.append((path, str(exc)))
            log(f"skipped: {exc}")
            continue
        result.audio_s += len(audio) / SAMPLE_RATE_HZ
        spans = speech_spans(audio, cfg)
        if not spans:
            result.without_speech.append(path)
            log(f"no speech: {path}: the VAD found no speech segment of at least "
                f"{cfg.min_segment_s:g} s")
        for start, end in spans:
            # feature frame f covers samples [f * HOP, f * HOP + WINDOW)
            samples = audio[start * HOP_SAMPLES:(end - 1) * HOP_SAMPLES + WINDOW_SAMPLES]
            pieces.append((Segment(path, start / FRAMES_PER_S, end / FRAMES_PER_S), samples))
        if n % report_every == 0 or n == len(files):
            log(f"  read {n}/{len(files)} files: {len(pieces)} speech segments so far")
    if len(result.skipped) == len(files):
        raise TargetAudioError(f"{folder}: none of the {len(files)} audio files could be "
                               f"decoded (first: {result.skipped[0][1]})")
    if len(pieces) < cfg.min_segments:
        speech = sum(len(p) for _, p in pieces) / SAMPLE_RATE_HZ
        raise TargetAudioError(
            f"{folder}: too little speech to adapt to: {len(pieces)} speech segments "
            f"({speech:.0f} s) in {len(files) - len(result.skipped)} readable files; at least "
            f"{cfg.min_segments} segments of {cfg.min_segment_s:g} s or more are needed "
            "(add recordings, or lower target.min_segments)")
    rng = np.random.default_rng(seed)
    if len(pieces) > cfg.max_segments:
        keep = np.sort(rng.choice(len(pieces), size=cfg.max_segments, replace=False))
        log(f"  using a random {cfg.max_segments} of {len(pieces)} segments "
            "(target.max_segments)")
        pieces = [pieces[i] for i in keep]
    for segment, samples in pieces:
        # augmentation seeded per segment, so the views do not depend on the folder's order
        key = f"{segment.path.name}:{segment.start_s:.2f}".encode()
        seg_rng = np.random.default_rng(int.from_bytes(hashlib.sha256(key).digest()[:8],
                                                       "little") + seed)
        views = [log_mel(samples)] + [log_mel(augment(samples, aug, seg_rng))
                                      for _ in range(cfg.views)]
        result.segments.append(segment)
        result.views.append([v.astype(np.float32) for v in views])
        result.speech_s += len(samples) / SAMPLE_RATE_HZ
    return result
