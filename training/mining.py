"""Online triplet selection inside a batch: semi-hard (FaceNet), batch-hard and batch-all.

Distances are squared L2 between the rows, which for unit vectors run from 0 to 4. The miners see
distances without gradients and return index triples; the loss recomputes those distances with them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from training.fit_config import STRATEGIES, Strategy


@dataclass(frozen=True)
class Triplets:
    """Anchor, positive and negative row indices, one triplet per position."""

    anchors: torch.Tensor
    positives: torch.Tensor
    negatives: torch.Tensor

    def __len__(self) -> int:
        return int(self.anchors.numel())


def squared_distances(embeddings: torch.Tensor) -> torch.Tensor:
    """(N, D) rows -> (N, N) squared L2 distances, clamped at 0 against rounding."""
    norms = (embeddings * embeddings).sum(dim=1)
    gram = embeddings @ embeddings.T
    return (norms[:, None] + norms[None, :] - 2 * gram).clamp_min(0.0)


def _masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


def semi_hard(
    distances: torch.Tensor, labels: torch.Tensor, alpha: float, generator: torch.Generator | None = None
) -> Triplets:
    """FaceNet's rule: for every anchor-positive pair, one random negative with
    d(a,p) < d(a,n) < d(a,p) + alpha; where there is none, the hardest negative inside the margin
    (the nearest one, d(a,n) <= d(a,p)); pairs with no negative inside the margin give no triplet."""
    positive, negative = _masks(labels)
    a, p = torch.nonzero(positive, as_tuple=True)
    if a.numel() == 0:
        empty = torch.zeros(0, dtype=torch.long, device=labels.device)
        return Triplets(empty, empty, empty)
    d_ap = distances[a, p][:, None]
    d_an = distances[a]  # (pairs, N)
    candidates = negative[a]
    semi = candidates & (d_an > d_ap) & (d_an < d_ap + alpha)
    inside = candidates & (d_an < d_ap + alpha)
    # One random semi-hard negative per pair: the largest of uniform keys among the allowed ones.
    keys = torch.rand(d_an.shape, generator=generator, device=d_an.device)
    random_semi = torch.where(semi, keys, torch.full_like(keys, -1.0)).argmax(dim=1)
    hardest = torch.where(inside, d_an, torch.full_like(d_an, float("inf"))).argmin(dim=1)
    has_semi = semi.any(dim=1)
    chosen = torch.where(has_semi, random_semi, hardest)
    keep = has_semi | inside.any(dim=1)
    return Triplets(a[keep], p[keep], chosen[keep])


def batch_hard(distances: torch.Tensor, labels: torch.Tensor) -> Triplets:
    """For every anchor with a positive and a negative: its farthest positive and nearest negative."""
    positive, negative = _masks(labels)
    usable = positive.any(dim=1) & negative.any(dim=1)
    far_positive = torch.where(positive, distances, torch.full_like(distances, -1.0)).argmax(dim=1)
    near_negative = torch.where(negative, distances, torch.full_like(distances, float("inf"))).argmin(dim=1)
    anchors = torch.nonzero(usable, as_tuple=True)[0]
    return Triplets(anchors, far_positive[anchors], near_negative[anchors])


def batch_all(distances: torch.Tensor, labels: torch.Tensor, alpha: float) -> Triplets:
    """Every valid triplet whose loss is above zero: d(a,p) - d(a,n) + alpha > 0."""
    positive, negative = _masks(labels)
    valid = positive[:, :, None] & negative[:, None, :]
    active = valid & (distances[:, :, None] - distances[:, None, :] + alpha > 0)
    a, p, n = torch.nonzero(active, as_tuple=True)
    return Triplets(a, p, n)


def mine(
    strategy: Strategy,
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    alpha: float,
    generator: torch.Generator | None = None,
) -> Triplets:
    """Select triplets from a batch by the named strategy (distances taken without gradients)."""
    with torch.no_grad():
        distances = squared_distances(embeddings.detach())
    if strategy == "semi-hard":
        return semi_hard(distances, labels, alpha, generator)
    if strategy == "batch-hard":
        return batch_hard(distances, labels)
    if strategy == "batch-all":
        return batch_all(distances, labels, alpha)
    raise ValueError(f"unknown mining strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
