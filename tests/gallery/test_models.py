"""Collections bound to different models in one gallery: each searched in its own space, never mixed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.decision.cohort import Cohort
from app.gallery.errors import (
    CollectionExists,
    CollectionNotFound,
    GalleryModelMismatch,
    InvalidEmbedding,
    ModelNotServed,
)
from app.gallery.gallery import EmbeddingSpace, Gallery
from app.gallery.store import Enrollment, NewFace
from tests.gallery.vectors import DIM, faces_of, identities, unit

STOCK, OTHER, OTHER_DIM = "stock-1", "other-2", 512


def _other_vectors(count: int, seed: int = 0) -> np.ndarray:
    return unit(np.random.default_rng(seed).standard_normal((count, OTHER_DIM)))


def _gallery(path: Path, cohort: Cohort | None = None) -> Gallery:
    return Gallery(path, STOCK, DIM, other_models={OTHER: EmbeddingSpace(OTHER_DIM, cohort)})


def test_each_collection_is_searched_with_its_own_models_vectors(tmp_path: Path) -> None:
    gallery = _gallery(tmp_path)
    gallery.create_collection("wide", OTHER)
    people = _other_vectors(4)
    gallery.enroll("wide", [Enrollment(f"p{i}", [NewFace(v)]) for i, v in enumerate(people)], model_id=OTHER)
    gallery.enroll("default", [Enrollment("ann", [NewFace(faces_of(identities(1))[0])])])
    (ranking,) = gallery.rank("wide", people[2:3], top_k=1, model_id=OTHER)
    assert ranking.candidates[0].subject_id == "p2"
    assert ranking.faces_searched == 4
    assert gallery.model_of("wide") == OTHER and gallery.model_of("default") == STOCK
    assert gallery.model_of("not-yet") == STOCK  # a collection an enrollment would create


def test_vectors_of_another_model_are_refused(tmp_path: Path) -> None:
    gallery = _gallery(tmp_path)
    gallery.create_collection("wide", OTHER)
    with pytest.raises(GalleryModelMismatch):  # the default model's faces into the other's collection
        gallery.enroll("wide", [Enrollment("ann", [NewFace(faces_of(identities(1))[0])])])
    with pytest.raises(InvalidEmbedding):  # 128 values where the model makes 512
        gallery.enroll("wide", [Enrollment("ann", [NewFace(faces_of(identities(1))[0])])], model_id=OTHER)
    with pytest.raises(GalleryModelMismatch):
        gallery.rank("wide", _other_vectors(1), model_id=STOCK)
    with pytest.raises(ModelNotServed):
        gallery.create_collection("nobody", "absent-model")
    assert gallery.index_size("wide") == 0


def test_a_gallery_with_a_collection_of_a_model_not_served_is_not_opened(tmp_path: Path) -> None:
    gallery = _gallery(tmp_path)
    gallery.create_collection("wide", OTHER)
    gallery.store.close()
    with pytest.raises(GalleryModelMismatch, match="'wide' by other-2") as refused:
        Gallery(tmp_path, STOCK, DIM)
    assert "reembed" in str(refused.value)


def test_a_swap_exchanges_two_collections_names_and_their_faces_follow(tmp_path: Path) -> None:
    gallery = _gallery(tmp_path)
    gallery.create_collection("staff", STOCK)
    gallery.create_collection("staff@other", OTHER)
    gallery.enroll("staff", [Enrollment("ann", [NewFace(v) for v in faces_of(identities(2))])])
    gallery.enroll("staff@other", [Enrollment("bob", [NewFace(_other_vectors(1)[0])])], model_id=OTHER)
    gallery.rename_collections({"staff": "staff@other", "staff@other": "staff"})
    assert gallery.model_of("staff") == OTHER
    assert [s.external_id for s in gallery.subjects("staff")[0]] == ["bob"]
    assert (gallery.index_size("staff"), gallery.index_size("staff@other")) == (1, 2)  # indexes follow
    names = [c.name for c, _ in gallery.collections()]
    with pytest.raises(CollectionExists):
        gallery.rename_collections({"staff": "default"})
    with pytest.raises(CollectionNotFound):
        gallery.rename_collections({"staff": "elsewhere", "absent": "staff"})
    assert [c.name for c, _ in gallery.collections()] == names  # a refused rename changes no name
    gallery.store.close()
    reopened = _gallery(tmp_path)  # the index snapshots and SQLite agree after the renames
    (ranking,) = reopened.rank("staff", _other_vectors(1), top_k=1, model_id=OTHER)
    assert ranking.candidates[0].subject_id == "bob"


def test_each_models_faces_get_statistics_of_its_own_cohort(tmp_path: Path) -> None:
    cohort = Cohort(_other_vectors(300, seed=9), top_k=20, sha256="other-cohort")
    gallery = _gallery(tmp_path, cohort)
    gallery.create_collection("wide", OTHER)
    faces = _other_vectors(3, seed=4)
    gallery.enroll("wide", [Enrollment("ann", [NewFace(v) for v in faces])], model_id=OTHER)
    (normalised,) = gallery.rank("wide", faces[:1], top_k=1, normalise=True, model_id=OTHER)
    (raw,) = gallery.rank("wide", faces[:1], top_k=1, model_id=OTHER)
    assert normalised.candidates[0].score != pytest.approx(raw.candidates[0].score)
    with pytest.raises(ValueError, match="cohort"):  # the default model has none here
        gallery.rank("default", faces_of(identities(1)), normalise=True)


def test_statistics_are_recomputed_when_a_models_cohort_changes_and_changes_back(tmp_path: Path) -> None:
    first = Cohort(identities(300, seed=9), top_k=20, sha256="first")
    second = Cohort(identities(300, seed=10), top_k=20, sha256="second")
    face = faces_of(identities(1))
    older = Gallery(tmp_path, STOCK, DIM, cohort=first)
    older.enroll("default", [Enrollment("ann", [NewFace(face[0])])])
    older.store.set_cohort_stats(first.identity, [], "cohort")  # where a gallery of one model kept it
    older.store.close()
    for cohort in (second, first):  # back to the first: its statistics must come back too
        gallery = Gallery(tmp_path, STOCK, DIM, cohort=cohort)
        (stored,) = gallery.store.owners(list(gallery.index_ids("default"))).values()
        mean, sd = cohort.stats(face)
        assert (stored.cohort_mean, stored.cohort_sd) == pytest.approx((float(mean[0]), float(sd[0])))
        gallery.store.close()
