"""The eGeMAPS + logistic-regression peer on synthetic speech-like audio."""

from __future__ import annotations

import csv
import importlib.util
import sys
import wave
from dataclasses import replace

import numpy as np
import pytest

from edge_ser.contract import DEFAULT_LABELS
from edge_ser_train import peer_egemaps
from edge_ser_train.corpus import labelled, read_corpus, speaker_split
from edge_ser_train.peer_egemaps import (
    N_FEATURES,
    EgemapsPeer,
    PeerError,
    egemaps_features,
    evaluate_peer,
)

requires_opensmile = pytest.mark.skipif(
    importlib.util.find_spec("opensmile") is None,
    reason="openSMILE is not installed (research-only extra: pip install -e .[bench])")
requires_sklearn = pytest.mark.skipif(importlib.util.find_spec("sklearn") is None,
                                      reason="the peer's classifier needs scikit-learn "
                                      "(the [bench] extra)")

RATE_HZ = 16_000
# Per class: (fundamental Hz, peak amplitude, harmonics). Loud, high and bright against quiet,
# low and dull, with two classes in between, so the functionals separate them easily.
VOICES = {
    "angry": (300.0, 0.8, 12),
    "happy": (220.0, 0.4, 8),
    "neutral": (140.0, 0.15, 4),
    "sad": (95.0, 0.04, 2),
}
SPEAKERS = ("s1", "s2", "s3", "s4", "s5")
CLIPS_PER_SPEAKER_AND_CLASS = 2
FIELDS = ("file, corpus, language, speaker, gender, emotion, emotion4, text, sample_rate, "
          "channels, duration_s").split(", ")


def _voice(f0_hz: float, amplitude: float, harmonics: int, rng: np.random.Generator) -> np.ndarray:
    """0.8 s of a harmonic tone with slow pitch drift, syllable-like envelope and a little noise."""
    t = np.arange(int(0.8 * RATE_HZ)) / RATE_HZ
    f0 = f0_hz * rng.uniform(0.95, 1.05) * (1.0 + 0.05 * np.sin(2 * np.pi * 3.0 * t))
    phase = 2 * np.pi * np.cumsum(f0) / RATE_HZ
    x = sum(np.sin(k * phase) / k for k in range(1, harmonics + 1))
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 2 * np.pi))
    x = x / np.max(np.abs(x)) * envelope * amplitude * rng.uniform(0.85, 1.15)
    return np.clip(x + rng.normal(0.0, 0.002, t.size), -1.0, 1.0)


def _write_wav(path, x: np.ndarray) -> None:
    with wave.open(str(path), "wb") as fh:
        fh.setnchannels(1)
        fh.setsampwidth(2)
        fh.setframerate(RATE_HZ)
        fh.writeframes((x * 32767).astype("<i2").tobytes())


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    """A tiny corpus in the shared labels.csv format: 5 speakers x 4 classes x 2 clips."""
    root = tmp_path_factory.mktemp("synthetic")
    rng = np.random.default_rng(0)
    rows = []
    for speaker in SPEAKERS:
        for label, (f0_hz, amplitude, harmonics) in VOICES.items():
            for k in range(CLIPS_PER_SPEAKER_AND_CLASS):
                name = f"{speaker}_{label}_{k}.wav"
                _write_wav(root / name, _voice(f0_hz, amplitude, harmonics, rng))
                rows.append({"file": name, "corpus": "synthetic", "language": "xx",
                             "speaker": speaker, "gender": "", "emotion": label,
                             "emotion4": label, "text": "", "sample_rate": RATE_HZ,
                             "channels": 1, "duration_s": 0.8})
    with (root / "labels.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return root


@requires_opensmile
def test_peer_learns_separable_classes_and_reuses_its_cache(corpus_dir, tmp_path, monkeypatch):
    clips = labelled(read_corpus(corpus_dir))
    train, test = speaker_split(clips, 0.2, seed=0)
    assert {c.speaker for c in train}.isdisjoint({c.speaker for c in test})
    cache = tmp_path / "cache"

    scores = evaluate_peer(train, test, DEFAULT_LABELS, cache)
    assert scores.count == len(test)
    assert scores.ua >= 0.9  # chance is 0.25

    first = egemaps_features(clips, cache)
    assert first.shape == (len(clips), N_FEATURES)
    assert first.dtype == np.float32
    assert len(list(cache.glob("*.npy"))) == len(clips)

    def must_not_run(*args, **kwargs):
        raise AssertionError("cached clip was analysed again")

    monkeypatch.setattr(peer_egemaps, "_extract", must_not_run)
    monkeypatch.setattr(peer_egemaps, "load_mono_16k", must_not_run)
    np.testing.assert_array_equal(egemaps_features(clips, cache), first)


@requires_opensmile
def test_changed_audio_is_analysed_again(corpus_dir, tmp_path):
    clip = labelled(read_corpus(corpus_dir))[0]
    changed = tmp_path / clip.path.name
    changed.write_bytes(clip.path.read_bytes())
    moved = replace(clip, path=changed)
    cache = tmp_path / "cache"
    before = egemaps_features([moved], cache)

    _write_wav(changed, _voice(400.0, 0.9, 10, np.random.default_rng(1)))
    after = egemaps_features([moved], cache)
    assert len(list(cache.glob("*.npy"))) == 2
    assert not np.array_equal(before, after)


@requires_opensmile
def test_unreadable_audio_names_the_file(corpus_dir, tmp_path):
    clip = labelled(read_corpus(corpus_dir))[0]
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF but not really a wave file")
    bad = replace(clip, path=broken)
    with pytest.raises(PeerError, match="broken.wav"):
        egemaps_features([bad], tmp_path / "cache")


def test_missing_opensmile_says_what_to_install(corpus_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "opensmile", None)  # makes `import opensmile` fail
    clip = labelled(read_corpus(corpus_dir))[0]
    with pytest.raises(PeerError, match=r"pip install -e \.\[bench\]"):
        egemaps_features([clip], tmp_path / "cache")


@requires_sklearn
def test_peer_predicts_only_fitted_classes_and_refuses_predict_before_fit():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 2], 30)
    x = rng.normal(size=(60, N_FEATURES)) + 3.0 * y[:, None]
    with pytest.raises(RuntimeError, match="before fit"):
        EgemapsPeer().predict(x)
    pred = EgemapsPeer().fit(x, y).predict(x)
    assert set(pred.tolist()) <= {0, 2}
    assert np.mean(pred == y) > 0.95


@requires_sklearn
def test_one_exploding_functional_does_not_decide_the_class():
    # A *_stddevNorm functional divides by a mean that can be near zero; one huge value must not
    # outvote every other feature.
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1], 40)
    x = rng.normal(size=(80, N_FEATURES)) + 1.5 * y[:, None]
    peer = EgemapsPeer().fit(x, y)
    sample = np.full((1, N_FEATURES), 1.5)  # clearly class 1
    assert peer.predict(sample)[0] == 1
    for j in range(N_FEATURES):
        outlier = sample.copy()
        outlier[0, j] = -1e4
        assert peer.predict(outlier)[0] == 1, f"feature {j} alone flipped the class"


def test_clips_without_a_label_are_refused(corpus_dir, tmp_path):
    clips = labelled(read_corpus(corpus_dir))
    unlabelled = replace(clips[0], label=None)
    with pytest.raises(PeerError, match="no label among"):
        evaluate_peer(clips[1:], [unlabelled], DEFAULT_LABELS, tmp_path / "cache")
