"""Cohort statistics in the gallery: stored at enrollment, filled in for older files, used by rank."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from app.decision.cohort import Cohort, snorm
from app.gallery.errors import GalleryError
from app.gallery.gallery import Gallery
from app.gallery.sqlite import _SCHEMA, DATABASE_NAME, SCHEMA_VERSION, SQLiteStore
from app.gallery.store import Enrollment, NewFace
from tests.gallery.vectors import DIM, faces_of, identities

MODEL = "model-a"


def _cohort(sha: str = "cohort-1", seed: int = 5) -> Cohort:
    return Cohort(identities(300, seed=seed), top_k=20, sha256=sha)


def _stored_stats(data: Path) -> dict[int, tuple[float, float]]:
    with sqlite3.connect(data / DATABASE_NAME) as db:
        return {r[0]: (r[1], r[2]) for r in db.execute("SELECT id, cohort_mean, cohort_sd FROM faces")}


def test_enrollment_stores_each_faces_cohort_statistics(tmp_path: Path) -> None:
    cohort = _cohort()
    faces = faces_of(identities(5))
    gallery = Gallery(tmp_path, MODEL, DIM, cohort=cohort)
    (ids,) = gallery.enroll("default", [Enrollment("ann", [NewFace(v) for v in faces])])
    means, sds = cohort.stats(faces)
    stored = _stored_stats(tmp_path)
    assert [stored[i][0] for i in ids] == pytest.approx(means.tolist())
    assert [stored[i][1] for i in ids] == pytest.approx(sds.tolist())


def test_an_older_gallery_file_is_migrated_and_its_faces_get_statistics(tmp_path: Path) -> None:
    # A gallery written before cohort statistics existed: the first schema, user_version 0.
    with sqlite3.connect(tmp_path / DATABASE_NAME) as db:
        db.executescript(_SCHEMA)
        db.execute(
            "INSERT INTO collections (name, model_id, created_at) VALUES ('default', ?, 'then')", (MODEL,)
        )
        db.execute("INSERT INTO subjects (collection_id, external_id, created_at) VALUES (1, 'old', 'then')")
        vector = faces_of(identities(1))[0]
        db.execute(
            "INSERT INTO faces (subject_id, collection_id, model_id, embedding, created_at)"
            " VALUES (1, 1, ?, ?, 'then')",
            (MODEL, vector.astype("<f4").tobytes()),
        )
    SQLiteStore(tmp_path).close()
    with sqlite3.connect(tmp_path / DATABASE_NAME) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert _stored_stats(tmp_path) == {1: (None, None)}
    first = _cohort()
    Gallery(tmp_path, MODEL, DIM, cohort=first).store.close()
    mean, sd = first.stats(vector[None])
    assert _stored_stats(tmp_path)[1] == pytest.approx((float(mean[0]), float(sd[0])))
    # Another cohort: every face's statistics are computed again for it.
    second = _cohort("cohort-2", seed=9)
    Gallery(tmp_path, MODEL, DIM, cohort=second).store.close()
    mean, sd = second.stats(vector[None])
    assert _stored_stats(tmp_path)[1] == pytest.approx((float(mean[0]), float(sd[0])))


def test_a_newer_gallery_file_is_refused(tmp_path: Path) -> None:
    SQLiteStore(tmp_path).close()
    with sqlite3.connect(tmp_path / DATABASE_NAME) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(GalleryError, match="newer than this service"):
        SQLiteStore(tmp_path)


def _enrolled(path: Path, cohort: Cohort, people: int, probed: int) -> tuple[Gallery, np.ndarray, np.ndarray]:
    """A gallery of synthetic people with the cohort, their enrolled faces, and a new face of one of them."""
    centres = identities(people, seed=3)
    enrolled = faces_of(centres, seed=4)
    gallery = Gallery(path, MODEL, DIM, cohort=cohort)
    gallery.enroll("default", [Enrollment(f"s{i}", [NewFace(v)]) for i, v in enumerate(enrolled)])
    return gallery, enrolled, faces_of(centres[probed : probed + 1], seed=8)


def test_normalised_ranking_scores_are_s_norm_and_ordered_by_them(tmp_path: Path) -> None:
    cohort = _cohort()
    gallery, enrolled, probe = _enrolled(tmp_path, cohort, people=40, probed=7)
    (ranking,) = gallery.rank("default", probe, top_k=5, normalise=True)
    assert ranking.faces_searched == 40 and ranking.candidates[0].subject_id == "s7"
    probe_mean, probe_sd = cohort.stats(probe)
    face_mean, face_sd = cohort.stats(enrolled)
    sims = (enrolled @ probe[0]).astype(np.float32)
    expected = snorm(sims, probe_mean[0], probe_sd[0], face_mean, face_sd)
    for candidate in ranking.candidates:
        row = int(candidate.subject_id[1:])
        assert candidate.similarity == pytest.approx(float(sims[row]), abs=1e-5)
        assert candidate.score == pytest.approx(float(expected[row]), abs=1e-4)
    scores = [c.score for c in ranking.candidates]
    assert scores == sorted(scores, reverse=True)
    # Without normalisation the score is the similarity itself.
    (raw,) = gallery.rank("default", probe, top_k=5)
    assert all(c.score == c.similarity for c in raw.candidates)


def test_a_cohorts_cosine_weight_keeps_part_of_the_raw_similarity(tmp_path: Path) -> None:
    plain, weighted = (
        _cohort(),
        Cohort(identities(300, seed=5), top_k=20, sha256="cohort-1", cosine_weight=100.0),
    )
    assert plain.identity != weighted.identity  # stored statistics and calibrations tell them apart
    gallery, enrolled, probe = _enrolled(tmp_path, weighted, people=10, probed=2)
    (ranking,) = gallery.rank("default", probe, top_k=3, normalise=True)
    probe_mean, probe_sd = weighted.stats(probe)
    face_mean, face_sd = weighted.stats(enrolled)
    for candidate in ranking.candidates:
        row = int(candidate.subject_id[1:])
        plain_score = snorm(
            np.float32(candidate.similarity), probe_mean[0], probe_sd[0], face_mean[row], face_sd[row]
        )
        assert candidate.score == pytest.approx(float(plain_score) + 100.0 * candidate.similarity, abs=1e-3)
