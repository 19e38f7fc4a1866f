"""Speaker-independent splits of labelled clips: no speaker on both sides.

Torch-free, so the runtime can tell which speakers a model was trained on (`eval`) the way
`train` chose them.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict

from edge_ser.corpus import Clip, CorpusError

SPLIT_SLACK = 0.15
"""How much worse than the best (size error + class-mix distance) a held-out set may be."""


def speaker_folds(clips: list[Clip], n_folds: int, seed: int) -> list[list[Clip]]:
    """Partition clips into `n_folds` groups with no speaker in two groups.

    Speakers are shuffled by `seed`, then each goes to the fold with the fewest clips so far,
    largest speakers first, which keeps folds close in size even when speakers are uneven.
    """
    by_speaker: dict[str, list[Clip]] = defaultdict(list)
    for clip in clips:
        by_speaker[clip.speaker].append(clip)
    if len(by_speaker) < n_folds:
        raise CorpusError(f"{len(by_speaker)} speakers cannot make {n_folds} speaker-independent "
                          "folds")
    order = sorted(by_speaker)
    random.Random(seed).shuffle(order)
    order.sort(key=lambda s: -len(by_speaker[s]))  # stable: equal sizes keep the shuffled order
    folds: list[list[Clip]] = [[] for _ in range(n_folds)]
    for spk in order:
        smallest = min(range(n_folds), key=lambda i: len(folds[i]))
        folds[smallest].extend(by_speaker[spk])
    return folds


def speaker_split(clips: list[Clip], test_fraction: float, seed: int,
                  candidates: int = 300) -> tuple[list[Clip], list[Clip]]:
    """Split into (train, test), per corpus, with no speaker on both sides.

    Each corpus' test side holds about `test_fraction` of its clips, with a class mix as close
    to the corpus' own as its speakers allow: `candidates` random speaker orders (seeded) are
    each filled up to the target size and scored by size error plus class-mix distance; the seed
    then picks one of the near-best distinct candidates, so different seeds hold out different
    speakers. This matters where speaker and emotion are confounded (a corpus whose biggest
    speaker speaks one emotion only would otherwise give a one-class test set).
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    rng = random.Random(seed)
    train, test = [], []
    for corpus in sorted({c.corpus for c in clips}):
        part = [c for c in clips if c.corpus == corpus]
        chosen = _best_test_speakers(part, test_fraction, rng, candidates)
        test.extend(c for c in part if c.speaker in chosen)
        train.extend(c for c in part if c.speaker not in chosen)
    return train, test


def _best_test_speakers(clips: list[Clip], test_fraction: float, rng: random.Random,
                        candidates: int) -> set[str]:
    by_speaker: dict[str, Counter] = defaultdict(Counter)
    for clip in clips:
        by_speaker[clip.speaker][clip.label] += 1
    if len(by_speaker) < 2:
        raise CorpusError(f"{clips[0].corpus}: one speaker cannot make a speaker-independent split")
    classes = sorted({c.label for c in clips}, key=str)
    overall = Counter(c.label for c in clips)
    target = test_fraction * len(clips)
    scored: dict[frozenset, float] = {}
    names = sorted(by_speaker)
    for _ in range(candidates):
        rng.shuffle(names)
        chosen, counts = [], Counter()
        for spk in names[:-1]:  # at least one speaker stays in train
            size = sum(counts.values())
            if size >= target:
                break
            if size + sum(by_speaker[spk].values()) > 1.5 * target and chosen:
                continue  # would overshoot: try a smaller speaker
            chosen.append(spk)
            counts += by_speaker[spk]
        size = sum(counts.values())
        mix = sum(abs(counts[k] / size - overall[k] / len(clips)) for k in classes)
        scored[frozenset(chosen)] = abs(size - target) / target + mix
    best_cost = min(scored.values())
    near_best = sorted((sorted(k) for k, v in scored.items() if v <= best_cost + SPLIT_SLACK))
    return set(rng.choice(near_best))
