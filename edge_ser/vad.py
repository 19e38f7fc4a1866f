"""Speech segmentation with webrtcvad: re-framing, hysteresis, padding, minimum and maximum lengths.

The input (16 kHz float32, any chunk sizes) is re-framed into webrtcvad's frames of
`frame_ms` (10, 20 or 30 ms) and each frame gets a voiced/unvoiced decision. On top of those:

- **hysteresis**: `onset_frames` voiced frames in a row start a speech run (the run starts at
  the first of them); `offset_frames` unvoiced frames in a row end it (at its last voiced frame).
- **segments** gather runs: a pause shorter than `min_silence_ms` keeps the next run in the same
  segment; a segment closes once the silence after its last run reaches `min_silence_ms`.
- **minimum speech**: a segment is announced (`SegmentOpen`) only once its speech spans
  `min_speech_ms`; shorter ones vanish without an event.
- **maximum length**: a segment reaching `max_segment_s` of speech time is closed there
  (`split=True`) and the speech goes on in a new segment starting at the same frame.
- **padding**: the encoder is fed `pre_pad_ms` before the speech start (never reaching back into
  the previous segment) and `post_pad_ms` after the speech end (never past a split point).

Positions are feature frames (10 ms, `contract.HOP_SAMPLES`) counted from the stream start:
frame f covers samples [f * 160, (f + 1) * 160). Every webrtcvad frame is a whole number of
feature frames. Decisions depend only on the sample sequence, never on how it was chunked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import _webrtcvad  # webrtcvad's C extension (see _decisions)
import numpy as np
import webrtcvad

from edge_ser.contract import HOP_MS, HOP_SAMPLES, SAMPLE_RATE_HZ
from edge_ser.runtime_config import VadConfig


@dataclass(frozen=True)
class SegmentOpen:
    """A confirmed segment: the encoder starts (fresh state) at `start_frame`."""

    start_frame: int
    """Padded start: the first frame fed to the encoder."""
    speech_start_frame: int
    """First frame of the speech itself (the start of its first run)."""


@dataclass(frozen=True)
class SegmentClose:
    """The open segment ends: the encoder is fed up to `end_frame` (exclusive)."""

    end_frame: int
    """Padded end: one past the last frame fed to the encoder."""
    speech_end_frame: int
    """One past the last voiced frame of the segment (or the split point)."""
    split: bool
    """True when closed at the maximum length while speech may go on."""


VadEvent = SegmentOpen | SegmentClose


class Phase(Enum):
    IDLE = 0  # no segment
    PENDING = 1  # speech seen, shorter than min_speech_ms so far: not announced yet
    ACTIVE = 2  # announced with SegmentOpen


@dataclass
class VadState:
    """Per-stream state: webrtcvad's own adaptive state, the framing tail and the hysteresis."""

    detector: webrtcvad.Vad
    frame_samples: int
    tail: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    next_frame: int = 0  # feature frame where the next webrtcvad frame starts
    phase: Phase = Phase.IDLE
    in_run: bool = False
    voiced_count: int = 0  # voiced frames in a row (outside a run)
    unvoiced_count: int = 0  # unvoiced frames in a row (inside a run)
    speech_start: int = 0
    speech_end: int = 0  # one past the last voiced frame of the current segment
    previous_end: int = 0  # padded end of the last closed segment
    finished: bool = False

    @property
    def speaking(self) -> bool:
        """Inside a speech run right now (the live speech/silence indicator)."""
        return self.in_run and self.phase is not Phase.IDLE


