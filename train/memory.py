"""The external memory of NNPM: one L2-normalised slot per labelled source utterance.

    slots  (N, E)  unit vectors in the embedding space of `EmotionModel.embed`
    labels (N,)    the class of each slot's utterance

A slot starts as its utterance's embedding and follows the encoder as it trains: whenever the
utterance is in a batch, `slot <- normalise(m * slot + (1 - m) * normalise(feature))`. The
memory is a tensor with no gradient; it is read by `train.nnpm` (memory loss, pseudo
multilabels). A memory can also be fixed (updates are refused): that is the source-free case,
where the slots are the class centroids a model package ships (its memory bank) or, when the
package has one, its source exemplar set (`edge_ser.adaptation_memory`). Exemplars are source
utterances' features like a live memory's slots, so the target is labelled against their
centroids as it is against a live memory's (`labels_through_centroids`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F


@dataclass
class SourceMemory:
    """Slots (N, E) unit rows and their class indices (N,); `fixed` memories never change."""

    slots: torch.Tensor
    labels: torch.Tensor
    n_classes: int
    fixed: bool = False
    exemplars: bool = False
    """Fixed slots that are source utterances' features (an exemplar set), not centroids."""

    @classmethod
    def from_features(cls, features: torch.Tensor, labels: torch.Tensor | np.ndarray,
                      n_classes: int, fixed: bool = False) -> SourceMemory:
        """A memory whose slot i is the normalised `features[i]` (N, E) with class `labels[i]`."""
        labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        if features.ndim != 2 or len(features) != len(labels):
            raise ValueError(f"features {tuple(features.shape)} and labels {tuple(labels.shape)}"
                             " must be (N, E) and (N,)")
        if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
            raise ValueError(f"slot labels must lie in [0, {n_classes})")
        slots = F.normalize(features.detach().float(), dim=1).clone()
        return cls(slots=slots, labels=labels, n_classes=n_classes, fixed=fixed)

    @classmethod
    def from_bank(cls, bank: dict[str, np.ndarray], n_classes: int) -> SourceMemory:
        """The fixed memory of a package-format memory bank (`centroids`, `centroid_labels`):
        the source of NNPM without source audio."""
        return cls.from_features(torch.from_numpy(bank["centroids"].astype(np.float32)),
                                 bank["centroid_labels"].astype(np.int64), n_classes,
                                 fixed=True)

    @classmethod
    def from_exemplars(cls, arrays: dict[str, np.ndarray], n_classes: int) -> SourceMemory:
        """The fixed memory of a package's source exemplar set (`adaptation_memory.npz`
        arrays): one slot per dequantised exemplar, with its class."""
        from edge_ser.adaptation_memory import unit_exemplars

        memory = cls.from_features(torch.from_numpy(unit_exemplars(arrays)),
                                   arrays["exemplar_labels"].astype(np.int64), n_classes,
                                   fixed=True)
        memory.exemplars = True
        return memory

    @property
    def labels_through_centroids(self) -> bool:
        """NNPM labels the target against centroids of these slots (a live memory's or an
        exemplar set's), not against the slots themselves (a memory bank's centroids)."""
        return not self.fixed or self.exemplars

    def __len__(self) -> int:
        return len(self.slots)

    @torch.no_grad()
    def update(self, indices: torch.Tensor, features: torch.Tensor, momentum: float) -> None:
        """Move slots `indices` (B,) toward `features` (B, E) with momentum `momentum`.

        An index repeated in one batch is updated once per occurrence, in batch order."""
        if self.fixed:
            raise RuntimeError("this memory is fixed (a shipped memory bank); it cannot follow "
                               "the encoder without its source utterances")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        feats = F.normalize(features.detach().float(), dim=1)
        indices = torch.as_tensor(indices, dtype=torch.long)
        unique, inverse = torch.unique(indices, return_inverse=True)
        if len(unique) == len(indices):
            mixed = momentum * self.slots[indices] + (1.0 - momentum) * feats
            self.slots[indices] = F.normalize(mixed, dim=1)
            return
        for row, i in enumerate(indices.tolist()):  # rare: repeats from weighted sampling
            mixed = momentum * self.slots[i] + (1.0 - momentum) * feats[row]
            self.slots[i] = F.normalize(mixed, dim=0)

    def similarities(self, features: torch.Tensor) -> torch.Tensor:
        """Cosine similarity (B, N) of `features` (B, E), normalised here, to every slot.

        Differentiable in `features`; the slots carry no gradient."""
        return F.normalize(features, dim=1) @ self.slots.T

    def centroids(self, per_class: int, seed: int = 0) -> SourceMemory:
        """A fixed memory of `per_class` spherical k-means centroids of each class' slots, the
        compact memory a model package ships (`edge_ser_export.memory_bank`), made of the slots
        now."""
        from edge_ser_train.centroids import class_centroids

        centroids, owners = class_centroids(self.slots.double().numpy(), self.labels.numpy(),
                                            self.n_classes, per_class, iterations=50, seed=seed)
        return SourceMemory.from_features(torch.from_numpy(centroids).float(), owners,
                                          self.n_classes, fixed=True)

    def class_counts(self) -> torch.Tensor:
        """Slots per class (K,)."""
        return torch.bincount(self.labels, minlength=self.n_classes)

    def state(self) -> dict:
        """Plain tensors and values (a checkpoint stores them; weights_only loading reads them)."""
        return {"slots": self.slots.clone(), "labels": self.labels.clone(),
                "n_classes": self.n_classes, "fixed": self.fixed, "exemplars": self.exemplars}

    @classmethod
    def from_state(cls, state: dict) -> SourceMemory:
        return cls(slots=state["slots"].float(), labels=state["labels"].long(),
                   n_classes=int(state["n_classes"]), fixed=bool(state["fixed"]),
                   exemplars=bool(state.get("exemplars", False)))
