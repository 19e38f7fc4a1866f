"""One audio source: all the incremental state between raw samples and emotion events.

    samples (source rate) -> StreamingResampler -> 16 kHz -> SampleBuffer
        -> vad.accept (webrtcvad frames, hysteresis) -> segment open/close events
        -> per segment: features.frames_of (each 10 ms frame of the segment once)
        -> encoding (fresh state, fixed chunks) -> pooling of the family (running sums)
        -> scorer (classifier + memory bank) + speech check (on the window's log-mel frames)
        -> tracker -> WindowUpdate / EmotionChange / SegmentResult

The speech check (`speech_check`) judges every window and each whole segment from the log-mel
frames the encoder was fed; a span it rejects (tones, hum, noise, DTMF, ringback, music) gets
no emotion (label None) and never reaches the tracker.

A segment's frames are computed and encoded as soon as they certainly belong to it (up to
`vad.committed_end`), so when the VAD closes a segment only its last chunk is left to run.
Feature frames are computed only for segments: silence costs the VAD and nothing else.
Windows are scored one at a time (batch 1), so a window's numbers never depend on which other
windows happened to complete in the same call. Together with the chunking-invariant resampler,
features and VAD this makes the events of any chunking equal to those of one offline pass.

Create streams with `Recognizer.create_stream`; a stream is not thread-safe (one per source).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from edge_ser import encoding, features, speech_check, speech_spans, tracker, vad
from edge_ser.audio import StreamingResampler, to_mono
from edge_ser.contract import FRAMES_PER_S, HOP_SAMPLES, SAMPLE_RATE_HZ, num_frames
from edge_ser.events import EmotionChange, Event, SegmentResult, WindowUpdate
from edge_ser.sample_buffer import SampleBuffer


class _Rows:
    """Rows appended over one segment (bounded by `vad.max_segment_s`); doubles when full."""

    def __init__(self) -> None:
        self.data: np.ndarray | None = None
        self.count = 0

    def append(self, rows: np.ndarray) -> None:
        need = self.count + rows.shape[0]
        if self.data is None or need > self.data.shape[0]:
            grown = np.empty((max(need, 256, 2 * self.count), rows.shape[1]), dtype=np.float32)
            if self.data is not None:
                grown[:self.count] = self.data[:self.count]
            self.data = grown
        self.data[self.count:need] = rows
        self.count = need

    def view(self, first: int = 0, end: int | None = None) -> np.ndarray:
        end = self.count if end is None else min(end, self.count)
        if self.data is None:
            return np.zeros((0, 0), dtype=np.float32)
        return self.data[first:end]


@dataclass
class _Segment:
    """The segment being encoded. Positions are feature frames from the stream start."""

    index: int
    start_frame: int  # padded start: encoder frame j covers feature frames from start + j*stride
    speech_start_frame: int
    next_frame: int  # next feature frame to feed to the encoder
    encoder: encoding.EncoderState | None  # None: the segment is encoded in one call
    windows: object  # the pooling state of the package's family (`edge_ser.family`)
    end_frame: int | None = None  # padded end, known once the VAD closes the segment
    speech_end_frame: int = 0
    split: bool = False
    window_count: int = 0
    mel: _Rows | None = None  # the feature frames fed so far, for the speech check
    spans: speech_spans.SpanState | None = None  # the speech check's span scores
    encoded: _Rows | None = None  # the encoder frames so far, to pool the parts of a segment


class Stream:
    """Incremental emotion recognition over one audio source.

    `accept_waveform(samples)` takes float32 samples at the stream's rate, mono (n,) or
    (n, channels) (mixed down), any length; `input_finished()` ends the source and flushes the
    last segment. Both return the events completed by the call, in time order.

    `whole_segments` (files, where no one waits for a segment's window updates): each segment
    is encoded in one call once the VAD closes it, when the backend can (`runs_segments`), at
    a fraction of the encoder CPU; the events are those of fixed chunks up to float rounding
    (`backends.segment_graph`), and the window updates of a segment come out when it closes.
    """

    def __init__(self, recognizer, sample_rate_hz: int, channel: int = 0,
                 whole_segments: bool = False) -> None:
        self._recognizer = recognizer
        self._config = recognizer.config
        self.sample_rate_hz = sample_rate_hz
        self.channel = channel
        self._resampler = StreamingResampler(sample_rate_hz)
        self._features = features.init_state(self._config.features.kernels)
        self._samples = SampleBuffer()
        self._vad = vad.init_state(self._config.vad)
        self._queue: deque[vad.VadEvent] = deque()
        self._tracker = tracker.init_state(recognizer.labels)
        self._segment: _Segment | None = None
        self._segments_started = 0
        self._samples_16k = 0
        self._finished = False
        backend = recognizer.backend
        self._pooling = recognizer.pooling
        frames_per_s = FRAMES_PER_S / backend.stride
        self._window_frames = max(1, round(self._config.window.window_s * frames_per_s))
        self._hop_frames = max(1, round(self._config.window.hop_s * frames_per_s))
        # files only: the window updates of a segment then come out when it closes
        self._whole_segments = whole_segments and backend.runs_segments

    # --- public ------------------------------------------------------------------------------

    @property
    def time_s(self) -> float:
        """Audio time processed so far (16 kHz samples out of the resampler), in seconds."""
        return self._samples_16k / SAMPLE_RATE_HZ

    @property
    def speaking(self) -> bool:
        """Inside a speech run right now, by the VAD's hysteresis."""
        return self._vad.speaking

    @property
    def tracked(self) -> str | None:
        """The emotion the tracker holds now (None before the first confident result)."""
        return self._tracker.current

    @property
    def finished(self) -> bool:
        return self._finished

    def accept_waveform(self, samples: np.ndarray) -> list[Event]:
        """Feed samples (n,) or (n, channels) float32 in [-1, 1] at `sample_rate_hz`."""
        if self._finished:
            raise RuntimeError("accept_waveform() after input_finished(); create a new stream")
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim not in (1, 2):
            raise ValueError(f"expected samples shaped (n,) or (n, channels), got "
                             f"{samples.shape}")
        return self._push(self._resampler.process(to_mono(samples)), final=False)

    def input_finished(self) -> list[Event]:
        """End of the source: flush the resampler, close the open segment, return the rest."""
        if self._finished:
            raise RuntimeError("input_finished() called twice; create a new stream")
        events = self._push(self._resampler.flush(), final=False)
        self._queue.extend(vad.finish(self._vad, self._config.vad))
        self._finished = True
        self._drain(events, final=True)
        return events

    # --- the pipeline ------------------------------------------------------------------------

    def _push(self, samples_16k: np.ndarray, final: bool) -> list[Event]:
        self._samples_16k += samples_16k.size
        self._samples.append(samples_16k)
        self._queue.extend(vad.accept(self._vad, self._config.vad, samples_16k))
        events: list[Event] = []
        self._drain(events, final)
        self._trim()
        return events

    def _drain(self, events: list[Event], final: bool) -> None:
        """Advance segments through the queued VAD events as far as the features allow."""
        while True:
            segment = self._segment
            if segment is None:
                if not self._queue:
                    return
                event = self._queue.popleft()
                if not isinstance(event, vad.SegmentOpen):
                    raise RuntimeError(f"VAD close without an open segment: {event}")
                self._segment = self._open(event)
                continue
            if segment.end_frame is None and self._queue:
                close = self._queue.popleft()
                if not isinstance(close, vad.SegmentClose):
                    raise RuntimeError(f"VAD open inside an open segment: {close}")
                segment.end_frame = close.end_frame
                segment.speech_end_frame = close.speech_end_frame
                segment.split = close.split
            if segment.end_frame is not None:
                limit = segment.end_frame
            else:
                limit = vad.committed_end(self._vad, self._config.vad)
            frames_end = num_frames(self._samples.end)  # frames the samples so far complete
            if final:  # no more frames will come: the segment ends with the audio
                limit = min(limit, frames_end)
                if segment.end_frame is not None:
                    segment.end_frame = min(segment.end_frame, frames_end)
            upto = min(limit, frames_end)
            if self._whole_segments and (segment.end_frame is None or upto < segment.end_frame):
                return  # the segment goes to the encoder in one call once it is complete
            if upto > segment.next_frame:
                feats = self._frames_between(segment.next_frame, upto)
                self._keep_mel(segment, feats)
                if self._whole_segments:
                    out = encoding.encode_segment(self._recognizer.backend, feats)
                else:
                    out = encoding.feed(segment.encoder, self._recognizer.backend, feats)
                self._windows(segment, out, events)
                segment.next_frame = upto
            if segment.end_frame is None or segment.next_frame < segment.end_frame:
                return  # waiting for audio
            self._close(segment, events)
            self._segment = None

    def _open(self, event: vad.SegmentOpen) -> _Segment:
        backend = self._recognizer.backend
        tracker.start_segment(self._tracker)
        segment = _Segment(
            index=self._segments_started,
            start_frame=event.start_frame,
            speech_start_frame=event.speech_start_frame,
            next_frame=event.start_frame,
            encoder=None if self._whole_segments else encoding.init_state(backend),
            windows=self._pooling.init_state(self._window_frames, self._hop_frames),
        )
        self._segments_started += 1
        return segment

    def _frames_between(self, first: int, end: int) -> np.ndarray:
        """Feature frames [first, end) (absolute), computed from the kept samples."""
        start, stop = features.sample_span(first, end)
        return features.frames_of(self._features, self._samples.view(start, stop), end - first)

    def _keep_mel(self, segment: _Segment, feats: np.ndarray) -> None:
        """Keep a segment's new log-mel frames for the speech check."""
        if self._config.speech_check.enabled:
            segment.mel = segment.mel or _Rows()
            segment.mel.append(feats)
            segment.spans = segment.spans or speech_spans.init_state(
                segment.speech_start_frame - segment.start_frame)
            speech_spans.advance(segment.spans, self._recognizer.speech_check,
                                 segment.mel.view())

    def _judge(self, segment: _Segment, first_frame: int, end_frame: int
               ) -> speech_check.Verdict:
        """The speech check on the segment's feature frames [first_frame, end_frame)."""
        config = self._config.speech_check
        if not config.enabled or segment.mel is None:
            return speech_check.Verdict(speech=True, score=1.0, reason=None)
        return speech_spans.window(segment.spans, self._recognizer.speech_check,
                                   segment.mel.view(), first_frame, end_frame, config.min_score)

    def _windows(self, segment: _Segment, out: np.ndarray, events: list[Event]) -> None:
        stride = self._recognizer.backend.stride
        if segment.mel is not None:
            segment.encoded = segment.encoded or _Rows()
            segment.encoded.append(out)
        for first, end, pooled in self._pooling.push(segment.windows, out):
            scores = self._recognizer.score(pooled)
            judged = self._judge(segment, first * stride, end * stride)
            start_s = (segment.start_frame + first * stride) / FRAMES_PER_S
            end_s = (segment.start_frame + end * stride) / FRAMES_PER_S
            change = None
            if judged.speech:
                smoothed = tracker.smooth(self._tracker, self._config.tracker, scores.probs)
                change = tracker.observe(self._tracker, self._config.tracker, smoothed,
                                         scores.similarity)
                label = tracker.verdict(self._tracker.labels, scores.probs, scores.similarity,
                                        self._config.tracker)
            else:
                smoothed, label = self._tracker.smoothed, None
            events.append(WindowUpdate(
                start_s=start_s, end_s=end_s, label=label, probs=self._named(scores.probs),
                confidence=float(scores.probs.max()), similarity=scores.similarity,
                channel=self.channel, segment=segment.index, speech=judged.speech,
                speech_score=judged.score, reason=judged.reason,
                smoothed=None if smoothed is None else self._named(smoothed),
                tracked=self._tracker.current))
            segment.window_count += 1
            if change is not None:
                events.append(self._change(change, start_s, end_s, smoothed, scores.similarity,
                                           segment.index, judged.score))

    def _close(self, segment: _Segment, events: list[Event]) -> None:
        backend = self._recognizer.backend
        if segment.encoder is not None:  # the last, partial chunk
            self._windows(segment, encoding.finish(segment.encoder, backend), events)
        # the speech check judges the speech itself, without the padding (silence by design)
        lead = max(0, segment.speech_start_frame - segment.start_frame)
        speech_end = max(segment.speech_end_frame, segment.speech_start_frame)
        tail = max(lead, speech_end - segment.start_frame)
        parts = [(lead, tail, speech_check.Verdict(speech=True, score=1.0, reason=None))]
        if segment.mel is not None:
            parts = speech_spans.segment_parts(segment.spans, self._recognizer.speech_check,
                                               segment.mel.view(), tail,
                                               self._config.speech_check.min_score)
        for first, end, judged in parts:
            self._result(segment, first, end, judged, len(parts) > 1, events)

    def _result(self, segment: _Segment, first: int, end: int, judged: speech_check.Verdict,
                part: bool, events: list[Event]) -> None:
        """The final result of a segment, or of one part of it (feature frames [first, end)
        of the segment) where the speech check finds speech and non-speech in it."""
        stride = self._recognizer.backend.stride
        if part:  # pooled over the part's own encoder frames
            pooled = self._pooling.pool_frames(segment.encoded.view(
                first // stride, max(end // stride, first // stride + 1)))
        else:
            pooled = self._pooling.pool_all(segment.windows)
        scores = self._recognizer.score(pooled)
        start_s = (segment.start_frame + first) / FRAMES_PER_S
        end_s = (segment.start_frame + end) / FRAMES_PER_S
        label = None
        if judged.speech:
            label = tracker.verdict(self._tracker.labels, scores.probs, scores.similarity,
                                    self._config.tracker)
        events.append(SegmentResult(
            start_s=start_s, end_s=end_s, label=label, probs=self._named(scores.probs),
            confidence=float(scores.probs.max()), similarity=scores.similarity,
            channel=self.channel, segment=segment.index, speech=judged.speech,
            speech_score=judged.score, reason=judged.reason, windows=segment.window_count,
            split=segment.split))
        # too short for a window: the result is the observation (if it is speech)
        if segment.window_count == 0 and judged.speech:
            change = tracker.observe(self._tracker, self._config.tracker, scores.probs,
                                     scores.similarity)
            if change is not None:
                events.append(self._change(change, start_s, end_s, scores.probs,
                                           scores.similarity, segment.index, judged.score))

    def _change(self, change: tuple[str | None, str], start_s: float, end_s: float,
                probs: np.ndarray, similarity: float, segment: int,
                score: float) -> EmotionChange:
        previous, label = change
        return EmotionChange(
            start_s=start_s, end_s=end_s, label=label, probs=self._named(probs),
            confidence=float(probs[self._tracker.labels.index(label)]), similarity=similarity,
            channel=self.channel, segment=segment, speech=True, speech_score=score,
            reason=None, previous=previous)

    def _named(self, probs: np.ndarray) -> dict[str, float]:
        return {label: float(p) for label, p in zip(self._tracker.labels, probs)}

    def _trim(self) -> None:
        """Forget samples whose frames neither the open segment nor a future one can need."""
        keep = vad.earliest_start(self._vad, self._config.vad)
        if self._segment is not None:
            keep = min(keep, self._segment.next_frame)
        for event in self._queue:
            if isinstance(event, vad.SegmentOpen):
                keep = min(keep, event.start_frame)
        self._samples.trim(keep * HOP_SAMPLES)
