"""The speech the export of an adapted model uses: the target's segments, unlabelled.

An adapted model (`edge-ser adapt`) is deployed on the recordings it was adapted to, so those
are what its INT8 encoder is calibrated on and what parity and the INT8 gate run over. They
carry no labels, so the gate compares INT8 with fp32 predictions (`GateConfig.min_agreement`)
instead of comparing their accuracies. With source corpora the memory bank is rebuilt from
their labelled utterances through the adapted model (as any export does from training clips);
without, the caller passes the start model's bank, the one the target was adapted toward, and
its source exemplar set, if it has one (both carried unchanged: see docs/adaptation.md).

It offers what `export.package_builder` reads of `export.data.ExportData`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FeatureItem:
    """One utterance with its log-mel already computed; `label` None when unknown."""

    path: str
    corpus: str
    label: str | None
    feats: np.ndarray
    language: str | None = None
    """The corpus' language, when known (the exemplar set records it)."""


@dataclass
class AdaptedExportData:
    labels: tuple[str, ...]
    train: list[FeatureItem]
    """Labelled source utterances for the memory bank (empty: the bank is given)."""
    heldout: list[FeatureItem]
    """The target segments: parity, calibration and the agreement gate."""
    corpora: list[dict]
    heldout_is_unseen: bool = False

    def features(self, items: list[FeatureItem], log=print
                 ) -> tuple[list[np.ndarray], list[FeatureItem]]:
        return [i.feats for i in items], list(items)

    def targets(self, items: list[FeatureItem]) -> np.ndarray | None:
        """Class indices, or None when any item is unlabelled."""
        if any(i.label is None for i in items):
            return None
        return np.array([self.labels.index(i.label) for i in items])

    def calibration_clips(self, count: int, seed: int) -> list[FeatureItem]:
        """`count` target segments (seeded), in their original order."""
        if len(self.heldout) <= count:
            return list(self.heldout)
        picks = np.random.default_rng(seed).choice(len(self.heldout), size=count, replace=False)
        return [self.heldout[i] for i in sorted(picks)]
