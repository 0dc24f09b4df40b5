"""The collapse guard: stop a run whose embeddings stopped telling faces apart, and say why it may be."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from training.mining import squared_distances

MIN_MEAN_DISTANCE = 0.05  # mean pairwise squared distance of unit rows; a healthy net sits near 1-2
MIN_DISTANCE_SPREAD = 1e-4  # standard deviation of the pairwise distances; 0 when all are equal
UNIT_TOLERANCE = 1e-3

LIKELY_CAUSES = (
    "likely causes: (1) L2 normalisation over the wrong axis - normalise each embedding over the "
    "feature axis (dim 1), never over the batch (dim 0); (2) a learning rate too high for the "
    "optimiser; (3) a margin (alpha) too large for squared distances between unit vectors (0 to 4), "
    "or a loss averaged over every triplet instead of the active ones"
)


class EmbeddingCollapse(RuntimeError):
    """The embeddings collapsed (or were never unit rows); training cannot go on usefully."""


@dataclass(frozen=True)
class Spread:
    """How far apart a batch's embeddings are."""

    mean_distance: float  # mean squared L2 distance over distinct pairs
    distance_std: float
    max_norm_error: float  # largest | ||row|| - 1 |

    def as_dict(self) -> dict[str, float]:
        """For the training log."""
        return {
            "mean_distance": self.mean_distance,
            "distance_std": self.distance_std,
            "max_norm_error": self.max_norm_error,
        }


def spread(embeddings: torch.Tensor) -> Spread:
    """Pairwise-distance statistics and row norms of a batch (no gradients)."""
    with torch.no_grad():
        rows = embeddings.detach().float()
        distances = squared_distances(rows)
        upper = torch.triu(torch.ones_like(distances, dtype=torch.bool), diagonal=1)
        pairs = distances[upper]
        norms = rows.norm(dim=1)
        return Spread(
            mean_distance=float(pairs.mean()) if pairs.numel() else float("nan"),
            distance_std=float(pairs.std()) if pairs.numel() > 1 else float("nan"),
            max_norm_error=float((norms - 1).abs().max()),
        )


def check(stats: Spread, where: str, judge_collapse: bool = True) -> None:
    """Raise EmbeddingCollapse if the rows are not finite, not unit vectors or (when judged: a fresh net
    may start bunched up) collapsed together."""
    if not (math.isfinite(stats.mean_distance) and math.isfinite(stats.max_norm_error)):
        raise EmbeddingCollapse(
            f"{where}: the embeddings are not finite (NaN or inf): the run diverged. " + LIKELY_CAUSES
        )
    if stats.max_norm_error > UNIT_TOLERANCE:
        raise EmbeddingCollapse(
            f"{where}: embeddings are not unit vectors (a row's norm is off by {stats.max_norm_error:.3g}); "
            "the model must end in L2 normalisation over the feature axis, dim 1. " + LIKELY_CAUSES
        )
    if judge_collapse and (
        stats.mean_distance < MIN_MEAN_DISTANCE or stats.distance_std < MIN_DISTANCE_SPREAD
    ):
        raise EmbeddingCollapse(
            f"{where}: the embeddings collapsed (mean pairwise squared distance {stats.mean_distance:.4f}, "
            f"spread {stats.distance_std:.2g}; a useful embedder keeps them near 1-2). " + LIKELY_CAUSES
        )
