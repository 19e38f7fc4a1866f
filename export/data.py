"""The speech export needs: the checkpoint's training speakers and the fixed held-out split.

- training side: the clips the checkpoint trained on (its own config's speaker split; all clips
  when it trained with test_fraction 0). Calibration and the memory bank come from here.
- held-out side: the test speakers of `speaker_split(labelled clips of the checkpoint's corpora,
  gate.test_fraction, gate.seed)`. The INT8 accuracy gate and every reported accuracy use it.
  For a checkpoint trained with the same split (test_fraction 0.2, seed 0) these speakers are
  unseen; for one trained on all speakers they are not, and the report says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_ser.audio import AudioError
from edge_ser.trim import clip_log_mel
from edge_ser_export.config import GateConfig
from edge_ser_train.config import TrainConfig
from edge_ser_train.corpus import Clip, CorpusError, labelled, read_corpus, speaker_split

REPO_ROOT = Path(__file__).resolve().parent.parent


def resolve_corpus(folder: str) -> Path:
    """A corpus folder of a config: as given (relative to the working directory), else
    relative to the repository root."""
    for candidate in (Path(folder), REPO_ROOT / folder):
        if (candidate / "labels.csv").is_file():
            return candidate.resolve()
    raise CorpusError(f"corpus {folder!r} of the checkpoint's config was not found (looked in "
                      f"{Path(folder).resolve()} and {(REPO_ROOT / folder).resolve()}); the "
                      "export needs the training corpora for calibration, the memory bank and "
                      "the accuracy gate")


@dataclass
class ExportData:
    """Clips of the checkpoint's corpora, split; features computed once, on first use."""

    labels: tuple[str, ...]
    train: list[Clip]
    heldout: list[Clip]
    heldout_is_unseen: bool
    corpora: list[dict]
    _feats: dict[Path, np.ndarray] = field(default_factory=dict, repr=False)

    @classmethod
    def from_config(cls, cfg: TrainConfig, gate: GateConfig) -> ExportData:
        clips: list[Clip] = []
        corpora = []
        for folder in cfg.data.corpora:
            path = resolve_corpus(folder)
            part = labelled(read_corpus(path), cfg.data.labels)
            if not part:
                raise CorpusError(f"{path}: no clip carries one of {', '.join(cfg.data.labels)}")
            clips.extend(part)
            corpora.append({"name": part[0].corpus, "language": part[0].language,
                            "path": str(path), "clips": len(part),
                            "speakers": len({c.speaker for c in part})})
        if cfg.data.test_fraction > 0:
            train, _ = speaker_split(clips, cfg.data.test_fraction, cfg.optim.seed)
        else:
            train = clips
        train = [c for c in train if c.speaker not in cfg.data.exclude_speakers]
        _, heldout = speaker_split(clips, gate.test_fraction, gate.seed)
        trained_speakers = {c.speaker for c in train}
        unseen = not any(c.speaker in trained_speakers for c in heldout)
        return cls(labels=tuple(cfg.data.labels), train=train, heldout=heldout,
                   heldout_is_unseen=unseen, corpora=corpora)

    def features(self, clips: list[Clip], log=print) -> tuple[list[np.ndarray], list[Clip]]:
        """Whole-clip log-mel (frames, N_MELS) of `clips`; unreadable clips are reported and
        left out (the returned clip list matches the features)."""
        feats, kept = [], []
        for clip in clips:
            if clip.path not in self._feats:
                try:
                    self._feats[clip.path] = clip_log_mel(clip.path)
                except AudioError as exc:
                    log(f"skipped: {exc}")
                    continue
            feats.append(self._feats[clip.path])
            kept.append(clip)
        return feats, kept

    def targets(self, clips: list[Clip]) -> np.ndarray:
        return np.array([self.labels.index(c.label) for c in clips])

    def calibration_clips(self, count: int, seed: int) -> list[Clip]:
        """`count` training clips, the same number from each corpus where possible (seeded)."""
        rng = np.random.default_rng(seed)
        names = sorted({c.corpus for c in self.train})
        chosen = []
        for i, name in enumerate(names):
            part = [c for c in self.train if c.corpus == name]
            share = count // len(names) + (1 if i < count % len(names) else 0)
            picks = rng.choice(len(part), size=min(share, len(part)), replace=False)
            chosen.extend(part[j] for j in sorted(picks))
        return chosen
