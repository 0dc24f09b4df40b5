"""Decisions on held-out people: open-set identification (FNIR at FPIR) and the default /verify FAR.

Run: .venv/bin/python -m benchmarks.openset
Needs ../shared/data/lfw-dev (or FV_LFW_DIR) and the stock models with their calibration and cohort,
both made from DevTrain's people only (`faceverify cohort build`, `faceverify calibrate`); every figure
here is measured on DevTest's people, who appear in neither. Gallery: the first photo of each DevTest
person with two or more; mated probes: their second photo; non-mated probes: the people with one photo.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from app.config import Settings
from app.decision.cohort import Cohort
from app.decision.points import STATED_FARS, Decisions, Score
from app.face.catalog import ModelCatalog
from app.face.pipeline import FacePipeline
from benchmarks.results_file import RESULTS, write_results
from tests.assets import LFW_DEV
from training.labelled import LabelledFaces, embed_labelled
from training.openset import evaluate_openset, plot_det, report_lines

_ROWS = 2048


def verify_figures(faces: LabelledFaces, decisions: Decisions, score: Score, far: float) -> dict[str, Any]:
    """FAR and TAR measured over every pair of the faces at the verify point for `far`."""
    point = decisions.verify(far=far, score=score)
    stats = decisions.cohort.stats(faces.vectors) if score == "snorm" and decisions.cohort else None
    same_above = same = different_above = different = 0
    n = len(faces.vectors)
    for start in range(0, n, _ROWS):
        rows = np.arange(start, min(start + _ROWS, n))
        scores = faces.vectors[rows] @ faces.vectors.T
        if stats is not None:
            mean, sd = stats
            scores = decisions.cohort.normalise(
                scores, mean[rows][:, None], sd[rows][:, None], mean[None, :], sd[None, :]
            )
        upper = np.arange(n)[None, :] > rows[:, None]
        pair_same = (faces.people[rows][:, None] == faces.people[None, :])[upper]
        passed = (scores >= point.threshold)[upper]
        same += int(pair_same.sum())
        same_above += int((passed & pair_same).sum())
        different += int((~pair_same).sum())
        different_above += int((passed & ~pair_same).sum())
    measured = different_above / different
    return {
        "score": score,
        "stated_far": far,
        "threshold": point.threshold,
        "calibration_tar": point.tar,
        "measured_far": measured,
        "far_ratio": measured / far,
        "measured_tar": same_above / same,
        "different_pairs": different,
        "different_pairs_above": different_above,
        "same_pairs": same,
    }


def _reduction(raw: float, normalised: float) -> float | None:
    """How much lower (relative) the normalised FNIR is; None where the raw one is already 0."""
    return 1.0 - normalised / raw if raw else None


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--repeats", type=int, default=50, help="random galleries per smaller size")
    parser.add_argument(
        "--model", default=None, help="an imported embedder (id or name; default: the built one)"
    )
    args = parser.parse_args()

    catalog = ModelCatalog.load(args.models)
    artifact = catalog.find(args.model) if args.model else catalog.built
    calibration, cohort_entry = artifact.calibration, artifact.cohort
    if calibration is None or "pairsDevTrain.txt" not in calibration.calibrated_on:
        raise SystemExit("the models' calibration is not from DevTrain's people: run `faceverify calibrate`")
    if cohort_entry is None or "pairsDevTrain.txt" not in cohort_entry.built_from:
        raise SystemExit("the models' cohort is not from DevTrain's people: run `faceverify cohort build`")
    settings = Settings()
    decisions = Decisions(
        artifact, Cohort.load(args.models, artifact), settings.verify_far, settings.identify_fpir
    )
    pipeline = FacePipeline.from_models(args.models, model=artifact.id)
    faces = embed_labelled(pipeline, LFW_DEV / "images", LFW_DEV / "pairsDevTest.txt", progress=False)
    print(f"DevTest: {len(faces.names)} people, {len(faces.vectors)} photos ({faces.skipped} without a face)")

    figures = evaluate_openset(faces, decisions, [10, 100, None], args.repeats)
    curves = figures.pop("_curves")
    # The built model's figures keep their names; another model's are named after it.
    name = "openset" if catalog.is_built(artifact) else f"openset-{artifact.id}"
    plot = RESULTS / f"{name}-det.png"
    plot_det(curves, plot, "DevTest open set (calibration and cohort: DevTrain)")
    print("\n".join(report_lines(figures)))
    for label, by_score in figures["sizes"].items():
        if "snorm" in by_score:
            raw, normalised = (
                by_score["cosine"]["fnir_at_fpir"]["0.01"],
                by_score["snorm"]["fnir_at_fpir"]["0.01"],
            )
            raw_d = by_score["cosine"]["default_decision"]["fnir"]
            normalised_d = by_score["snorm"]["default_decision"]["fnir"]
            at_fpir, at_default = _reduction(raw, normalised), _reduction(raw_d, normalised_d)
            figures.setdefault("fnir_reduction_with_snorm", {})[label] = {
                "at_fpir_1%": at_fpir,
                "at_default_decision": at_default,
            }
            print(
                f"{label:>4} people: FNIR with S-norm, relative reduction: at FPIR 1% {_percent(at_fpir)}, "
                f"at the default decision {_percent(at_default)}"
            )

    verify = [
        verify_figures(faces, decisions, score, far)
        for score in (("cosine", "snorm") if decisions.normalisation else ("cosine",))
        for far in sorted({settings.verify_far, *STATED_FARS}, reverse=True)
    ]
    for row in verify:
        print(
            f"verify {row['score']:6} at stated FAR {row['stated_far']:g}: threshold {row['threshold']:.4f}, "
            f"measured FAR {row['measured_far']:.2e} ({row['different_pairs_above']:,} of "
            f"{row['different_pairs']:,} pairs, x{row['far_ratio']:.2f}), TAR {row['measured_tar']:.4f}"
        )
    path = write_results(
        name,
        {
            "model": artifact.id,
            "calibrated_on": calibration.calibrated_on,
            "cohort": cohort_entry.built_from,
            "cohort_top_k": cohort_entry.top_k,
            "evaluated_on": faces.source,
            "open_set": figures,
            "verify": verify,
            "det_plot": str(plot.relative_to(RESULTS.parent.parent)),
        },
    )
    print(f"recorded in {path}, DET curves in {plot}")


if __name__ == "__main__":
    main()
