"""How much non-speech gets an emotion, and how many speech turns are still found.

    python tools/score_nonspeech.py --data ../shared/data [--seed 7] [--json out.json]

Two sets, both generated with a fixed seed (`tools/nonspeech.py`: tones, DTMF, noise colours,
music-like harmonic sequences, square waves and clipping, mains hum, ringback and busy tones):

- demo: the bundled demo conversation (12 labelled turns) with a 2-8 s non-speech block spliced
  into every pause and before the first turn, the kinds taken in turn; `--demo-variants`
  recordings, each with other blocks.
- calls: the calls of `tools/make_calls.py` (EMO-DB speakers 09 and 14, 8 kHz mu-law, two
  channels) with 2-8 s blocks, through the same telephone channel, spliced into pauses on one
  channel while the other carries only its line noise.

Each recording is streamed in 100 ms chunks, with the speech check on (as configured) and off
(`speech_check.enabled: false`, the behaviour before the check). Printed: the share of non-speech
time inside a segment that got an emotion (a class of the model, `uncertain` excluded), per kind;
the turns found (a segment with an emotion overlapping the turn on its channel) and the agreement
with their labels; and how well the memory-bank similarity and the speech score separate speech
segments from non-speech ones (ROC AUC, quantiles; a segment is speech when it overlaps turns
more than blocks). Last, the share of speech clips of the confirmation corpora (nEMO, ASED: not
used to train the check), wideband and through the telephone channel, that the check rejects.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge_ser.audio import load_mono_16k, resample  # noqa: E402
from edge_ser.console import read_references  # noqa: E402
from edge_ser.contract import SAMPLE_RATE_HZ  # noqa: E402
from edge_ser.events import SegmentResult  # noqa: E402
from edge_ser.recognizer import Recognizer  # noqa: E402
from edge_ser.runtime_config import RuntimeConfig, SpeechCheckConfig  # noqa: E402
from edge_ser_train.augment import telephone  # noqa: E402
from tools.make_calls import DEFAULT_SPEAKERS, make_call, select_clips  # noqa: E402
from tools.nonspeech import KINDS, generate  # noqa: E402
from tools.protocol import load_protocol  # noqa: E402

DEMO = ROOT / "edge_ser" / "demo" / "conversation.flac"
DEMO_LABELS = ROOT / "edge_ser" / "demo" / "conversation.labels.csv"
BLOCK_S = (2.0, 8.0)
GAP_S = 0.1  # the pause audio looped under a block (pauses are >= 0.3 s: no speech in it)
CHUNK_S = 0.1
CONFIRMATION_CORPORA = load_protocol().confirmation


@dataclasses.dataclass
class Recording:
    audio: np.ndarray  # (n, channels) float32
    rate_hz: int
    turns: list[tuple[float, float, int, str]]  # (start_s, end_s, channel, emotion)
    blocks: list[tuple[float, float, int, str]]  # (start_s, end_s, channel, kind)


def splice(audio: np.ndarray, rate_hz: int, turns, cuts: list[tuple[float, np.ndarray, int]]
           ) -> Recording:
    """Insert blocks (at time cut_s, on one channel; the others get their own pause audio
    looped) into a (n, channels) recording, shifting the turns after each cut."""
    pieces, blocks, new_turns = [], [], []
    shift, pos = 0.0, 0
    cuts = sorted(cuts, key=lambda c: c[0])
    for cut_s, block, channel in cuts:
        at = int(cut_s * rate_hz)
        pieces.append(audio[pos:at])
        # each channel's pause audio [at - gap, at) repeated under the block keeps its floor
        gap = audio[max(0, at - int(GAP_S * rate_hz)):at]
        reps = int(np.ceil(block.size / max(1, gap.shape[0])))
        bed = np.tile(gap, (reps, 1))[:block.size].copy()
        bed[:, channel] += block
        pieces.append(bed)
        start_s = cut_s + shift
        blocks.append((start_s, start_s + block.size / rate_hz, channel, ""))
        shift += block.size / rate_hz
        pos = at
    pieces.append(audio[pos:])
    for start_s, end_s, channel, emotion in turns:
        moved = sum(b.size for c, b, _ in cuts if c <= start_s) / rate_hz
        new_turns.append((start_s + moved, end_s + moved, channel, emotion))
    return Recording(np.clip(np.concatenate(pieces), -1, 1).astype(np.float32), rate_hz,
                     new_turns, blocks)


def _blocks(rng: np.random.Generator, count: int, first_kind: int, narrow: bool
            ) -> list[tuple[str, np.ndarray]]:
    kinds = list(KINDS)
    out = []
    for i in range(count):
        kind = kinds[(first_kind + i) % len(kinds)]
        x = generate(kind, rng.uniform(*BLOCK_S), rng)
        if narrow:  # through the calls' telephone channel, at 8 kHz
            x = resample(telephone(x), SAMPLE_RATE_HZ, 8_000)
        out.append((kind, x.astype(np.float32)))
    return out


def demo_recordings(variants: int, rng: np.random.Generator) -> list[Recording]:
    audio = load_mono_16k(DEMO)[:, None]
    refs = read_references(DEMO_LABELS)
    turns = [(r.start_s, r.end_s, 0, r.emotion) for r in refs]
    pauses = [refs[0].start_s / 2] + [(a.end_s + b.start_s) / 2 for a, b in zip(refs, refs[1:])]
    out = []
    for v in range(variants):
        blocks = _blocks(rng, len(pauses), v, narrow=False)
        rec = splice(audio, SAMPLE_RATE_HZ, turns, [(p, x, 0) for p, (_, x) in zip(pauses,
                                                                                 blocks)])
        rec.blocks = [(s, e, c, kind) for (s, e, c, _), (kind, _) in zip(rec.blocks, blocks)]
        out.append(rec)
    return out


def call_recordings(data: Path, calls: int, turns: int, rng: np.random.Generator
                    ) -> list[Recording]:
    by_speaker = select_clips(data, "emodb", DEFAULT_SPEAKERS["emodb"])
    out = []
    for i in range(calls):
        audio, call_turns = make_call(by_speaker, turns, rng, data)
        truth = [(t.start_s, t.end_s, t.channel, t.emotion) for t in call_turns]
        pauses = [(a.end_s + b.start_s) / 2 for a, b in zip(call_turns, call_turns[1:])]
        chosen = sorted(rng.choice(len(pauses), size=min(3, len(pauses)), replace=False))
        blocks = _blocks(rng, len(chosen), i * 3, narrow=True)
        cuts = [(pauses[j], x, int(rng.integers(2))) for j, (_, x) in zip(chosen, blocks)]
        rec = splice(audio, 8_000, truth, cuts)
        rec.blocks = [(s, e, c, kind) for (s, e, c, _), (kind, _) in zip(rec.blocks, blocks)]
        out.append(rec)
    return out


def stream_segments(recognizer: Recognizer, rec: Recording) -> list[SegmentResult]:
    chunk = int(CHUNK_S * rec.rate_hz)
    results = []
    for channel in range(rec.audio.shape[1]):
        stream = recognizer.create_stream(rec.rate_hz, channel=channel)
        events = []
        for pos in range(0, rec.audio.shape[0], chunk):
            events += stream.accept_waveform(rec.audio[pos:pos + chunk, channel])
        events += stream.input_finished()
        results += [e for e in events if isinstance(e, SegmentResult)]
    return results


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def score(recognizer: Recognizer, recordings: list[Recording]) -> dict:
    labels = set(recognizer.labels)
    per_kind: dict[str, list[float]] = {k: [0.0, 0.0] for k in KINDS}  # [tagged, total]
    found = agree = total_turns = 0
    speech_sims, other_sims, speech_scores, other_scores = [], [], [], []
    for rec in recordings:
        segments = stream_segments(recognizer, rec)
        for start, end, channel, kind in rec.blocks:
            mine = [s for s in segments if s.channel == channel]
            per_kind[kind][1] += end - start
            per_kind[kind][0] += sum(_overlap(start, end, s.start_s, s.end_s) for s in mine
                                     if s.label in labels)
        for start, end, channel, emotion in rec.turns:
            total_turns += 1
            best = max(((_overlap(start, end, s.start_s, s.end_s), s) for s in segments
                        if s.channel == channel and s.label is not None),
                       key=lambda p: p[0], default=(0.0, None))
            if best[0] > 0:
                found += 1
                agree += best[1].label == emotion
        for s in segments:  # a segment is speech when it overlaps a turn more than a block
            on_turns = sum(_overlap(a, b, s.start_s, s.end_s) for a, b, c, _ in rec.turns
                           if c == s.channel)
            on_blocks = sum(_overlap(a, b, s.start_s, s.end_s) for a, b, c, _ in rec.blocks
                            if c == s.channel)
            if on_turns == on_blocks == 0:
                continue
            (speech_sims if on_turns > on_blocks else other_sims).append(s.similarity)
            (speech_scores if on_turns > on_blocks else other_scores).append(s.speech_score)
    tagged = sum(v[0] for v in per_kind.values())
    nonspeech_s = sum(v[1] for v in per_kind.values())
    return {
        "nonspeech_s": round(nonspeech_s, 1),
        "tagged_share": tagged / nonspeech_s,
        "tagged_share_by_kind": {k: (v[0] / v[1] if v[1] else None)
                                 for k, v in per_kind.items()},
        "turns": total_turns, "found": found, "agree": agree,
        "similarity": _separation(speech_sims, other_sims),
        "speech_score": _separation(speech_scores, other_scores),
    }


def held_out_speech(recognizer: Recognizer, data: Path, per_corpus: int,
                    rng: np.random.Generator) -> dict[str, list[int]]:
    """Clips of the confirmation corpora (never used to train the check), alone and through
    the telephone channel: [clips with a segment, clips whose every segment is non-speech]."""
    from edge_ser_train.corpus import labelled, read_corpus

    out = {}
    for corpus in CONFIRMATION_CORPORA:
        clips = labelled(read_corpus(data / corpus))
        picked = [clips[i] for i in rng.choice(len(clips), size=per_corpus, replace=False)]
        for channel_name in ("wideband", "telephone"):
            counts = [0, 0]
            for clip in picked:
                x = load_mono_16k(clip.path)
                if channel_name == "telephone":
                    x = telephone(x)
                pad = np.zeros(int(0.5 * SAMPLE_RATE_HZ), dtype=np.float32)
                rec = Recording(np.concatenate((pad, x, pad))[:, None], SAMPLE_RATE_HZ, [], [])
                segments = stream_segments(recognizer, rec)
                if segments:
                    counts[0] += 1
                    counts[1] += all(not s.speech for s in segments)
            out[f"{corpus} {channel_name}"] = counts
    return out


def _separation(speech: list[float], other: list[float]) -> dict:
    """ROC AUC (the chance that a speech segment scores above a non-speech one) and quantiles."""
    s, o = np.array(speech), np.array(other)
    if not s.size or not o.size:
        return {"speech_segments": int(s.size), "nonspeech_segments": int(o.size)}
    auc = float(np.mean(s[:, None] > o[None, :]) + 0.5 * np.mean(s[:, None] == o[None, :]))
    q = (0.05, 0.5, 0.95)
    return {"auc": auc, "speech_segments": int(s.size), "nonspeech_segments": int(o.size),
            "speech_q05_q50_q95": [round(float(v), 3) for v in np.quantile(s, q)],
            "nonspeech_q05_q50_q95": [round(float(v), 3) for v in np.quantile(o, q)]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--seed", type=int, default=7, help="fixes every generated signal and call")
    p.add_argument("--demo-variants", type=int, default=4)
    p.add_argument("--calls", type=int, default=10)
    p.add_argument("--turns", type=int, default=8)
    p.add_argument("--min-score", type=float, default=SpeechCheckConfig().min_score,
                   help="speech_check.min_score (default: the configured one)")
    p.add_argument("--held-out", type=int, default=200,
                   help="clips per confirmation corpus (nEMO, ASED) for the speech pass rate")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    sets = {"demo": demo_recordings(args.demo_variants, rng),
            "calls": call_recordings(args.data, args.calls, args.turns, rng)}
    results = {}
    for check in (False, True):
        config = RuntimeConfig(speech_check=SpeechCheckConfig(enabled=check,
                                                              min_score=args.min_score))
        with Recognizer.from_options(config=config) as recognizer:
            for name, recordings in sets.items():
                results[f"{name}, check {'on' if check else 'off'}"] = score(recognizer,
                                                                            recordings)
            if check and args.held_out:
                results["held-out speech"] = held_out_speech(recognizer, args.data,
                                                             args.held_out, rng)
    print("| set | non-speech s | non-speech tagged with an emotion | turns found | agree |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        if name == "held-out speech":
            continue
        print(f"| {name} | {r['nonspeech_s']:.0f} | {100 * r['tagged_share']:.1f}% | "
              f"{r['found']}/{r['turns']} | {r['agree']}/{r['found']} |")
    print("\nnon-speech tagged, by kind (check off -> on):")
    for kind in KINDS:
        parts = []
        for name in sets:
            off = results[f"{name}, check off"]["tagged_share_by_kind"][kind]
            on = results[f"{name}, check on"]["tagged_share_by_kind"][kind]
            if off is not None:
                parts.append(f"{name} {100 * off:.0f}% -> {100 * on:.1f}%")
        print(f"  {kind:9s} {', '.join(parts)}")
    print("\nseparation of speech from non-speech segments (the same segments either way):")
    for name in sets:
        for key, check in (("similarity", "off"), ("speech_score", "on")):
            sep = results[f"{name}, check {check}"][key]
            print(f"  {name:5s} {key:12s} AUC {sep.get('auc', float('nan')):.3f}  speech "
                  f"q05/50/95 {sep.get('speech_q05_q50_q95')}  non-speech "
                  f"{sep.get('nonspeech_q05_q50_q95')}  ({sep['speech_segments']} / "
                  f"{sep['nonspeech_segments']} segments)")
    if "held-out speech" in results:
        print("\nheld-out speech clips (confirmation corpora) whose every segment the check "
              "calls non-speech:")
        for name, (clips, rejected) in results["held-out speech"].items():
            print(f"  {name:18s} {rejected}/{clips} ({100 * rejected / max(clips, 1):.1f}%)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
