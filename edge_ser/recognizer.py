"""The shared, immutable recognizer: model package, encoder backend, scorer and runtime config.

    recognizer = Recognizer.from_options()              # bundled model, onnxruntime INT8
    stream = recognizer.create_stream(sample_rate_hz=48_000)
    for block in blocks:
        for event in stream.accept_waveform(block): ...
    events = stream.input_finished()

One recognizer serves any number of streams (one per audio source); it holds no per-stream
state, so streams never see each other. `process_file` is the offline pass over a recording.
"""

from __future__ import annotations

import heapq
import os
from dataclasses import dataclass

import numpy as np

from edge_ser import family
from edge_ser.audio import iter_blocks
from edge_ser.contract import SAMPLE_RATE_HZ
from edge_ser.events import Event
from edge_ser.runtime_config import RuntimeConfig
from edge_ser.speech_check import SpeechCheck
from edge_ser.stream import Stream

FILE_BLOCK_S = 10.0
"""Block length `process_file` decodes at a time: memory stays flat for any recording length."""


@dataclass(frozen=True)
class Scored:
    """One pooled window or segment, scored."""

    probs: np.ndarray
    """(K,) fused class probabilities, in the order of the package's labels; sum to 1."""
    similarity: float
    """Highest cosine similarity to the memory bank (the out-of-domain signal)."""


class Recognizer:
    """Model package + encoder backend + scorer + runtime config; immutable, shared by streams.

    `scorer` defaults to the scorer of the package's family (`family.scorer_for`: for `tcn`
    `WindowScorer.from_package(package)`); any object with `score_pooled(pooled (B, P)) ->
    scores` (fields `probs` (B, K) and `similarity` (B,)) works. `pooling` (from the family)
    turns a window of encoder frames into the pooled vector.
    `speech_check` defaults to the shipped classifier (`SpeechCheck.load()`), loaded only when
    the config enables it.
    """

    _frozen = False

    def __init__(self, package, backend, config: RuntimeConfig | None = None,
                 scorer=None, speech_check: SpeechCheck | None = None) -> None:
        if scorer is None:
            scorer = family.scorer_for(package)
        if backend.chunk_frames % backend.stride:
            raise ValueError(f"encoder chunk of {backend.chunk_frames} frames is not a multiple "
                             f"of its stride {backend.stride}")
        self.package = package
        self.backend = backend
        self.scorer = scorer
        self.pooling = family.pooling_for(package, backend.out_channels)
        self.config = config if config is not None else RuntimeConfig()
        if speech_check is None and self.config.speech_check.enabled:
            speech_check = SpeechCheck.load()
        self.speech_check = speech_check
        self.labels: tuple[str, ...] = tuple(package.labels)
        self._frozen = True

    def __setattr__(self, name: str, value: object) -> None:
        if self._frozen:
            raise AttributeError(f"Recognizer is immutable: cannot set {name!r}; "
                                 "per-source state belongs to a Stream")
        super().__setattr__(name, value)

    @classmethod
    def from_options(cls, model: str | os.PathLike | None = None, backend: str = "onnxruntime",
                     precision: str | None = None, threads: int = 1,
                     config: RuntimeConfig | None = None) -> Recognizer:
        """Load a model package (None: the bundled default) and create its backend
        (precision None: the backend's default, `backends.default_precision`)."""
        from edge_ser.backends import create_backend
        from edge_ser.package import load_package

        package = load_package(model)
        return cls(package, create_backend(package, name=backend, precision=precision,
                                           threads=threads), config)

    def create_stream(self, sample_rate_hz: int = SAMPLE_RATE_HZ, channel: int = 0,
                      whole_segments: bool = False) -> Stream:
        """A new stream for one audio source at `sample_rate_hz` (resampled to 16 kHz);
        `whole_segments`: one encoder call per segment, for files (see `Stream`)."""
        return Stream(self, sample_rate_hz, channel, whole_segments)

    def score(self, pooled: np.ndarray) -> Scored:
        """Score one pooled (2C,) vector (always batch 1, so the numbers never depend on what
        else is scored)."""
        scores = self.scorer.score_pooled(np.asarray(pooled, dtype=np.float32)[np.newaxis])
        return Scored(probs=np.asarray(scores.probs[0], dtype=np.float64),
                      similarity=float(scores.similarity[0]))

    def process_file(self, path: str | os.PathLike, split_channels: bool = False,
                     block_s: float = FILE_BLOCK_S) -> list[Event]:
        """Every event of a recording, decoded block by block (any format libsndfile reads).

        The channels are mixed to one stream (channel 0), or with `split_channels` each gets
        its own stream and the events are merged by end time, each channel's order kept.
        Raises AudioError for a file that cannot be used.
        """
        streams: list[Stream] = []
        per_channel: list[list[Event]] = []
        for block, rate_hz in iter_blocks(path, block_s):
            if not streams:
                n = block.shape[1] if split_channels else 1
                streams = [self.create_stream(rate_hz, channel=c) for c in range(n)]
                per_channel = [[] for _ in streams]
            for c, stream in enumerate(streams):
                part = block[:, c] if split_channels else block
                per_channel[c].extend(stream.accept_waveform(part))
        for c, stream in enumerate(streams):
            per_channel[c].extend(stream.input_finished())
        if len(per_channel) == 1:
            return per_channel[0]
        return list(heapq.merge(*per_channel, key=lambda e: e.end_s))

    def close(self) -> None:
        """Release the backend (sessions, engines)."""
        self.backend.close()

    def __enter__(self) -> Recognizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
