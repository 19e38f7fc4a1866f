"""Small deterministic stand-ins for a model package, encoder backend and scorer.

They follow the runtime interfaces exactly (`EncoderBackend`, `WindowScorer.score_pooled`) and
are pure numpy, so the engine's tests run fast and need no trained model.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from edge_ser.contract import DEFAULT_LABELS, N_MELS

CHANNELS = 16


class FakeBackend:
    """A causal strided filter with explicit state: output j of a chunk averages input frames
    2j-2 .. 2j+1 (the last two come from the previous chunk via the state), then a fixed
    random projection and tanh. Holds no per-stream state."""

    def __init__(self, chunk_frames: int = 8, stride: int = 2, out_channels: int = CHANNELS,
                 seed: int = 0, runs_segments: bool = True) -> None:
        rng = np.random.default_rng(seed)
        self.chunk_frames = chunk_frames
        self.stride = stride
        self.out_channels = out_channels
        self._weights = (rng.standard_normal((N_MELS, out_channels)) * 0.05).astype(np.float32)
        self._bias = np.float32(0.5)
        self.calls = 0  # counts runs, for tests that check the encoder work; not stream state
        self.segment_calls = 0
        self.runs_segments = runs_segments

    def init_state(self, batch: int = 1) -> list[np.ndarray]:
        return [np.zeros((batch, self.stride, N_MELS), dtype=np.float32)]

    def run(self, feats: np.ndarray, state: list[np.ndarray]):
        if feats.shape[1:] != (self.chunk_frames, N_MELS):
            raise ValueError(f"expected (B, {self.chunk_frames}, {N_MELS}), got {feats.shape}")
        self.calls += 1
        return self._forward(feats, state)

    def run_segment(self, feats: np.ndarray, state: list[np.ndarray]) -> np.ndarray:
        if not self.runs_segments:
            raise RuntimeError("this fake backend was made without whole-segment calls")
        if feats.shape[1] % self.stride or feats.shape[2] != N_MELS:
            raise ValueError(f"expected (B, k * {self.stride}, {N_MELS}), got {feats.shape}")
        self.segment_calls += 1
        return self._forward(feats, state)[0]

    def _forward(self, feats: np.ndarray, state: list[np.ndarray]):
        full = np.concatenate((state[0], feats), axis=1)  # (B, stride + frames, mels)
        n_out = feats.shape[1] // self.stride
        groups = np.stack([full[:, j * self.stride:j * self.stride + 2 * self.stride].mean(1)
                           for j in range(n_out)], axis=1)  # (B, n_out, mels)
        frames = np.tanh((groups + self._bias) @ self._weights).astype(np.float32)
        return frames, [full[:, -self.stride:].copy()]

    def close(self) -> None:
        pass


@dataclass
class FakeScores:
    probs: np.ndarray
    classifier_probs: np.ndarray
    memory_probs: np.ndarray
    similarity: np.ndarray


class FakeScorer:
    """Linear classifier + a memory bank of fixed unit vectors, on pooled (B, 2C) vectors."""

    def __init__(self, channels: int = CHANNELS, n_classes: int = len(DEFAULT_LABELS),
                 seed: int = 1) -> None:
        rng = np.random.default_rng(seed)
        self._classifier = rng.standard_normal((2 * channels, n_classes)) * 3.0
        bank = rng.standard_normal((n_classes, 2 * channels))
        self._bank = bank / np.linalg.norm(bank, axis=1, keepdims=True)

    def score_pooled(self, pooled: np.ndarray) -> FakeScores:
        pooled = np.asarray(pooled, dtype=np.float64)
        centred = pooled - pooled.mean(axis=1, keepdims=True)
        logits = centred @ self._classifier
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        unit = centred / np.maximum(np.linalg.norm(centred, axis=1, keepdims=True), 1e-12)
        cosine = unit @ self._bank.T
        # mapped to [0, 1]: in the range of a real model's similarities for speech
        return FakeScores(probs=probs, classifier_probs=probs, memory_probs=probs,
                          similarity=(1.0 + cosine.max(axis=1)) / 2)


def fake_package(backend: FakeBackend | None = None) -> SimpleNamespace:
    backend = backend or FakeBackend()
    return SimpleNamespace(labels=DEFAULT_LABELS, chunk_frames=backend.chunk_frames,
                           stride=backend.stride, embedding_channels=backend.out_channels,
                           manifest={}, root=None)


def fake_recognizer(config=None, **backend_options):
    from edge_ser.recognizer import Recognizer

    backend = FakeBackend(**backend_options)
    return Recognizer(fake_package(backend), backend, config, scorer=FakeScorer(
        channels=backend.out_channels))
