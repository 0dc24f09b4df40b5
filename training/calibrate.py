"""`faceverify calibrate`: score distributions over every pair of a labelled folder of photos.

Every same-person and different-person pair of the photos is scored, in chunks of rows, as raw cosine
and (where the model has a cohort) as S-norm against that cohort; their histograms give the table that
turns a FAR into a threshold and back. Cohort statistics leave out both people of a pair, so that
calibration sees what the service sees: a probe and an enrolled face of people absent from the cohort.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from app.decision.cohort import Cohort, top_k_stats
from app.decision.curves import MIN_PAIRS_ABOVE, ScoreCurve
from app.face.catalog import ModelCatalog
from app.face.manifest import ScoreCalibration, Threshold
from app.face.pipeline import FacePipeline
from training.cohort import CohortForCalibration, for_calibration
from training.labelled import LabelledFaces, embed_labelled
from training.score_histogram import BINS, ScoreHistogram

# Committed beside the build code, one per built model: a fresh build ships the calibration, not the
# provisional threshold.
CALIBRATIONS_DIR = Path(__file__).resolve().parent / "calibrations"


def calibration_file(model_id: str) -> Path:
    """Where the committed calibration of a built model lives."""
    return CALIBRATIONS_DIR / f"{model_id}.json"


# dlib's own rule is Euclidean 0.6 between raw descriptors, whose norms are about 1.5: about 0.4
# between unit vectors. Only a starting point until a calibration exists.
_PROVISIONAL_SQUARED_DISTANCE = 0.16
_BLOCK = 8_000_000  # pair scores per chunk of rows: bounds memory whatever the number of photos
_EXCLUDED = -4.0  # below every cosine: a cohort face of one of the pair's people is never in a top k


def provisional_threshold() -> Threshold:
    """The threshold a build ships when no calibration is recorded for its model."""
    squared = _PROVISIONAL_SQUARED_DISTANCE
    return Threshold(
        similarity=1.0 - squared / 2.0,
        squared_distance=squared,
        calibrated=False,
        far=None,
        calibrated_on=None,
        note="provisional: dlib's Euclidean 0.6 on raw descriptors (norm ~1.5) mapped to unit vectors; "
        "run `faceverify calibrate` to fit it on data",
    )


@dataclass(frozen=True)
class Recorded:
    """A committed calibration: the named threshold and the score distributions."""

    threshold: Threshold
    calibration: ScoreCalibration | None


def recorded_calibration(model_id: str, template_id: str, path: Path | None = None) -> Recorded | None:
    """The committed calibration for this model and alignment template, if there is one."""
    path = path or calibration_file(model_id)
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    if record.get("model") != model_id or record.get("alignment_template") != template_id:
        return None
    calibration = record.get("calibration")
    return Recorded(
        Threshold.model_validate(record["threshold"]),
        ScoreCalibration.model_validate(calibration) if calibration else None,
    )


@dataclass(frozen=True)
class _LeaveOut:
    """Cohort statistics of each face without its own person, and corrections without a second one."""

    mean: npt.NDArray[np.float32]
    sd: npt.NDArray[np.float32]
    # Entry i: the statistics of face `face[i]` when the person of face `other[i]` is left out too.
    face: npt.NDArray[np.int64]
    other: npt.NDArray[np.int64]
    other_mean: npt.NDArray[np.float32]
    other_sd: npt.NDArray[np.float32]


def _leave_out_statistics(faces: LabelledFaces, given: CohortForCalibration, progress: bool) -> _LeaveOut:
    """Top-k cohort statistics that leave out the face's own person, and for every second person
    who appears among its top k, the statistics without that person as well (exact: the top list is
    kept long enough to refill k places)."""
    cohort, k = given.cohort, given.cohort.top_k
    space = {key: i for i, key in enumerate(sorted(set(given.keys) | set(faces.person_keys())))}
    cohort_people = np.array([space[key] for key in given.keys], np.int64)
    face_people = np.array([space[key] for key in faces.person_keys()], np.int64)
    most = int(np.bincount(cohort_people).max())
    if len(cohort_people) < k + 2 * most:
        raise ValueError(
            f"the cohort has {len(cohort_people)} faces, too few to leave two people ({most} faces each at "
            f"most) out of a top {k}: build a larger cohort or a smaller --top-k"
        )
    depth = k + most
    faces_of = {int(p): np.flatnonzero(face_people == p) for p in np.unique(face_people)}
    mean = np.empty(len(faces.vectors), np.float32)
    sd = np.empty(len(faces.vectors), np.float32)
    face_ids, other_ids, other_mean, other_sd = [], [], [], []
    rows_per_chunk = max(1, _BLOCK // len(cohort_people))
    chunks = range(0, len(faces.vectors), rows_per_chunk)
    for start in tqdm(chunks, desc="cohort statistics", disable=not progress, file=sys.stderr):
        rows = np.arange(start, min(start + rows_per_chunk, len(faces.vectors)))
        sims = faces.vectors[rows] @ cohort.vectors.T
        sims[face_people[rows][:, None] == cohort_people[None, :]] = _EXCLUDED
        top = np.argpartition(-sims, depth - 1, axis=1)[:, :depth]
        values = np.take_along_axis(sims, top, axis=1)
        order = np.argsort(-values, axis=1)
        values = np.take_along_axis(values, order, axis=1)
        people = cohort_people[np.take_along_axis(top, order, axis=1)]
        mean[rows], sd[rows] = top_k_stats(values, k)
        for row, row_values, row_people in zip(rows, values, people, strict=True):
            seconds = [q for q in np.unique(row_people[:k]) if int(q) in faces_of]
            if not seconds:
                continue
            kept = row_people[None, :] != np.array(seconds)[:, None]
            # Each second person's row: the first k values that are not that person's.
            chosen = kept & (np.cumsum(kept, axis=1) <= k)
            # Exactly k values per row, reduced as the service reduces a face's top k.
            picked = row_values[np.nonzero(chosen)[1]].reshape(len(seconds), k)
            m, s = top_k_stats(picked, k)
            for q, qm, qs in zip(seconds, m, s, strict=True):
                others = faces_of[int(q)]
                face_ids.append(np.full(len(others), row))
                other_ids.append(others)
                other_mean.append(np.full(len(others), qm, np.float32))
                other_sd.append(np.full(len(others), qs, np.float32))

    def joined(parts: list[npt.NDArray[Any]], dtype: type) -> npt.NDArray[Any]:
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

    return _LeaveOut(
        mean, sd, joined(face_ids, np.int64), joined(other_ids, np.int64),
        joined(other_mean, np.float32), joined(other_sd, np.float32),
    )  # fmt: skip


@dataclass(frozen=True)
class _Sorted:
    """The correction entries ordered by one of their two face columns, for slicing by rows."""

    order: npt.NDArray[np.intp]
    keys: npt.NDArray[np.int64]

    @classmethod
    def by(cls, column: npt.NDArray[np.int64]) -> _Sorted:
        order = np.argsort(column, kind="stable")
        return cls(order, column[order])

    def within(self, first: int, last: int) -> npt.NDArray[np.intp]:
        lo, hi = np.searchsorted(self.keys, [first, last])
        return self.order[lo:hi]


def _pair_statistics(
    stats: _LeaveOut, rows: npt.NDArray[np.int64], columns: int, by_face: _Sorted, by_other: _Sorted
) -> tuple[npt.NDArray[np.float32], ...]:
    """(rows, all) cohort means and SDs of the row face and of the column face, each leaving out the
    other's person."""
    first, last = int(rows[0]), int(rows[-1]) + 1
    row_mean = np.repeat(stats.mean[rows][:, None], columns, axis=1)
    row_sd = np.repeat(stats.sd[rows][:, None], columns, axis=1)
    column_mean = np.repeat(stats.mean[None, :], len(rows), axis=0)
    column_sd = np.repeat(stats.sd[None, :], len(rows), axis=0)
    pick = by_face.within(first, last)  # corrections of the row faces
    row_mean[stats.face[pick] - first, stats.other[pick]] = stats.other_mean[pick]
    row_sd[stats.face[pick] - first, stats.other[pick]] = stats.other_sd[pick]
    pick = by_other.within(first, last)  # corrections of the column faces, the rows' people left out
    column_mean[stats.other[pick] - first, stats.face[pick]] = stats.other_mean[pick]
    column_sd[stats.other[pick] - first, stats.face[pick]] = stats.other_sd[pick]
    return row_mean, row_sd, column_mean, column_sd


