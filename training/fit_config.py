"""The settings of a training run, kept free of torch so that the command line can list them cheaply."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Strategy = Literal["semi-hard", "batch-hard", "batch-all"]
STRATEGIES: tuple[Strategy, ...] = ("semi-hard", "batch-hard", "batch-all")


@dataclass(frozen=True)
class FitConfig:
    """Every choice of a run; stored in its checkpoints so that a resume cannot change them."""

    backbone: str = "small"
    epochs: int = 10
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 5e-4
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    loss: Literal["triplet", "contrastive"] = "triplet"
    mining: Strategy = "semi-hard"
    alpha: float = 0.2  # the margin, shared by the miner and the loss
    people_per_batch: int = 16
    images_per_person: int = 4
    extra_negatives: int = 8
    seed: int = 0
    guard_warmup_steps: int = 50  # a fresh net may start bunched up; collapse is judged after this
    max_minutes: float = 0.0  # 0: no limit
