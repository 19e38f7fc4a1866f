"""The per-recording summary: how much of each role's speech carries each emotion, when a
speaker turns negative, the longest negative stretch, and the trend over the call.

Times are seconds from the start of the recording; shares are fractions of a role's speech
time (the summed length of its speech segments). Segments the speech check found not to be
speech (tones, hold music, line noise) count only in `non_speech_s`.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_ser.events import UNCERTAIN, EmotionChange, SegmentResult

SUMMARY_FORMAT_VERSION = 2
"""2: `speech_s` and the shares leave non-speech segments out; `non_speech_s` added."""
NEGATIVE_LABELS = ("angry", "sad")
"""Emotions whose onset, duration and trend the summary reports."""
TREND_PARTS = 3
"""The call is cut into this many equal parts for the trend."""
TREND_MIN_CHANGE = 0.1
"""A negative share that moves by less than this from the first part to the last is 'steady'."""


@dataclass(frozen=True)
class RoleSegment:
    """A segment result with the role of the channel it came from."""

    role: str
    result: SegmentResult


@dataclass(frozen=True)
class RoleChange:
    """An emotion change with the role of the channel it came from."""

    role: str
    change: EmotionChange


def summarize(segments: list[RoleSegment], changes: list[RoleChange], roles: list[str],
              labels: tuple[str, ...], duration_s: float) -> dict[str, object]:
    """The summary fields of a recording (a JSON-ready mapping)."""
    names = [*labels, UNCERTAIN]
    per_role = {}
    other = [s for s in segments if not s.result.speech]
    segments = [s for s in segments if s.result.speech]
    for role in roles:
        mine = [s.result for s in segments if s.role == role]
        speech_s = sum(_length(r) for r in mine)
        per_role[role] = {
            "segments": len(mine),
            "speech_s": round(speech_s, 3),
            "non_speech_s": round(sum(_length(s.result) for s in other if s.role == role), 3),
            "share": {n: _share(sum(_length(r) for r in mine if r.label == n), speech_s)
                      for n in names},
            "negative_share": _share(sum(_length(r) for r in mine if _negative(r.label)),
                                     speech_s),
            "longest_negative": _longest_negative(mine, role),
            "trend": _trend(mine, duration_s),
        }
    stretches = [p["longest_negative"] for p in per_role.values() if p["longest_negative"]]
    longest = max(stretches, key=lambda s: s["duration_s"], default=None)
    turns = [{"time_s": round(c.change.start_s, 3), "role": c.role,
              "channel": c.change.channel, "from": c.change.previous, "to": c.change.label,
              "confidence": round(c.change.confidence, 4)}
             for c in changes if _negative(c.change.label)]
    everyone = [s.result for s in segments]
    return {
        "speech_s": round(sum(_length(r) for r in everyone), 3),
        "non_speech_s": round(sum(_length(s.result) for s in other), 3),
        "per_role": per_role,
        "negative_turns": sorted(turns, key=lambda t: (t["time_s"], t["channel"])),
        "longest_negative": longest,
        "trend": _trend(everyone, duration_s),
    }


def _length(result: SegmentResult) -> float:
    return max(0.0, result.end_s - result.start_s)


def _negative(label: str | None) -> bool:
    return label in NEGATIVE_LABELS


def _share(part_s: float, total_s: float) -> float:
    return round(part_s / total_s, 4) if total_s > 0 else 0.0


def _longest_negative(results: list[SegmentResult], role: str) -> dict[str, object] | None:
    """The longest run of consecutive negative segments of one role (pauses between them do
    not break a run; a segment with another label does)."""
    best = None
    start = None
    for r in sorted(results, key=lambda r: r.start_s):
        if _negative(r.label):
            start = r.start_s if start is None else start
            if best is None or r.end_s - start > best[1] - best[0]:
                best = (start, r.end_s)
        else:
            start = None
    if best is None:
        return None
    return {"role": role, "start_s": round(best[0], 3), "end_s": round(best[1], 3),
            "duration_s": round(best[1] - best[0], 3)}


def _trend(results: list[SegmentResult], duration_s: float) -> dict[str, object]:
    """Negative share of speech in each of TREND_PARTS equal parts of the call, and whether it
    rises, falls or stays steady from the first part with speech to the last."""
    edges = [duration_s * i / TREND_PARTS for i in range(TREND_PARTS + 1)]
    shares: list[float | None] = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        speech = negative = 0.0
        for r in results:
            overlap = max(0.0, min(r.end_s, hi) - max(r.start_s, lo))
            speech += overlap
            negative += overlap if _negative(r.label) else 0.0
        shares.append(round(negative / speech, 4) if speech > 0 else None)
    known = [s for s in shares if s is not None]
    if len(known) < 2:
        direction = "unknown"
    elif known[-1] - known[0] >= TREND_MIN_CHANGE:
        direction = "rising"
    elif known[0] - known[-1] >= TREND_MIN_CHANGE:
        direction = "falling"
    else:
        direction = "steady"
    return {"negative_share_by_part": shares, "direction": direction}
