"""GE2E's softmax loss with emotions in place of speakers (Wan et al., 2018, eq. 6-9).

For embedding e_i of class k_i and the class centroids c_k of the batch (means of the unit-length
embeddings), the similarity is S_ik = w * cos(e_i, c_k) + b with a learnable scale w (kept > 0,
starting at 10) and bias b (starting at -5); the loss is cross-entropy of S_i against k_i. As in
GE2E, e_i's own class centroid leaves e_i out. Classes absent from the batch are not candidates,
and a clip alone in its class (no centroid without it) does not contribute.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class CentroidSoftmaxLoss(nn.Module):
    def __init__(self, n_classes: int, init_scale: float = 10.0, init_bias: float = -5.0):
        super().__init__()
        self.n_classes = n_classes
        self.scale = nn.Parameter(torch.tensor(init_scale))
        self.bias = nn.Parameter(torch.tensor(init_bias))

    def forward(self, embeddings: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """embeddings (B, E), targets (B,) class indices -> scalar loss (0 if no clip counts)."""
        e = F.normalize(embeddings, dim=-1)
        onehot = F.one_hot(targets, self.n_classes).to(e.dtype)  # (B, K)
        counts = onehot.sum(0)  # (K,)
        sums = onehot.T @ e  # (K, E)
        centroids = sums / counts.clamp_min(1)[:, None]
        # own class: the centroid of the other members, (sum - e_i) / (n - 1)
        own_count = counts[targets] - 1
        own = (sums[targets] - e) / own_count.clamp_min(1)[:, None]
        cos = F.normalize(e, dim=-1) @ F.normalize(centroids, dim=-1).T  # (B, K)
        own_cos = F.cosine_similarity(e, own, dim=-1, eps=1e-8)
        cos = torch.where(onehot.bool(), own_cos[:, None].expand_as(cos), cos)
        logits = self.scale.clamp_min(1e-6) * cos + self.bias
        logits = logits.masked_fill(counts[None, :] == 0, float("-inf"))
        rows = own_count > 0
        if not bool(rows.any()):
            return embeddings.sum() * 0.0
        return F.cross_entropy(logits[rows], targets[rows])
