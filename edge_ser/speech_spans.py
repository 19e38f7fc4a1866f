"""The speech check over one segment, incrementally: 1 s spans every 0.5 s, each scored once.

A segment's speech (from its speech start, without the padding before it) is cut into 0.5 s
blocks; span k holds blocks k and k + 1 (feature frames [k * 50, k * 50 + 100) of the speech)
and is scored by `SpeechCheck.judge` as soon as its frames are in, so the work is spread over
the segment instead of landing on the chunk that closes it. Everything else is an average of
span scores:

- a window's verdict: the mean score of the spans inside it (a window holding no whole span,
  e.g. a window shorter than 1 s, is judged on its own frames);
- at the close, each block's score is the mean of the spans that hold it (the last block takes
  the frames left over, and the last span with it); runs of blocks on the same side of
  `min_score` are the segment's parts, a run shorter than `MIN_PART_BLOCKS` joining its
  neighbours; each part's verdict is the mean score of its blocks. A turn with hold music
  right after it, within one VAD segment, gives two parts. Speech shorter than one span is
  judged whole.

The reason of a non-speech verdict is that of its lowest-scoring span. Scores depend only on
the frames, so any chunking gives the same verdicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edge_ser.speech_check import BLOCK_FRAMES, SPAN_BLOCKS, SpeechCheck, Verdict

SPAN_FRAMES = SPAN_BLOCKS * BLOCK_FRAMES
MIN_PART_BLOCKS = 2
"""A part shorter than this many blocks (1 s) joins its neighbours."""


@dataclass
class SpanState:
    lead: int
    """Row of the segment's frames where its speech starts (span 0 starts there)."""
    scores: list[float] = field(default_factory=list)
    reasons: list[str | None] = field(default_factory=list)


def init_state(lead: int) -> SpanState:
    """Span scores of a new segment whose speech starts at row `lead` of its frames."""
    return SpanState(lead=max(0, lead))


def advance(state: SpanState, check: SpeechCheck, frames: np.ndarray) -> None:
    """Score the spans that `frames` (every row of the segment so far) now complete."""
    while True:
        first = state.lead + len(state.scores) * BLOCK_FRAMES
        if first + SPAN_FRAMES > frames.shape[0]:
            return
        score, reason = check.assess(frames[first:first + SPAN_FRAMES])
        state.scores.append(score)
        state.reasons.append(reason)


def window(state: SpanState, check: SpeechCheck, frames: np.ndarray, first: int, end: int,
           min_score: float) -> Verdict:
    """The verdict on rows [first, end) of the segment (a window)."""
    inside = [k for k in range(len(state.scores))
              if state.lead + k * BLOCK_FRAMES >= first
              and state.lead + k * BLOCK_FRAMES + SPAN_FRAMES <= end]
    if not inside:
        return check.judge(frames[first:end], min_score)
    return _mean(state.scores, state.reasons, inside, min_score)


def segment_parts(state: SpanState, check: SpeechCheck, frames: np.ndarray, end: int,
                  min_score: float) -> list[tuple[int, int, Verdict]]:
    """The parts of the closed segment's speech, rows [lead, end) of its frames, in order:
    (first row, end row, verdict)."""
    lead = min(state.lead, end)
    n = end - lead
    blocks = n // BLOCK_FRAMES
    if blocks < SPAN_BLOCKS:
        return [(lead, end, check.judge(frames[lead:end], min_score))]
    count = blocks - SPAN_BLOCKS + 1
    scores, reasons = state.scores[:count - 1], state.reasons[:count - 1]
    if len(scores) < count - 1:  # never when the frames came through `advance`
        raise RuntimeError(f"speech check: {len(scores)} spans scored, {count - 1} needed")
    last = frames[lead + (count - 1) * BLOCK_FRAMES:end]  # the last span takes the remainder
    score, reason = check.assess(last)
    scores.append(score)
    reasons.append(reason)
    holding = [list(range(max(0, b - SPAN_BLOCKS + 1), min(b + 1, count)))
               for b in range(blocks)]
    block_scores = [float(np.mean([scores[k] for k in spans])) for spans in holding]
    runs = _runs([s >= min_score for s in block_scores], blocks)
    parts = []
    for first_block, end_block in runs:
        spans = sorted({k for b in range(first_block, end_block) for k in holding[b]})
        score = float(np.mean(block_scores[first_block:end_block]))
        verdict = _verdict(score, scores, reasons, spans, min_score)
        first = lead + first_block * BLOCK_FRAMES
        parts.append((first, end if end_block == blocks else lead + end_block * BLOCK_FRAMES,
                      verdict))
    return parts


def _runs(speech: list[bool], blocks: int) -> list[tuple[int, int]]:
    """[first, end) blocks of the runs of equal flags, short runs joined to a neighbour."""
    if blocks < 2 * MIN_PART_BLOCKS:
        return [(0, blocks)]
    runs: list[list] = []  # [flag, first block, end block]
    for b, flag in enumerate(speech):
        if runs and runs[-1][0] == flag:
            runs[-1][2] = b + 1
        else:
            runs.append([flag, b, b + 1])
    merged: list[list] = []
    for run in runs:
        if merged and (run[2] - run[1] < MIN_PART_BLOCKS or merged[-1][0] == run[0]):
            merged[-1][2] = run[2]  # too short, or equal after a join: part of the previous
        elif merged and merged[-1][2] - merged[-1][1] < MIN_PART_BLOCKS:
            merged[-1] = [run[0], merged[-1][1], run[2]]  # the previous was too short
        else:
            merged.append(list(run))
    return [(run[1], run[2]) for run in merged]


def _mean(scores: list[float], reasons: list[str | None], spans: list[int],
          min_score: float) -> Verdict:
    return _verdict(float(np.mean([scores[k] for k in spans])), scores, reasons, spans,
                    min_score)


def _verdict(score: float, scores: list[float], reasons: list[str | None], spans: list[int],
             min_score: float) -> Verdict:
    if score >= min_score:
        return Verdict(speech=True, score=score, reason=None)
    lowest = min(spans, key=lambda k: scores[k])
    return Verdict(speech=False, score=score, reason=reasons[lowest])