def init_state(config: VadConfig) -> VadState:
    """A fresh state for a new audio source."""
    return VadState(detector=webrtcvad.Vad(config.aggressiveness),
                    frame_samples=SAMPLE_RATE_HZ * config.frame_ms // 1000)


def _ms_to_frames(ms: float) -> int:
    return round(ms / HOP_MS)


def committed_end(state: VadState, config: VadConfig) -> int:
    """Frames before this one certainly belong to the open segment (its end can only be later).

    Only meaningful while a segment is open (`phase` ACTIVE); the encoder may run up to here.
    """
    return min(state.speech_end + _ms_to_frames(config.post_pad_ms),
               state.speech_start + _ms_to_frames(config.max_segment_s * 1000))


def earliest_start(state: VadState, config: VadConfig) -> int:
    """No segment announced from now on can start (padded) before this frame."""
    if state.phase is Phase.IDLE:
        # an onset now under way started at most onset_frames webrtcvad frames ago
        onset_start = state.next_frame - config.onset_frames * state.frame_samples // HOP_SAMPLES
    else:
        onset_start = state.speech_start
    return max(onset_start - _ms_to_frames(config.pre_pad_ms), state.previous_end, 0)


def accept(state: VadState, config: VadConfig, samples: np.ndarray) -> list[VadEvent]:
    """Feed the next 16 kHz float32 (n,) samples; return the segment events they complete."""
    if state.finished:
        raise RuntimeError("vad.accept() after finish(); make a new state")
    samples = np.asarray(samples, dtype=np.float32)
    buffer = np.concatenate((state.tail, samples)) if state.tail.size else samples
    n_frames = buffer.size // state.frame_samples
    used = n_frames * state.frame_samples
    state.tail = buffer[used:].copy()
    if n_frames == 0:
        return []
    # webrtcvad reads 16-bit PCM; one conversion for all the frames of this call
    pcm = np.clip(np.round(buffer[:used] * 32768.0), -32768, 32767).astype("<i2")
    events: list[VadEvent] = []
    frames_per_vad = state.frame_samples // HOP_SAMPLES
    for voiced in _decisions(state.detector, pcm, state.frame_samples):
        if not voiced and not state.in_run and state.phase is Phase.IDLE:
            # silence between segments, most frames of a call: all that _step would do
            state.voiced_count = 0
            state.next_frame += frames_per_vad
        else:
            _step(state, config, voiced, events)
    return events


def _decisions(detector, pcm: np.ndarray, frame_samples: int) -> list[bool]:
    """The detector's verdict on each whole frame of 16-bit `pcm`.

    A webrtcvad.Vad is called through its C function: its Python wrapper re-checks the buffer
    length on every call, a tenth of the VAD's time in a batch. Other detectors (tests) through
    `is_speech`.
    """
    frame_bytes = frame_samples * 2
    data = memoryview(pcm.tobytes())  # frames are sliced without copying
    starts = range(0, len(data), frame_bytes)
    handle = getattr(detector, "_vad", None) if type(detector) is webrtcvad.Vad else None
    if handle is not None:
        process = _webrtcvad.process
        return [process(handle, SAMPLE_RATE_HZ, data[i:i + frame_bytes], frame_samples)
                for i in starts]
    return [detector.is_speech(data[i:i + frame_bytes], SAMPLE_RATE_HZ) for i in starts]


def finish(state: VadState, config: VadConfig) -> list[VadEvent]:
    """End of input: close the open segment at its last voiced frame (a pending one vanishes).

    Samples that do not fill a webrtcvad frame are not judged.
    """
    if state.finished:
        raise RuntimeError("vad.finish() called twice; make a new state")
    state.finished = True
    events: list[VadEvent] = []
    if state.phase is Phase.ACTIVE:
        events.append(_close(state, config, split=False))
    state.phase = Phase.IDLE
    return events


def _step(state: VadState, config: VadConfig, voiced: bool, events: list[VadEvent]) -> None:
    """Advance by one webrtcvad frame."""
    frames_per_vad = state.frame_samples // HOP_SAMPLES
    start = state.next_frame
    end = start + frames_per_vad
    state.next_frame = end

    if state.in_run:
        if voiced:
            state.unvoiced_count = 0
            state.speech_end = end
        else:
            state.unvoiced_count += 1
            if state.unvoiced_count >= config.offset_frames:
                state.in_run = False
                state.voiced_count = 0
    elif voiced:
        state.voiced_count += 1
        if state.voiced_count >= config.onset_frames:
            state.in_run = True
            state.unvoiced_count = 0
            if state.phase is Phase.IDLE:
                # the run (and the segment) starts at the first voiced frame of the onset
                state.phase = Phase.PENDING
                state.speech_start = end - config.onset_frames * frames_per_vad
            state.speech_end = end
    else:
        state.voiced_count = 0

    if state.phase is Phase.IDLE:
        return
    if state.phase is Phase.PENDING and _long_enough(state, config):
        state.phase = Phase.ACTIVE
        pre_pad = _ms_to_frames(config.pre_pad_ms)
        events.append(SegmentOpen(start_frame=max(state.speech_start - pre_pad,
                                                  state.previous_end, 0),
                                  speech_start_frame=state.speech_start))
    # the pause lasts until the next run starts: voiced frames of an onset under way are not
    # silence (if the onset fails, the segment closes on the frame that breaks it)
    silence = end - state.voiced_count * frames_per_vad - state.speech_end
    if not state.in_run and silence * HOP_MS >= config.min_silence_ms:
        if state.phase is Phase.ACTIVE:
            events.append(_close(state, config, split=False))
        state.phase = Phase.IDLE
        return
    if state.phase is not Phase.ACTIVE:
        return
    split_at = state.speech_start + _ms_to_frames(config.max_segment_s * 1000)
    if end >= split_at:
        events.append(_close(state, config, split=True))
        # the speech goes on in a new segment from the split point (no pre-padding into the
        # segment just closed); it is announced once it is long enough
        state.phase = Phase.PENDING
        state.speech_start = split_at
        state.speech_end = max(state.speech_end, split_at)
        if _long_enough(state, config):
            state.phase = Phase.ACTIVE
            events.append(SegmentOpen(start_frame=split_at, speech_start_frame=split_at))


def _long_enough(state: VadState, config: VadConfig) -> bool:
    """The pending segment holds at least `min_speech_ms` of speech (and some at all)."""
    span = state.speech_end - state.speech_start
    return span > 0 and span >= _ms_to_frames(config.min_speech_ms)


def _close(state: VadState, config: VadConfig, split: bool) -> SegmentClose:
    split_at = state.speech_start + _ms_to_frames(config.max_segment_s * 1000)
    if split:
        event = SegmentClose(end_frame=split_at, speech_end_frame=min(state.speech_end, split_at),
                             split=True)
    else:
        event = SegmentClose(end_frame=committed_end(state, config),
                             speech_end_frame=state.speech_end, split=False)
    state.previous_end = event.end_frame
    return event
