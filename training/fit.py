"""`faceverify train fit`: triplet (or contrastive) training with online mining, logged, checkpointed,
resumable exactly, evaluated on held-out pairs, and stopped by the collapse guard."""

from __future__ import annotations

import csv
import dataclasses
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from training import guard
from training.backbones import BACKBONES, build_backbone
from training.data import ChipSet, PKSampler
from training.evaluate import accuracy_at, auc, best_threshold, plot_roc, tenfold_accuracy
from training.fit_config import FitConfig
from training.lfw import Pair, pair_people, read_pairs
from training.losses import LossResult, contrastive_loss, triplet_loss
from training.mining import mine
from training.prepare import chips_file, prepare

LOG_FILE = "log.csv"
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
ROC_PLOT = "roc.png"  # of the latest held-out evaluation


@dataclass
class HeldOut:
    """Chips of held-out people and the pairs to score between them."""

    chips: ChipSet
    left: np.ndarray
    right: np.ndarray
    same: np.ndarray
    folds: np.ndarray
    dropped_pairs: int


def held_out(chips: ChipSet, pairs: list[Pair]) -> HeldOut:
    """Match pairs (image paths) to prepared chips; pairs with an image without a chip are dropped."""
    row_of = {source: i for i, source in enumerate(chips.sources)}
    kept = [
        (row_of[k1], row_of[k2], p.same, p.fold)
        for p in pairs
        if (k1 := f"{p.left.parent.name}/{p.left.name}") in row_of
        and (k2 := f"{p.right.parent.name}/{p.right.name}") in row_of
    ]
    if not kept:
        raise ValueError("none of the pairs' images is among the prepared chips")
    left, right, same, folds = (np.array(column) for column in zip(*kept, strict=True))
    return HeldOut(chips, left, right, same.astype(bool), folds, len(pairs) - len(kept))


def load_held_out(pairs_file: Path, images: Path, folder: Path, size: int, models_dir: Path) -> HeldOut:
    """The held-out pairs with their chips from `folder`, cut there first (by `train prepare`'s code,
    for just the pairs' people) when the folder has none of this size."""
    if not (folder / chips_file(size)).exists():
        from app.face.pipeline import FacePipeline

        people = set(pair_people(pairs_file))
        prepare(FacePipeline.from_models(models_dir), images, folder, [size], people)
    return held_out(ChipSet.load(folder, size), read_pairs(pairs_file, images))


def embed(model: nn.Module, chips: np.ndarray, batch: int = 256) -> torch.Tensor:
    """Embeddings of uint8 chips in eval mode, without gradients."""
    model.eval()
    with torch.no_grad():
        parts = [
            model(torch.from_numpy(np.ascontiguousarray(chips[i : i + batch])))
            for i in range(0, len(chips), batch)
        ]
    return torch.cat(parts)


def held_out_similarities(model: nn.Module, data: HeldOut, judge_collapse: bool = True) -> np.ndarray:
    """Cosine similarity of every held-out pair, each face embedded as the service does: the chip and
    its mirror image averaged (the guard checks the plain embeddings first)."""
    vectors = embed(model, data.chips.chips)
    guard.check(guard.spread(vectors), "held-out embeddings", judge_collapse)
    mirrored = embed(model, np.ascontiguousarray(data.chips.chips[:, :, ::-1]))
    averaged = F.normalize(vectors + mirrored, dim=1)
    return (averaged[data.left] * averaged[data.right]).sum(dim=1).numpy()  # type: ignore[no-any-return]


def evaluate_held_out(
    model: nn.Module, data: HeldOut, roc: Path | None = None, judge_collapse: bool = True
) -> dict[str, float]:
    """The evaluator's figures (AUC, 10-fold accuracy, best threshold) on the held-out pairs; with
    `roc`, the evaluator's ROC plot of them too."""
    sims = held_out_similarities(model, data, judge_collapse)
    labels = data.same
    mean, std = tenfold_accuracy(sims, labels, data.folds)
    threshold = best_threshold(sims, labels)
    figures = {
        "auc": auc(sims, labels),
        "accuracy_10fold": mean,
        "accuracy_10fold_std": std,
        "best_threshold": threshold,
        "accuracy_at_best": accuracy_at(sims, labels, threshold),
    }
    if roc is not None:
        plot_roc(sims, labels, roc, f"held-out pairs: AUC {figures['auc']:.4f}")
    return figures


def _optimiser(config: FitConfig, model: nn.Module) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)


