"""Generate call-center style recordings with ground truth, from labelled corpus clips.

Each call has two speakers on two channels (agent = channel 0, customer = channel 1) taking turns
with pauses; every turn is one real labelled clip (4-class taxonomy) of that channel's speaker,
energy-trimmed, passed through a telephone channel (300-3400 Hz, mu-law), with low coloured line
noise on both channels, written as 8 kHz mu-law stereo WAV. Beside each call a CSV holds the true
turns: start_s, end_s, channel, role, emotion, source clip.

    python tools/make_calls.py --data ../shared/data --out calls --calls 10 --turns 8

By default only clips of EMO-DB speakers 09 and 14 are used: the bundled model never trained on
them, so accuracy measured on these calls is speaker-independent. The choice of clips, roles,
pauses and noise is seeded: the same options give the same files.
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from edge_ser.audio import load_mono_16k, resample
from edge_ser.contract import DEFAULT_LABELS, SAMPLE_RATE_HZ
from edge_ser_train.augment import TELEPHONE_RATE_HZ, coloured_noise, telephone
from edge_ser_train.corpus import Clip, labelled, read_corpus

ROOT = Path(__file__).resolve().parent.parent

DEFAULT_SPEAKERS = {"emodb": ("emodb:09", "emodb:14")}
"""Speakers held out of the bundled model's training, per corpus."""
ROLES = ("agent", "customer")
PAUSE_S = (0.3, 1.5)
LEAD_S = (0.3, 0.8)
TAIL_S = 0.8
SNR_DB = (35.0, 45.0)
TURN_RMS_DBFS = (-26.0, -20.0)
TRIM_DB = -35.0
TRIM_FRAME_S = 0.02
PEAK = 0.9
GROUND_TRUTH_FIELDS = ("start_s", "end_s", "channel", "role", "emotion", "source")


@dataclass(frozen=True)
class Turn:
    start_s: float
    end_s: float
    channel: int
    role: str
    emotion: str
    source: str


