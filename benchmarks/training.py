"""Training on LFW's development view: the small CNN from scratch, the batch-axis bug, and fine-tuning dlib.

Run: .venv/bin/python -m benchmarks.training [--scratch-minutes 15] [--fresh]
Needs ../shared/data/lfw-dev (or FV_LFW_DIR). Trains on the people of pairsDevTrain.txt and evaluates
on pairsDevTest.txt, whose people are disjoint from them. Chips are cut once by `train prepare`'s code
into .cache/training (--fresh cuts them again). Every served figure goes through the exported ONNX model
and the service's pipeline, with the evaluator of `faceverify eval lfw`.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from app.face.pipeline import FacePipeline
from benchmarks.results_file import write_results
from tests.assets import LFW_DEV, REPO
from training.backbones import L2Normalize, build_backbone
from training.calibrate import calibrate_folder, install_calibration
from training.data import ChipSet
from training.evaluate import evaluate_pairs
from training.export_checkpoint import ExportRefused, export_checkpoint, export_model, load_trained
from training.fit import BEST_CHECKPOINT, LAST_CHECKPOINT, Trainer, evaluate_held_out, held_out
from training.fit_config import FitConfig
from training.guard import EmbeddingCollapse
from training.lfw import pair_people, read_pairs
from training.prepare import REPORT_FILE, prepare

WORK = REPO / ".cache" / "training"
SIZES = [64, 150]
# From scratch: defaults of `train fit`, with enough epochs for the cosine schedule to fill the budget.
SCRATCH = FitConfig(backbone="small", epochs=45, lr=1e-3)
# Fine-tuning keeps the pretrained geometry: a learning rate small against its weights (Adam moves
# every weight by about lr per step, and dlib's convolution weights are ~0.01), and a margin at the
# scale of its own decisions (squared distances 0.1-0.3 around its threshold, not alpha = 0.2 above).
FINETUNE = FitConfig(backbone="dlib", epochs=3, lr=1e-6, alpha=0.05, weight_decay=0.0)
_SERVED = ("pairs", "accuracy_10fold", "accuracy_10fold_std", "accuracy_at_threshold", "far_at_threshold")
_SERVED += ("val_at_far_1e-3", "auc", "no_face_images", "model")


def prepared(split: str, fresh: bool) -> Path:
    """DevTrain's or DevTest's people cut into chips of every size, once."""
    out = WORK / f"dev{split}"
    report = out / REPORT_FILE
    if fresh or not report.is_file() or json.loads(report.read_text()).get("sizes") != SIZES:
        pipeline = FacePipeline.from_models(REPO / "models")
        people = set(pair_people(LFW_DEV / f"pairsDev{split}.txt"))
        prepare(pipeline, LFW_DEV / "images", out, SIZES, people)
    return out


def served_figures(models: Path, pairs_file: str) -> dict[str, Any]:
    """The evaluator's figures for a models folder through the service's pipeline."""
    pipeline = FacePipeline.from_models(models)
    shipped = pipeline.embedder.artifact.threshold
    assert shipped is not None
    pairs = read_pairs(LFW_DEV / pairs_file, LFW_DEV / "images")
    figures = evaluate_pairs(pipeline, pairs, shipped.similarity, progress=False)
    return {key: figures[key] for key in _SERVED} | {"threshold": figures["threshold"]}


def calibrate(models: Path) -> dict[str, Any]:
    """Calibrate the exported model on every pair of DevTrain's people, as for the stock model."""
    pipeline = FacePipeline.from_models(models)
    calibration = calibrate_folder(
        pipeline, models, LFW_DEV / "images", LFW_DEV / "pairsDevTrain.txt", progress=False
    )
    return install_calibration(models, calibration).model_dump(mode="json")


def train(config: FitConfig, size: int, name: str, fresh: bool) -> tuple[Trainer, dict[str, float], float]:
    """A run from its first step: the held-out figures before it, the trainer after, and its minutes."""
    evaluation = held_out(
        ChipSet.load(prepared("Test", fresh), size),
        read_pairs(LFW_DEV / "pairsDevTest.txt", LFW_DEV / "images"),
    )
    trainer = Trainer(config, ChipSet.load(prepared("Train", fresh), size), WORK / "runs" / name, evaluation)
    for stale in (LAST_CHECKPOINT, BEST_CHECKPOINT, "log.csv"):
        (trainer.out / stale).unlink(missing_ok=True)
    before = evaluate_held_out(trainer.model, evaluation, judge_collapse=False)
    started = time.monotonic()
    trainer.fit(progress=False)
    return trainer, before, (time.monotonic() - started) / 60


