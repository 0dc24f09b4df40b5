"""Accuracy on LFW's development view: detection rate, DevTest verification (the default embedder and
every other built one, the int8 form, each at its own calibrated threshold), flip averaging on DevTrain.

Run: .venv/bin/python -m benchmarks.lfw [--skip-flip-study]
Needs ../shared/data/lfw-dev (or FV_LFW_DIR). The shipped threshold is the one calibrated on DevTrain
(`faceverify calibrate`); DevTest is only evaluated, never fitted on.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from app.face.catalog import ModelCatalog
from app.face.pipeline import FacePipeline, PipelineSettings
from benchmarks.results_file import write_results
from tests.assets import LFW_DEV
from training.evaluate import evaluate_pairs
from training.lfw import read_pairs

_REPORTED = ("pairs", "accuracy_10fold", "accuracy_10fold_std", "accuracy_at_threshold", "far_at_threshold")
_REPORTED += ("val_at_far_1e-3", "val_note", "auc", "no_face_images", "ms_per_image")


def detection_rate(pipeline: FacePipeline, images: list[Path]) -> dict[str, Any]:
    """How many images yield at least one face, and which do not."""
    missed = []
    started = time.perf_counter()
    for path in tqdm(images, desc="detecting", unit="img", file=sys.stderr, mininterval=5):
        if not pipeline.detect(pipeline.decode(path.read_bytes())):
            missed.append(str(path.relative_to(LFW_DEV)))
    seconds = time.perf_counter() - started
    return {
        "images": len(images),
        "with_face": len(images) - len(missed),
        "rate": (len(images) - len(missed)) / len(images),
        "missed": missed,
        "ms_per_image": 1000 * seconds / len(images),
    }


def _figures(pipeline: FacePipeline, pairs_name: str) -> dict[str, Any]:
    pairs = read_pairs(LFW_DEV / pairs_name, LFW_DEV / "images")
    threshold = pipeline.embedder.artifact.threshold
    assert threshold is not None
    figures = evaluate_pairs(pipeline, pairs, threshold.similarity, progress=False)
    return {key: figures[key] for key in _REPORTED} | {"threshold": threshold.similarity}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--skip-flip-study", action="store_true", help="skip the DevTrain flip comparison")
    args = parser.parse_args()

    pipeline = FacePipeline.from_models(args.models, PipelineSettings(flip_average=True))
    threshold = pipeline.embedder.artifact.threshold
    assert threshold is not None
    images = sorted((LFW_DEV / "images").glob("*/*.jpg"))
    detection = detection_rate(pipeline, images)
    print(
        f"faces found in {detection['with_face']} of {detection['images']} images ({detection['rate']:.4%})"
    )

    devtest = _figures(pipeline, "pairsDevTest.txt")
    print(
        f"DevTest: accuracy at the shipped threshold {devtest['accuracy_at_threshold']:.4f} "
        f"(threshold {threshold.similarity}, calibrated on {threshold.calibrated_on}), "
        f"10-fold {devtest['accuracy_10fold']:.4f} +- {devtest['accuracy_10fold_std']:.4f}, "
        f"AUC {devtest['auc']:.5f} (VAL at FAR 1e-3: see benchmarks/openset.py, over every pair)"
    )
    others = {}
    for artifact in ModelCatalog.load(args.models).built_embedders()[1:]:
        other = FacePipeline.from_models(args.models, PipelineSettings(flip_average=True), model=artifact.id)
        row = others[artifact.id] = _figures(other, "pairsDevTest.txt")
        print(
            f"DevTest with {artifact.id}: at its threshold {row['accuracy_at_threshold']:.4f}, "
            f"10-fold {row['accuracy_10fold']:.4f}, AUC {row['auc']:.5f}"
        )
    flip_study = {}
    if not args.skip_flip_study:
        for flip in (True, False):
            pipeline.settings = PipelineSettings(flip_average=flip)
            flip_study[f"flip_{'on' if flip else 'off'}"] = _figures(pipeline, "pairsDevTrain.txt")
        for name, row in flip_study.items():
            print(f"DevTrain {name}: 10-fold {row['accuracy_10fold']:.4f}, AUC {row['auc']:.5f}")
    path = write_results(
        "lfw",
        {
            "model": pipeline.model_id,
            "threshold": threshold.model_dump(mode="json"),
            "detection": detection,
            "devtest": devtest,
            "devtest_other_built_embedders": others,
            "devtrain_flip_study": flip_study,
        },
    )
    print(f"recorded in {path}")


if __name__ == "__main__":
    main()
