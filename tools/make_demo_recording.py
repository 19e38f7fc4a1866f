"""Assemble the bundled demo recording: a short emotional "conversation" from EMO-DB clips.

Two EMO-DB speakers (09 and 14, both held out of the default model's training split) take turns
reading sentences in a fixed sequence of emotions, with pauses between the turns. The clips are
resampled to 16 kHz and written as 16-bit FLAC together with a labels CSV holding the true speech
times (energy-trimmed, in seconds from the start of the recording) and each clip's emotion.

    python tools/make_demo_recording.py --emodb ../shared/data/emodb --out edge_ser/demo

The choice of clips and pauses is seeded, so the output is the same on every run.
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from edge_ser.audio import load_mono_16k
from edge_ser.contract import SAMPLE_RATE_HZ

ROOT = Path(__file__).resolve().parent.parent

SPEAKERS = ("09", "14")
"""EMO-DB speakers held out of the default model's training split (train config, seed 0)."""
EMOTIONS = ("neutral", "neutral", "happy", "happy", "angry", "angry", "sad", "sad",
            "neutral", "angry", "happy", "sad")
"""The turn sequence: runs of one emotion, then changes, so emotion-change events show."""
SEED = 2005
LEAD_S = 0.6
TAIL_S = 1.2
PAUSE_S = (0.8, 1.4)
FADE_MS = 10
TRIM_DB = -35.0
"""Speech extent of a clip: from the first to the last 10 ms frame within TRIM_DB of its peak."""


def speech_extent(samples: np.ndarray) -> tuple[int, int]:
    """[first, last) sample of the frames whose RMS is within TRIM_DB of the clip's loudest."""
    hop = SAMPLE_RATE_HZ // 100
    n_frames = samples.size // hop
    rms = np.sqrt(np.mean(samples[: n_frames * hop].reshape(n_frames, hop) ** 2, axis=1))
    loud = np.flatnonzero(rms >= rms.max() * 10 ** (TRIM_DB / 20))
    return int(loud[0] * hop), int((loud[-1] + 1) * hop)


def fade(samples: np.ndarray) -> np.ndarray:
    """Short fade in and out, so clips cut mid-word do not click."""
    n = SAMPLE_RATE_HZ * FADE_MS // 1000
    ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
    out = samples.copy()
    out[:n] *= ramp
    out[-n:] *= ramp[::-1]
    return out


def choose_clips(emodb: Path) -> list[dict[str, str]]:
    """One clip per turn: speakers alternate, no clip twice, seeded choice among the matches."""
    with open(emodb / "labels.csv", newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["speaker"] in SPEAKERS and r["emotion4"]]
    rng = random.Random(SEED)
    used: set[str] = set()
    chosen = []
    for turn, emotion in enumerate(EMOTIONS):
        speaker = SPEAKERS[turn % len(SPEAKERS)]
        pool = sorted(r["file"] for r in rows if r["speaker"] == speaker
                      and r["emotion4"] == emotion and r["file"] not in used)
        if not pool:
            raise SystemExit(f"no unused {emotion} clip of speaker {speaker} in {emodb}")
        name = rng.choice(pool)
        used.add(name)
        chosen.append(next(r for r in rows if r["file"] == name))
    return chosen


def build(emodb: Path) -> tuple[np.ndarray, list[dict[str, object]]]:
    """The recording (float32 (n,) at 16 kHz) and its label rows."""
    rng = random.Random(SEED + 1)
    pieces = [np.zeros(round(LEAD_S * SAMPLE_RATE_HZ), dtype=np.float32)]
    offset = pieces[0].size
    labels = []
    clips = choose_clips(emodb)
    for i, row in enumerate(clips):
        clip = fade(load_mono_16k(emodb / row["file"]))
        first, last = speech_extent(clip)
        labels.append({"start_s": round((offset + first) / SAMPLE_RATE_HZ, 3),
                       "end_s": round((offset + last) / SAMPLE_RATE_HZ, 3),
                       "emotion": row["emotion4"], "speaker": f"emodb:{row['speaker']}",
                       "source": row["file"]})
        pieces.append(clip)
        offset += clip.size
        gap_s = TAIL_S if i == len(clips) - 1 else rng.uniform(*PAUSE_S)
        pieces.append(np.zeros(round(gap_s * SAMPLE_RATE_HZ), dtype=np.float32))
        offset += pieces[-1].size
    return np.concatenate(pieces), labels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emodb", type=Path, default=ROOT.parent / "shared" / "data" / "emodb",
                        help="the EMO-DB folder with labels.csv")
    parser.add_argument("--out", type=Path, default=ROOT / "edge_ser" / "demo")
    args = parser.parse_args(argv)
    if not (args.emodb / "labels.csv").is_file():
        print(f"make_demo_recording: error: {args.emodb}/labels.csv not found; pass --emodb",
              file=sys.stderr)
        return 2
    samples, labels = build(args.emodb)
    args.out.mkdir(parents=True, exist_ok=True)
    audio_path = args.out / "conversation.flac"
    sf.write(audio_path, samples, SAMPLE_RATE_HZ, subtype="PCM_16", format="FLAC")
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(labels[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(labels)
    (args.out / "conversation.labels.csv").write_text(text.getvalue(), encoding="utf-8")
    print(f"{audio_path}: {samples.size / SAMPLE_RATE_HZ:.1f} s, {len(labels)} turns, "
          f"{audio_path.stat().st_size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
