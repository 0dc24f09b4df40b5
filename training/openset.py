"""Open-set identification figures (FNIR at FPIR), measured through the service's gallery and decisions.

From a labelled folder: the gallery is the first photo of each person with two or more, the mated
probes are their second photos, and the non-mated probes are the people with a single photo. Each
gallery is enrolled into a real Gallery (a temporary SQLite file and FAISS index, with the model's
cohort), searched with Gallery.rank, and decided with Decisions.identify, as /identify does.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from app.decision.cohort import Cohort
from app.decision.points import Decisions, Score
from app.gallery.gallery import Gallery
from app.gallery.store import Enrollment, NewFace
from training.labelled import LabelledFaces

FPIR_TARGETS = (0.1, 0.01, 0.001)
_COLLECTION = "openset"


@dataclass(frozen=True)
class OpenSetSplit:
    """Rows of the labelled faces: gallery and mated probe (index-aligned), and non-mated probes."""

    gallery: npt.NDArray[np.intp]
    mated: npt.NDArray[np.intp]
    non_mated: npt.NDArray[np.intp]


def split(faces: LabelledFaces) -> OpenSetSplit:
    """First and second photo (in file order) of each person with two or more; people with one."""
    gallery, mated, non_mated = [], [], []
    for person in range(len(faces.names)):
        rows = np.flatnonzero(faces.people == person)
        rows = rows[np.argsort([str(faces.paths[r]) for r in rows])] if faces.paths else rows
        if len(rows) >= 2:
            gallery.append(rows[0])
            mated.append(rows[1])
        else:
            non_mated.append(rows[0])
    return OpenSetSplit(np.array(gallery, np.intp), np.array(mated, np.intp), np.array(non_mated, np.intp))


@dataclass
class Searches:
    """The best candidate of every probe of one gallery, for one score."""

    mated_scores: npt.NDArray[np.float64]
    mated_correct: npt.NDArray[np.bool_]  # the best candidate is the probe's own person
    non_mated_scores: npt.NDArray[np.float64]
    faces_searched: int


def fnir_at(searches: Searches, threshold: float) -> float:
    """Share of mated probes whose best candidate is not their person or scores below the threshold."""
    return float(np.mean(~(searches.mated_correct & (searches.mated_scores >= threshold))))


def fpir_at(searches: Searches, threshold: float) -> float:
    """Share of non-mated probes whose best candidate reaches the threshold."""
    return float(np.mean(searches.non_mated_scores >= threshold))


def threshold_for_fpir(non_mated_scores: npt.NDArray[np.float64], fpir: float) -> float:
    """The lowest threshold that lets at most `fpir` of the non-mated probes match."""
    ordered = np.sort(non_mated_scores)[::-1]
    allowed = int(np.floor(fpir * len(ordered)))
    if allowed >= len(ordered):
        return float(ordered[-1])
    return float(np.nextafter(ordered[allowed], np.inf))


def det_curve(searches: Searches) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """FPIR and FNIR at every threshold where the FPIR changes."""
    thresholds = np.unique(searches.non_mated_scores)[::-1]
    fpir = np.array([fpir_at(searches, t) for t in thresholds])
    fnir = np.array([fnir_at(searches, t) for t in thresholds])
    return fpir, fnir


def search_gallery(
    faces: LabelledFaces,
    rows: OpenSetSplit,
    chosen: npt.NDArray[np.intp],
    model_id: str,
    cohort: Cohort | None,
    scores: tuple[Score, ...],
) -> dict[Score, Searches]:
    """Enroll the chosen gallery people into a real Gallery, then search every probe with each score."""
    with tempfile.TemporaryDirectory(prefix="faceverify-openset-") as folder:
        gallery = Gallery(Path(folder), model_id, faces.vectors.shape[1], cohort=cohort)
        enrollments = [
            Enrollment(str(int(faces.people[rows.gallery[i]])), [NewFace(faces.vectors[rows.gallery[i]])])
            for i in chosen
        ]
        gallery.enroll(_COLLECTION, enrollments)
        mated = rows.mated[chosen]
        found: dict[Score, Searches] = {}
        for score in scores:
            normalise = score == "snorm"
            mated_rank = gallery.rank(_COLLECTION, faces.vectors[mated], 1, normalise)
            stranger_rank = gallery.rank(_COLLECTION, faces.vectors[rows.non_mated], 1, normalise)
            found[score] = Searches(
                mated_scores=np.array([r.candidates[0].score for r in mated_rank]),
                mated_correct=np.array(
                    [
                        r.candidates[0].subject_id == str(int(faces.people[m]))
                        for r, m in zip(mated_rank, mated, strict=True)
                    ]
                ),
                non_mated_scores=np.array([r.candidates[0].score for r in stranger_rank]),
                faces_searched=mated_rank[0].faces_searched,
            )
        gallery.store.close()
    return found


@dataclass
class _Accumulated:
    fnir_at_fpir: dict[float, list[float]] = field(default_factory=lambda: {t: [] for t in FPIR_TARGETS})
    default_fpir: list[float] = field(default_factory=list)
    default_fnir: list[float] = field(default_factory=list)
    default_threshold: list[float] = field(default_factory=list)
    expected_fpir: list[float] = field(default_factory=list)
    curves: list[tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]] = field(default_factory=list)


def evaluate_openset(
    faces: LabelledFaces,
    decisions: Decisions,
    sizes: list[int | None],
    repeats: int = 20,
    seed: int = 0,
) -> dict[str, Any]:
    """FNIR at FPIR 10%, 1% and 0.1% and at the service's default decision, per gallery size and score.

    A size below the number of gallery people is drawn `repeats` times at random and averaged; None
    means every gallery person. The DET curves of the first draw are returned under "_curves".
    """
    rows = split(faces)
    if len(rows.gallery) < 2 or len(rows.non_mated) == 0:
        raise ValueError("an open-set evaluation needs people with two photos and people with one")
    scores: tuple[Score, ...] = ("cosine", "snorm") if decisions.normalisation else ("cosine",)
    rng = np.random.default_rng(seed)
    figures: dict[str, Any] = {
        "people": len(faces.names),
        "photos": len(faces.vectors),
        "gallery_people": len(rows.gallery),
        "mated_probes": len(rows.mated),
        "non_mated_probes": len(rows.non_mated),
        "fpir_identify_default": decisions.identify_fpir,
        "sizes": {},
    }
    curves: dict[str, Any] = {}
    for size in sizes:
        people = len(rows.gallery) if size is None or size >= len(rows.gallery) else size
        draws = 1 if people == len(rows.gallery) else repeats
        totals = {score: _Accumulated() for score in scores}
        for draw in range(draws):
            chosen = np.sort(rng.choice(len(rows.gallery), people, replace=False))
            found = search_gallery(faces, rows, chosen, decisions.artifact.id, decisions.cohort, scores)
            for score, searches in found.items():
                total = totals[score]
                for target in FPIR_TARGETS:
                    cut = threshold_for_fpir(searches.non_mated_scores, target)
                    total.fnir_at_fpir[target].append(fnir_at(searches, cut))
                point = decisions.identify(searches.faces_searched, score=score)
                total.default_threshold.append(point.threshold)
                total.default_fpir.append(fpir_at(searches, point.threshold))
                total.default_fnir.append(fnir_at(searches, point.threshold))
                total.expected_fpir.append(point.false_accept_rate or 0.0)
                if draw == 0:
                    total.curves.append(det_curve(searches))
        label = "all" if people == len(rows.gallery) else str(people)
        figures["sizes"][label] = {
            score: {
                "gallery_people": people,
                "draws": draws,
                "fnir_at_fpir": {f"{t:g}": float(np.mean(v)) for t, v in total.fnir_at_fpir.items()},
                "non_mated_above_at_fpir": {
                    f"{t:g}": int(np.floor(t * len(rows.non_mated))) for t in FPIR_TARGETS
                },
                "default_decision": {
                    "threshold": float(np.mean(total.default_threshold)),
                    "expected_fpir": float(np.mean(total.expected_fpir)),
                    "fpir": float(np.mean(total.default_fpir)),
                    "fnir": float(np.mean(total.default_fnir)),
                },
            }
            for score, total in totals.items()
        }
        curves[label] = {score: total.curves[0] for score, total in totals.items()}
    figures["_curves"] = curves
    return figures


def report_lines(figures: dict[str, Any]) -> list[str]:
    """One line per gallery size and score: FNIR at each FPIR, and the default decision's figures."""
    lines = []
    for label, by_score in figures["sizes"].items():
        for score, row in by_score.items():
            fnir, default = row["fnir_at_fpir"], row["default_decision"]
            lines.append(
                f"{label:>5} people {score:6}  FNIR at FPIR 10% {fnir['0.1']:.3f}  1% {fnir['0.01']:.3f}  "
                f"0.1% {fnir['0.001']:.3f}  | default (FPIR {figures['fpir_identify_default']:g}): "
                f"measured FPIR {default['fpir']:.4f} (expected {default['expected_fpir']:.4f}), "
                f"FNIR {default['fnir']:.3f}"
            )
    return lines


def plot_det(curves: dict[str, Any], path: Path, title: str) -> None:
    """Write the DET curves (FNIR against FPIR, log axes) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.4, 4.8))
    for label, by_score in curves.items():
        for score, (fpir, fnir) in by_score.items():
            if not fnir.any():
                continue  # no miss at any FPIR: nothing to draw on a log axis
            style = "-" if score == "snorm" else "--"
            axis.step(np.maximum(fpir, 1e-4), np.maximum(fnir, 1e-3), style, where="post",
                      label=f"{label} people, {score}")  # fmt: skip
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("FPIR (non-mated probes matched)")
    axis.set_ylabel("FNIR (mated probes missed)")
    axis.set_title(title)
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