def _scheduler(config: FitConfig, optimiser: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(1, config.epochs))
    if config.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimiser, step_size=max(1, config.epochs // 3), gamma=0.1)
    return torch.optim.lr_scheduler.LambdaLR(optimiser, lambda _: 1.0)


def _step_loss(config: FitConfig, rows: torch.Tensor, labels: torch.Tensor, g: torch.Generator) -> LossResult:
    if config.loss == "contrastive":
        return contrastive_loss(rows, labels, config.alpha)
    return triplet_loss(rows, mine(config.mining, rows, labels, config.alpha, g), config.alpha)


class Trainer:
    """One run: model, optimiser, schedule and their state, in an output folder."""

    def __init__(
        self, config: FitConfig, train: ChipSet, out: Path, evaluation: HeldOut | None = None
    ) -> None:
        self.config = config
        self.train = train
        self.out = out
        self.evaluation = evaluation
        torch.manual_seed(config.seed)
        self.model = build_backbone(config.backbone)
        self.optimiser = _optimiser(config, self.model)
        self.scheduler = _scheduler(config, self.optimiser)
        self.sampler = PKSampler(
            train.labels,
            config.people_per_batch,
            config.images_per_person,
            config.extra_negatives,
            config.seed,
        )
        self.epoch = 0  # epochs completed
        self.step = 0
        self.best_auc = -1.0
        self.history: list[dict[str, Any]] = []

    # -- checkpoints ---------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything a resume needs to continue exactly."""
        return {
            "config": dataclasses.asdict(self.config),
            "alignment": dataclasses.asdict(self.train.alignment),
            "model": self.model.state_dict(),
            "optimiser": self.optimiser.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "best_auc": self.best_auc,
            "history": self.history,
            "torch_rng": torch.get_rng_state(),
        }

    def save(self, name: str) -> Path:
        """Write a checkpoint atomically (a run cut off mid-write keeps the previous one)."""
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / name
        partial = path.with_suffix(".partial")
        torch.save(self.state(), partial)
        partial.replace(path)
        return path

    def restore(self, checkpoint: Path) -> None:
        """Continue a run from its checkpoint; its config must equal this one."""
        saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
        if saved["config"] != dataclasses.asdict(self.config):
            raise ValueError(f"{checkpoint} was made with other settings: {saved['config']}")
        self.model.load_state_dict(saved["model"])
        self.optimiser.load_state_dict(saved["optimiser"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.epoch, self.step, self.best_auc = saved["epoch"], saved["step"], saved["best_auc"]
        self.history = saved["history"]
        torch.set_rng_state(saved["torch_rng"])

    # -- training ------------------------------------------------------------------------------
    @property
    def warmed_up(self) -> bool:
        """Whether the guard judges collapse yet (before, only non-unit or non-finite rows stop a run)."""
        return self.step >= self.config.guard_warmup_steps

    def run_epoch(self, progress: bool = True) -> dict[str, Any]:
        """One pass over the sampler's batches; returns the epoch's log row."""
        self.model.train()
        mining_rng = torch.Generator().manual_seed(self.config.seed * 100_003 + self.epoch)
        totals = {"loss": 0.0, "active": 0.0, "d_ap": 0.0, "d_an": 0.0, "spread": 0.0}
        batches = self.sampler.epoch(self.epoch)
        bar = tqdm(
            batches,
            desc=f"epoch {self.epoch + 1}/{self.config.epochs}",
            disable=not progress,
            file=sys.stderr,
        )
        counted = 0
        for rows in bar:
            picked = np.sort(rows)
            chips = torch.from_numpy(self.train.chips[picked])
            labels = torch.from_numpy(self.train.labels[picked])
            embeddings = self.model(chips)
            stats = guard.spread(embeddings)
            guard.check(stats, f"epoch {self.epoch + 1}, step {self.step + 1}", self.warmed_up)
            result = _step_loss(self.config, embeddings, labels, mining_rng)
            self.optimiser.zero_grad()
            result.loss.backward()
            self.optimiser.step()
            self.step += 1
            counted += 1
            totals["loss"] += float(result.loss.detach())
            totals["active"] += result.active_fraction
            totals["d_ap"] += result.mean_positive if math.isfinite(result.mean_positive) else 0.0
            totals["d_an"] += result.mean_negative if math.isfinite(result.mean_negative) else 0.0
            totals["spread"] += stats.mean_distance
            bar.set_postfix(loss=f"{float(result.loss.detach()):.3f}", active=f"{result.active_fraction:.2f}")
        self.scheduler.step()
        self.epoch += 1
        row: dict[str, Any] = {
            "epoch": self.epoch,
            "step": self.step,
            "lr": self.optimiser.param_groups[0]["lr"],
        }
        row.update({f"mean_{k}": v / max(1, counted) for k, v in totals.items()})
        if self.evaluation is not None:
            self.out.mkdir(parents=True, exist_ok=True)
            row.update(evaluate_held_out(self.model, self.evaluation, self.out / ROC_PLOT, self.warmed_up))
        return row

    def fit(self, progress: bool = True) -> list[dict[str, Any]]:
        """Train until the configured epochs (or minutes) are done; checkpoint and log every epoch."""
        self.out.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        limit = self.config.max_minutes * 60
        while self.epoch < self.config.epochs:
            epoch_started = time.monotonic()
            row = self.run_epoch(progress)
            row["minutes"] = round((time.monotonic() - started) / 60, 2)
            self.history.append(row)
            self._log(row)
            self.save(LAST_CHECKPOINT)
            if row.get("auc", -1.0) > self.best_auc:
                self.best_auc = row["auc"]
                self.save(BEST_CHECKPOINT)
            # Stop when another epoch like this one would overrun the limit, so that the limit holds.
            now = time.monotonic()
            if limit and (now - started) + (now - epoch_started) > limit:
                break
        return self.history

    def _log(self, row: dict[str, Any]) -> None:
        path = self.out / LOG_FILE
        fresh = not path.exists()
        with path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if fresh:
                writer.writeheader()
            writer.writerow(row)


def chip_size(config: FitConfig) -> int:
    """The chip size the configured backbone takes."""
    return BACKBONES[config.backbone].chip_size