def trim(x: np.ndarray, rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """`x` without the leading and trailing frames more than 35 dB below its loudest frame."""
    frame = max(1, int(TRIM_FRAME_S * rate_hz))
    n = x.size // frame
    if n == 0:
        return x
    rms = np.sqrt(np.mean(x[: n * frame].reshape(n, frame) ** 2, axis=1))
    loud = np.flatnonzero(rms >= rms.max() * 10 ** (TRIM_DB / 20))
    return x[loud[0] * frame:(loud[-1] + 1) * frame]


def make_call(by_speaker: dict[str, list[Clip]], turns: int, rng: np.random.Generator,
              data_root: Path) -> tuple[np.ndarray, list[Turn]]:
    """One call: (float32 (num_samples, 2) at 8 kHz, its turns in time order)."""
    speakers = sorted(by_speaker)
    pair = [speakers[i] for i in rng.choice(len(speakers), size=2, replace=False)]
    first = int(rng.integers(2))
    pieces: list[tuple[int, int, np.ndarray]] = []  # (channel, start sample at 16 kHz, audio)
    result: list[Turn] = []
    t = int(rng.uniform(*LEAD_S) * SAMPLE_RATE_HZ)
    for i in range(turns):
        channel = (first + i) % 2
        clips = by_speaker[pair[channel]]
        clip = clips[int(rng.integers(len(clips)))]
        x = trim(telephone(trim(load_mono_16k(clip.path))))
        x = x / (np.sqrt(np.mean(x ** 2)) + 1e-12) * 10 ** (rng.uniform(*TURN_RMS_DBFS) / 20)
        pieces.append((channel, t, x.astype(np.float32)))
        result.append(Turn(t / SAMPLE_RATE_HZ, (t + x.size) / SAMPLE_RATE_HZ, channel,
                           ROLES[channel], clip.label or "", _source(clip.path, data_root)))
        t += x.size + int(rng.uniform(*PAUSE_S) * SAMPLE_RATE_HZ)
    total = t - int(PAUSE_S[0] * SAMPLE_RATE_HZ) + int(TAIL_S * SAMPLE_RATE_HZ)
    wide = np.zeros((2, total), dtype=np.float32)
    for channel, start, x in pieces:
        wide[channel, start:start + x.size] += x
    channels = []
    for channel in range(2):
        narrow = resample(wide[channel], SAMPLE_RATE_HZ, TELEPHONE_RATE_HZ)
        speech = np.concatenate([x for c, _, x in pieces if c == channel] or [narrow])
        power = float(np.mean(speech ** 2))
        noise = coloured_noise(narrow.size, rng) * np.sqrt(power / 10 ** (rng.uniform(*SNR_DB)
                                                                            / 10))
        channels.append(narrow + noise)
    audio = np.stack(channels, axis=1)
    peak = float(np.abs(audio).max())
    if peak > PEAK:
        audio *= PEAK / peak
    return audio.astype(np.float32), result


def _source(path: Path, data_root: Path) -> str:
    try:
        return path.resolve().relative_to(data_root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def write_ground_truth(path: Path, turns: list[Turn]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(GROUND_TRUTH_FIELDS)
        for turn in turns:
            writer.writerow([f"{turn.start_s:.3f}", f"{turn.end_s:.3f}", turn.channel,
                             turn.role, turn.emotion, turn.source])


def read_ground_truth(path: Path) -> list[Turn]:
    with path.open(newline="", encoding="utf-8") as fh:
        return [Turn(float(r["start_s"]), float(r["end_s"]), int(r["channel"]), r["role"],
                     r["emotion"], r["source"]) for r in csv.DictReader(fh)]


def select_clips(data: Path, corpus: str, speakers: tuple[str, ...]) -> dict[str, list[Clip]]:
    clips = labelled(read_corpus(data / corpus), DEFAULT_LABELS)
    by_speaker = {s: sorted((c for c in clips if c.speaker == s), key=lambda c: str(c.path))
                  for s in speakers}
    empty = [s for s, found in by_speaker.items() if not found]
    if empty:
        raise SystemExit(f"make_calls: no labelled clips of {', '.join(empty)} in {corpus}")
    if len(by_speaker) < 2:
        raise SystemExit("make_calls: a call needs at least two speakers")
    return by_speaker


def generate(data: Path, out: Path, calls: int, turns: int, seed: int, corpus: str,
             speakers: tuple[str, ...]) -> list[Path]:
    """Write `calls` calls (call_NNN.wav + call_NNN.csv) to `out`; returns the WAV paths."""
    by_speaker = select_clips(data, corpus, speakers)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(random.Random(seed).getrandbits(64))
    written = []
    for i in range(calls):
        audio, call_turns = make_call(by_speaker, turns, rng, data)
        wav = out / f"call_{i:03d}.wav"
        sf.write(wav, audio, TELEPHONE_RATE_HZ, subtype="ULAW")
        write_ground_truth(wav.with_suffix(".csv"), call_turns)
        written.append(wav)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data",
                   help="folder of the corpora (each with labels.csv)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--calls", type=int, default=10)
    p.add_argument("--turns", type=int, default=8, help="turns per call")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--corpus", default="emodb", help="corpus folder under --data (default: emodb)")
    p.add_argument("--speakers", default=None,
                   help="comma-separated corpus-qualified speaker ids (default for emodb: "
                   "emodb:09,emodb:14, the speakers the bundled model never trained on)")
    args = p.parse_args(argv)
    if args.calls < 1 or args.turns < 1:
        p.error("--calls and --turns must be at least 1")
    if args.speakers:
        speakers = tuple(s.strip() for s in args.speakers.split(",") if s.strip())
    elif args.corpus in DEFAULT_SPEAKERS:
        speakers = DEFAULT_SPEAKERS[args.corpus]
    else:
        p.error(f"--speakers is required for --corpus {args.corpus}")
    written = generate(args.data, args.out, args.calls, args.turns, args.seed, args.corpus,
                       speakers)
    print(f"make_calls: wrote {len(written)} calls to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
