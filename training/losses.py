"""Triplet and contrastive losses on squared L2 distances, averaged over the active terms only.

Averaging over every triplet, most of which are already satisfied, shrinks the gradient towards
nothing as training goes on; averaging over the active ones keeps it meaningful.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from training.mining import Triplets, squared_distances


@dataclass(frozen=True)
class LossResult:
    """The loss to minimise and what it was made of."""

    loss: torch.Tensor
    active: int  # terms with a loss above zero
    total: int  # terms considered
    mean_positive: float  # mean d(a,p) (pairs of one person)
    mean_negative: float  # mean d(a,n) (pairs of different people)

    @property
    def active_fraction(self) -> float:
        """Share of the considered terms that contribute."""
        return self.active / self.total if self.total else 0.0


def triplet_loss(embeddings: torch.Tensor, triplets: Triplets, alpha: float) -> LossResult:
    """mean over active triplets of max(0, d(a,p) - d(a,n) + alpha); 0 (with a gradient) when none is."""
    if len(triplets) == 0:
        zero = embeddings.sum() * 0.0
        return LossResult(zero, 0, 0, float("nan"), float("nan"))
    a = embeddings[triplets.anchors]
    d_ap = ((a - embeddings[triplets.positives]) ** 2).sum(dim=1)
    d_an = ((a - embeddings[triplets.negatives]) ** 2).sum(dim=1)
    losses = torch.relu(d_ap - d_an + alpha)
    active = losses > 0
    count = int(active.sum())
    loss = losses[active].mean() if count else losses.sum() * 0.0
    return LossResult(loss, count, len(triplets), float(d_ap.detach().mean()), float(d_an.detach().mean()))


def contrastive_loss(embeddings: torch.Tensor, labels: torch.Tensor, alpha: float) -> LossResult:
    """Over every pair of rows: d for the same person, max(0, alpha - d) for different people (d squared
    L2), averaged over the pairs with a loss above zero."""
    distances = squared_distances(embeddings)
    upper = torch.triu(torch.ones_like(distances, dtype=torch.bool), diagonal=1)
    same = (labels[:, None] == labels[None, :]) & upper
    different = (labels[:, None] != labels[None, :]) & upper
    terms = torch.cat([distances[same], torch.relu(alpha - distances[different])])
    active = terms > 0
    count = int(active.sum())
    loss = terms[active].mean() if count else distances.sum() * 0.0
    mean_pos = float(distances[same].detach().mean()) if same.any() else float("nan")
    mean_neg = float(distances[different].detach().mean()) if different.any() else float("nan")
    return LossResult(loss, count, int(terms.numel()), mean_pos, mean_neg)