def batch_axis_bug(fresh: bool, checkpoint: Path) -> dict[str, str]:
    """The failure the project starts from: the same model normalising over dim 0, in training and export."""
    chips = ChipSet.load(prepared("Train", fresh), 64)
    trainer = Trainer(SCRATCH, chips, WORK / "runs" / "batch-axis")
    trainer.model.normalize = L2Normalize(dim=0)
    outcome = {}
    try:
        trainer.run_epoch(progress=False)
        outcome["training"] = "not stopped"
    except EmbeddingCollapse as error:
        outcome["training"] = f"stopped: {str(error).split(';')[0]}"
    model, saved = load_trained(checkpoint)
    model.normalize = L2Normalize(dim=0)
    try:
        export_model(
            model, saved, checkpoint, WORK / "runs" / "batch-axis" / "model", REPO / "models", log=print
        )
        outcome["export"] = "not refused"
    except ExportRefused as error:
        outcome["export"] = f"refused: {str(error).split(':')[0]}"
    return outcome


def curve(trainer: Trainer) -> list[dict[str, float]]:
    """Per-epoch held-out AUC, loss and spread, as logged."""
    keys = ("epoch", "minutes", "mean_loss", "mean_active", "mean_spread", "auc", "accuracy_10fold")
    return [{k: round(float(row[k]), 4) for k in keys if k in row} for row in trainer.history]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scratch-minutes", type=float, default=15.0, help="time budget of the scratch run")
    parser.add_argument("--fresh", action="store_true", help="cut the chips again")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    stock = REPO / "models"

    scratch_config = FitConfig(**{**asdict(SCRATCH), "max_minutes": args.scratch_minutes})
    scratch, before, minutes = train(scratch_config, 64, "scratch", args.fresh)
    last = scratch.history[-1]
    print(
        f"scratch: DevTest AUC {before['auc']:.4f} -> {last['auc']:.4f} "
        f"in {minutes:.2f} min, {scratch.epoch} epochs"
    )
    scratch_models = scratch.out / "model"
    export_checkpoint(scratch.out / LAST_CHECKPOINT, scratch_models, stock)
    scratch_threshold = calibrate(scratch_models)
    scratch_served = served_figures(scratch_models, "pairsDevTest.txt")
    print(
        f"scratch served: DevTest AUC {scratch_served['auc']:.4f}, "
        f"10-fold {scratch_served['accuracy_10fold']:.4f}"
    )
    bug = batch_axis_bug(args.fresh, scratch.out / LAST_CHECKPOINT)
    print(f"batch-axis normalisation: training {bug['training']}; export {bug['export']}")

    pretrained = served_figures(stock, "pairsDevTest.txt")
    print(
        f"pretrained served: DevTest 10-fold {pretrained['accuracy_10fold']:.4f}, AUC {pretrained['auc']:.5f}"
    )
    finetuned, finetune_before, finetune_minutes = train(FINETUNE, 150, "finetune", args.fresh)
    finetune_models = finetuned.out / "model"
    export_checkpoint(finetuned.out / LAST_CHECKPOINT, finetune_models, stock)
    finetune_threshold = calibrate(finetune_models)
    finetune_served = served_figures(finetune_models, "pairsDevTest.txt")
    moved = max(
        float((a - b).abs().max())
        for a, b in zip(
            load_trained(finetuned.out / LAST_CHECKPOINT)[0].state_dict().values(),
            build_backbone("dlib").state_dict().values(),
            strict=True,
        )
    )
    gap = 100 * (finetune_served["accuracy_10fold"] - pretrained["accuracy_10fold"])
    print(
        f"fine-tuned served: DevTest 10-fold {finetune_served['accuracy_10fold']:.4f} ({gap:+.2f} points), "
        f"AUC {finetune_served['auc']:.5f}, {finetune_minutes:.2f} min; largest weight change {moved:.2e}"
    )

    path = write_results(
        "training",
        {
            "data": {
                "train": "people of pairsDevTrain.txt",
                "evaluate": "pairsDevTest.txt (disjoint people)",
                "train_chips": len(scratch.train.labels),
                "train_people": len(set(scratch.train.labels.tolist())),
            },
            "scratch_devtest_auc": last["auc"],
            "scratch_devtest_auc_before": before["auc"],
            "scratch_minutes": round(minutes, 2),
            "scratch_epochs": scratch.epoch,
            "scratch_config": asdict(scratch_config),
            "scratch_curve": curve(scratch),
            "scratch_served_devtest": scratch_served,
            "scratch_threshold": scratch_threshold,
            "batch_axis_normalisation": bug,
            "pretrained_devtest_accuracy": pretrained["accuracy_10fold"],
            "pretrained_served_devtest": pretrained,
            "finetuned_devtest_accuracy": finetune_served["accuracy_10fold"],
            "finetuned_minus_pretrained_points": round(gap, 2),
            "finetuned_served_devtest": finetune_served,
            "finetuned_threshold": finetune_threshold,
            "finetune_held_out_before": finetune_before,
            "finetune_minutes": round(finetune_minutes, 2),
            "finetune_largest_weight_change": moved,
            "finetune_config": asdict(FINETUNE),
            "finetune_curve": curve(finetuned),
        },
    )
    print(f"recorded in {path}")


if __name__ == "__main__":
    main()