@dataclass(frozen=True)
class PairHistograms:
    """The histograms of every pair of a labelled set, per score."""

    scores: dict[str, ScoreHistogram]
    people: int
    images: int


def score_all_pairs(
    faces: LabelledFaces, cohort: CohortForCalibration | None = None, progress: bool = True
) -> PairHistograms:
    """Histograms of the cosine (and S-norm) scores of every pair of different photos."""
    histograms = {"cosine": ScoreHistogram(*BINS["cosine"])}
    stats = None
    if cohort is not None:
        histograms["snorm"] = ScoreHistogram(*BINS["snorm"])
        stats = _leave_out_statistics(faces, cohort, progress)
        by_face, by_other = _Sorted.by(stats.face), _Sorted.by(stats.other)
    n = len(faces.vectors)
    rows_per_chunk = max(1, _BLOCK // n)
    columns = np.arange(n)
    chunks = range(0, n, rows_per_chunk)
    for start in tqdm(chunks, desc="scoring pairs", disable=not progress, file=sys.stderr):
        rows = np.arange(start, min(start + rows_per_chunk, n))
        sims = faces.vectors[rows] @ faces.vectors.T
        upper = columns[None, :] > rows[:, None]  # each unordered pair once, never a photo with itself
        same = faces.people[rows][:, None] == faces.people[None, :]
        histograms["cosine"].add(sims[upper], same[upper])
        if stats is not None:
            row_mean, row_sd, column_mean, column_sd = _pair_statistics(stats, rows, n, by_face, by_other)
            normalised = cohort.cohort.normalise(sims, row_mean, row_sd, column_mean, column_sd)
            histograms["snorm"].add(normalised[upper], same[upper])
    return PairHistograms(histograms, len(faces.names), n)


def calibration_from(
    histograms: PairHistograms, faces: LabelledFaces, flip_average: bool, cohort: Cohort | None
) -> ScoreCalibration:
    """The stored form of the histograms: a table per score, with what they were measured on."""
    cosine = histograms.scores["cosine"]
    same, different = cosine.same_pairs, cosine.different_pairs
    return ScoreCalibration(
        calibrated_on=(
            f"{faces.source}: {histograms.people} people, {histograms.images} photos, "
            f"{same:,} same-person and {different:,} different-person pairs"
        ),
        people=histograms.people,
        images=histograms.images,
        same_pairs=same,
        different_pairs=different,
        min_far=_min_far(different),
        flip_average=flip_average,
        cohort_identity=cohort.identity if cohort is not None else None,
        tables={name: histogram.table() for name, histogram in histograms.scores.items()},  # type: ignore[misc]
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def _min_far(different_pairs: int) -> float:
    return MIN_PAIRS_ABOVE / max(different_pairs, 1)


def named_threshold(calibration: ScoreCalibration) -> Threshold:
    """The accuracy-maximising cosine threshold of a calibration, as the manifest's named threshold."""
    table = calibration.tables["cosine"]
    curve = ScoreCurve(table, calibration.min_far)
    value = table.max_accuracy
    far, _ = curve.far_at(value)
    tar = curve.tar_at(value) or 0.0  # measured: the point lies within the table
    return Threshold(
        similarity=value,
        squared_distance=round(2.0 - 2.0 * value, 6),
        calibrated=True,
        far=far,
        accuracy=(tar + 1.0 - far) / 2.0,
        calibrated_on=calibration.calibrated_on,
        flip_average=calibration.flip_average,
        note=f"maximum balanced accuracy (TAR + 1 - FAR) / 2 over every pair: FAR {far:.4f}, TAR {tar:.4f}; "
        "the service decides at a stated FAR or FPIR from the calibration's tables instead",
    )


def install_calibration(
    models_dir: Path, calibration: ScoreCalibration, record: Path | None = None, model_id: str | None = None
) -> Threshold:
    """Put the calibration and its named threshold into the entry of the model (the built one unless
    named) and, optionally, the committed record."""
    catalog = ModelCatalog.load(models_dir)
    embedder = catalog.find(model_id) if model_id else catalog.built
    threshold = named_threshold(calibration)
    catalog.save(embedder.model_copy(update={"threshold": threshold, "calibration": calibration}))
    if record is not None:
        entry = {
            "model": embedder.id,
            "alignment_template": embedder.input_contract.alignment_template,
            "threshold": threshold.model_dump(mode="json"),
            "calibration": calibration.model_dump(mode="json"),
        }
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(entry, indent=1) + "\n")
    return threshold


def calibrate_folder(
    pipeline: FacePipeline, models_dir: Path, images: Path, people_of: Path | None, progress: bool = True
) -> ScoreCalibration:
    """Embed a labelled folder through the pipeline and calibrate on every pair of its photos, against
    the model's installed cohort where it has one."""
    faces = embed_labelled(pipeline, images, people_of, progress)
    cohort = for_calibration(models_dir, pipeline.embedder.artifact)
    histograms = score_all_pairs(faces, cohort, progress)
    return calibration_from(
        histograms, faces, pipeline.settings.flip_average, cohort.cohort if cohort is not None else None
    )
