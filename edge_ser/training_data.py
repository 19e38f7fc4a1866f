"""Which clips a model was trained on: its training corpora and speakers, derived from the
training config its package (or checkpoint) records, the way `train` chose them.

    seen = TrainingData.from_manifest(package.manifest)
    seen.reason(clip)   # None for a clip the model never trained on, else why it did

`train` reads the configured corpora, drops `data.exclude_speakers` and, when
`data.test_fraction` > 0, holds out speakers with `corpus.speaker_split` (seed `optim.seed`);
this module repeats those steps on the same corpora (what `edge_ser_train.run.load_clips` and
`split` do, without torch), so the speakers it reports are the ones trained on.
An adapted package also trained, without labels, on its adaptation target's audio.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from edge_ser.corpus import Clip, CorpusError, labelled, read_corpus
from edge_ser.speaker_split import speaker_split

REPO_ROOT = Path(__file__).resolve().parent.parent
"""Relative corpus paths of a training config are taken from here (where `train` runs)."""


@dataclass(frozen=True)
class TrainingData:
    """What a model was trained on, as far as its records tell."""

    corpora: frozenset[str]
    """Corpus names (the `corpus` column of labels.csv) of the training data."""
    speakers: frozenset[str] | None
    """Corpus-qualified speakers trained on; None when they cannot be derived (`note` says
    why): then every clip of a training corpus counts as seen."""
    adaptation_folders: tuple[Path, ...] = ()
    """Folders whose recordings adapted the model (unlabelled)."""
    note: str = ""

    @classmethod
    def from_manifest(cls, manifest: dict, extra_roots: Iterable[Path] = ()) -> TrainingData:
        """From a package manifest: `provenance.train_config` and `adaptation.target`."""
        provenance = manifest.get("provenance") or {}
        target = ((manifest.get("adaptation") or {}).get("target") or {}).get("folder")
        adapted = (Path(target).resolve(),) if target else ()
        known = {Path(str(c.get("path", ""))).name: Path(str(c["path"]))
                 for c in provenance.get("corpora", []) if isinstance(c, dict) and c.get("path")}
        train_config = provenance.get("train_config")
        if not isinstance(train_config, dict):
            names = frozenset(str(c.get("name")) for c in provenance.get("corpora", [])
                              if isinstance(c, dict) and c.get("name"))
            return cls(names, None, adapted, "the manifest records no training config")
        data = cls.from_train_config(train_config, [*extra_roots, *known.values()])
        return cls(data.corpora, data.speakers, adapted, data.note)

    @classmethod
    def from_train_config(cls, config: dict, corpus_paths: Iterable[Path] = ()) -> TrainingData:
        """From a training config (as a mapping); `corpus_paths` are other places to look for
        corpora the config names by a path that does not exist here."""
        data = config.get("data") or {}
        elsewhere = {Path(p).name: Path(p) for p in corpus_paths}
        folders, missing = [], []
        for entry in data.get("corpora", []):
            folder = _locate(Path(str(entry)), elsewhere)
            if folder is None:
                missing.append(str(entry))
            else:
                folders.append(folder)
        if missing:
            names = frozenset(Path(p).name for p in data.get("corpora", []))
            return cls(names, None, note=f"training corpus {missing[0]} is not here, so its "
                       "training speakers cannot be derived")
        try:
            train = training_clips(folders, tuple(data.get("labels", ())),
                                   tuple(data.get("exclude_speakers", ())),
                                   float(data.get("test_fraction", 0.0)),
                                   int((config.get("optim") or {}).get("seed", 0)))
        except (CorpusError, ValueError) as exc:
            names = frozenset(f.name for f in folders)
            return cls(names, None, note=f"the training speakers cannot be derived ({exc})")
        fraction = float(data.get("test_fraction", 0.0))
        how = ("every speaker of the training corpora" if fraction == 0.0 else
               f"the speakers left after holding out {fraction:g} per corpus")
        excluded = data.get("exclude_speakers") or ()
        if excluded:
            how += f" less {', '.join(excluded)}"
        return cls(frozenset(c.corpus for c in train), frozenset(c.speaker for c in train),
                   note=f"training speakers: {how} (from the recorded training config)")

    def reason(self, clip: Clip) -> str | None:
        """Why `clip` is not held-out data for this model, or None when it is."""
        path = Path(clip.path).resolve()
        for folder in self.adaptation_folders:
            if folder == path.parent or folder in path.parents:
                return "adaptation target"
        if self.speakers is not None:
            return "training speaker" if clip.speaker in self.speakers else None
        return "training corpus" if clip.corpus in self.corpora else None

    def overlap(self, clips: list[Clip]) -> dict:
        """How many of `clips` the model was trained on, and why."""
        reasons: dict[str, int] = {}
        for clip in clips:
            reason = self.reason(clip)
            if reason is not None:
                reasons[reason] = reasons.get(reason, 0) + 1
        return {"clips": len(clips), "seen_in_training": sum(reasons.values()), "why": reasons,
                "training_corpora": sorted(self.corpora), "how_known": self.note}


def training_clips(folders: list[Path], labels: tuple[str, ...], exclude: tuple[str, ...],
                   test_fraction: float, seed: int) -> list[Clip]:
    """The clips `train` trains on (`run.load_clips`, then `run.split`'s training side)."""
    clips: list[Clip] = []
    for folder in folders:
        clips.extend(labelled(read_corpus(folder), labels))
    clips = [c for c in clips if c.speaker not in exclude]
    if test_fraction == 0.0:
        return clips
    return speaker_split(clips, test_fraction, seed)[0]


def _locate(path: Path, elsewhere: dict[str, Path]) -> Path | None:
    candidates = [path] if path.is_absolute() else [REPO_ROOT / path, Path.cwd() / path]
    if path.name in elsewhere:
        candidates.append(elsewhere[path.name])
    for candidate in candidates:
        if (candidate / "labels.csv").is_file():
            return candidate
    return None
