"""Train the speech check (`edge_ser/speech_check.npz`): a logistic regression over the
descriptors of `edge_ser.speech_check`, generated non-speech against real speech.

    python tools/train_speech_check.py --data ../shared/data --out edge_ser/speech_check.npz

Speech: labelled clips of the selection corpora (EMO-DB without speakers 09 and 14, whom the
demo and the generated calls use; Urdu; TurEV), 1-4 clips of one speaker in a row with short
pauses, over a quiet noise floor, half of them through a telephone channel. Non-speech: every
kind of `tools/nonspeech.py`, 1-12 s, the same floor and channel. Each recording goes through
the runtime's VAD; the spans the stream judges (every 2 s window at its hop, and each whole
segment) give the examples, so the classifier learns from exactly what the stream sees.
Everything is seeded (`--seed`); the provenance (seed, counts, training accuracy) is stored
in the .npz beside the weights.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge_ser import features, vad  # noqa: E402
from edge_ser.audio import load_mono_16k  # noqa: E402
from edge_ser.contract import FRAMES_PER_S, SAMPLE_RATE_HZ  # noqa: E402
from edge_ser.runtime_config import RuntimeConfig  # noqa: E402
from edge_ser.speech_check import (  # noqa: E402
    BLOCK_FRAMES,
    DESCRIPTORS,
    SPAN_BLOCKS,
    describe,
)
from edge_ser_train.augment import coloured_noise, mu_law_round_trip, telephone  # noqa: E402
from edge_ser_train.corpus import labelled, read_corpus  # noqa: E402
from tools.nonspeech import KINDS, generate  # noqa: E402
from tools.protocol import load_protocol  # noqa: E402

HELD_OUT_SPEAKERS = ("emodb:09", "emodb:14")
SELECTION_CORPORA = load_protocol().selection
ENCODER_STRIDE = 2  # the bundled package's; windows are whole encoder frames


def spans(x: np.ndarray, config: RuntimeConfig, stride: int = ENCODER_STRIDE) -> list[np.ndarray]:
    """The log-mel spans a stream judges in a 16 kHz recording: each window, each 1 s span of
    `speech_check.parts`, each segment."""
    state = vad.init_state(config.vad)
    events = vad.accept(state, config.vad, x) + vad.finish(state, config.vad)
    mel = features.log_mel(x)
    window = max(1, round(config.window.window_s * FRAMES_PER_S / stride)) * stride
    hop = max(1, round(config.window.hop_s * FRAMES_PER_S / stride)) * stride
    out = []
    for opened, closed in zip(events[::2], events[1::2]):
        seg = mel[opened.start_frame:min(closed.end_frame, mel.shape[0])]
        usable = seg.shape[0] // stride * stride
        out.extend(seg[a:a + window] for a in range(0, usable - window + 1, hop))
        # the speech itself (no padding): the whole segment and its 1 s spans, as
        # speech_check.parts judges them
        speech = mel[opened.speech_start_frame:min(closed.speech_end_frame, mel.shape[0])]
        span = SPAN_BLOCKS * BLOCK_FRAMES
        out.extend(speech[a:a + span] for a in range(0, speech.shape[0] - span + 1,
                                                     BLOCK_FRAMES))
        if speech.shape[0] >= 2:
            out.append(speech)
    return out


def floor_and_channel(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Lead/tail silence over a quiet coloured noise floor, half through a telephone line."""
    lead = np.zeros(int(rng.uniform(0.3, 0.8) * SAMPLE_RATE_HZ), dtype=np.float32)
    x = np.concatenate((lead, x, lead))
    if rng.random() < 0.5:
        x = mu_law_round_trip(telephone(x))
    floor = coloured_noise(x.size, rng) * 10 ** (rng.uniform(-75, -50) / 20)
    return np.clip(x + floor, -1, 1).astype(np.float32)


def speech_examples(data: Path, recordings: int, rng: np.random.Generator):
    clips = [c for corpus in SELECTION_CORPORA for c in labelled(read_corpus(data / corpus))
             if c.speaker not in HELD_OUT_SPEAKERS]
    by_speaker: dict[str, list] = {}
    for c in clips:
        by_speaker.setdefault(c.speaker, []).append(c)
    speakers = sorted(by_speaker)
    for _ in range(recordings):
        mine = by_speaker[speakers[int(rng.integers(len(speakers)))]]
        parts = []
        for _ in range(int(rng.integers(1, 5))):
            y = load_mono_16k(mine[int(rng.integers(len(mine)))].path)
            y = y / (np.sqrt(np.mean(y ** 2)) + 1e-12) * 10 ** (rng.uniform(-32, -16) / 20)
            parts += [y, np.zeros(int(rng.uniform(0.05, 0.5) * SAMPLE_RATE_HZ))]
        yield floor_and_channel(np.concatenate(parts).astype(np.float32), rng)


EXTRA = {"noise": 3}
"""Noise varies most (four colours at any level), so it gets three times the recordings."""


def nonspeech_examples(per_kind: int, rng: np.random.Generator):
    for kind in KINDS:
        for _ in range(per_kind * EXTRA.get(kind, 1)):
            yield floor_and_channel(generate(kind, rng.uniform(1.0, 12.0), rng), rng)


def fit_logistic(z: np.ndarray, y: np.ndarray, weight: np.ndarray, l2: float = 1e-3,
                 iterations: int = 50) -> tuple[np.ndarray, float]:
    """Weighted L2-regularised logistic regression by Newton steps; returns (w, b). `l2` is per
    example, so the weights stay moderate however separable the examples are."""
    a = np.concatenate((z, np.ones((z.shape[0], 1))), axis=1)
    theta = np.zeros(a.shape[1])
    reg = l2 * z.shape[0] * np.eye(a.shape[1])
    reg[-1, -1] = 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(a @ theta, -50, 50)))
        grad = a.T @ (weight * (p - y)) + reg @ theta
        hess = (a * (weight * p * (1 - p))[:, None]).T @ a + reg
        theta -= np.linalg.solve(hess, grad)
    return theta[:-1], float(theta[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--out", type=Path, default=ROOT / "edge_ser" / "speech_check.npz")
    p.add_argument("--speech", type=int, default=600, help="speech recordings")
    p.add_argument("--per-kind", type=int, default=60, help="non-speech recordings per kind")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    config = RuntimeConfig()
    rows, labels = [], []
    for target, source in ((1, speech_examples(args.data, args.speech, rng)),
                           (0, nonspeech_examples(args.per_kind, rng))):
        for x in source:
            for span in spans(x, config):
                rows.append(describe(span))
                labels.append(target)
    d, y = np.array(rows), np.array(labels, dtype=np.float64)
    mean, scale = d.mean(axis=0), d.std(axis=0) + 1e-9
    z = (d - mean) / scale
    z = np.concatenate((z, z * z), axis=1)
    balance = np.where(y == 1, 0.5 / y.mean(), 0.5 / (1 - y.mean()))  # each class weighs half
    w, b = fit_logistic(z, y, balance)
    p_speech = 1.0 / (1.0 + np.exp(-(z @ w + b)))
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    provenance = {
        "trained_by": "tools/train_speech_check.py", "seed": args.seed, "git_commit": commit,
        "speech": {"corpora": list(SELECTION_CORPORA), "held_out_speakers":
                   list(HELD_OUT_SPEAKERS), "recordings": args.speech,
                   "spans": int(y.sum())},
        "nonspeech": {"kinds": list(KINDS), "recordings_per_kind": args.per_kind,
                      "times_as_many": EXTRA,
                      "spans": int((1 - y).sum())},
        "training_accuracy": {"speech_at_0.5": float(np.mean(p_speech[y == 1] >= 0.5)),
                              "nonspeech_at_0.5": float(np.mean(p_speech[y == 0] < 0.5))},
    }
    np.savez(args.out, descriptors=np.array(DESCRIPTORS), mean=mean, scale=scale, weights=w,
             bias=np.float64(b), provenance=np.array(json.dumps(provenance)))
    print(json.dumps(provenance, indent=2))
    for name, wi, wq, m in zip(DESCRIPTORS, w, w[len(DESCRIPTORS):], mean):
        print(f"{name:14s} weight {wi:+7.3f} squared {wq:+7.3f}  mean {m:8.3f}")
    for q in (0.01, 0.05, 0.5):
        print(f"speech score quantile {q}: speech {np.quantile(p_speech[y == 1], q):.3f}, "
              f"non-speech {np.quantile(p_speech[y == 0], 1 - q):.3f} (upper)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
