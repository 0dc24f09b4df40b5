"""The gallery: enroll, identify, delete, restart, model checks and concurrent searches."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from app.face.pipeline import FacePipeline
from app.gallery.errors import CollectionNotFound, GalleryModelMismatch, InvalidEmbedding, SubjectNotFound
from app.gallery.gallery import Gallery
from app.gallery.index import IndexSettings
from app.gallery.store import Enrollment, NewFace
from tests.conftest import photo
from tests.gallery.vectors import DIM, faces_of, identities

MODEL = "model-a"


def _gallery(path: Path, model: str = MODEL, **settings: int) -> Gallery:
    return Gallery(path, model, DIM, IndexSettings(**settings))  # type: ignore[arg-type]


def _enroll_synthetic(gallery: Gallery, centres: np.ndarray, collection: str = "default") -> list[list[int]]:
    faces = faces_of(centres, seed=2)
    return gallery.enroll(collection, [Enrollment(f"s{i}", [NewFace(v)]) for i, v in enumerate(faces)])


def test_real_people_are_identified_from_other_photos(
    pipeline: FacePipeline, photos: list[Path], tmp_path: Path
) -> None:
    gallery = Gallery(tmp_path, pipeline.model_id, pipeline.embedder.embedding_size)
    people = {"obama": "obama.jpg", "biden": "biden.jpg", "hanks": "Tom_Hanks_54745.png"}
    for subject, name in people.items():
        result = pipeline.single_face(photo(photos, name).read_bytes(), allow_largest=True)
        gallery.enroll("default", [Enrollment(subject, [NewFace(result.face.embedding)])])
    threshold = pipeline.embedder.artifact.threshold
    assert threshold is not None
    probe = pipeline.largest_faces([photo(photos, "obama2.jpg").read_bytes()])[0].face.embedding
    (candidates,) = gallery.identify("default", probe[None], top_k=3, threshold=threshold.similarity)
    assert [c.subject_id for c in candidates] == ["obama"]


def test_a_subject_with_several_faces_is_one_candidate(tmp_path: Path) -> None:
    gallery = _gallery(tmp_path)
    centre = identities(1)
    near = faces_of(np.repeat(centre, 3, axis=0), seed=5)
    gallery.enroll("default", [Enrollment("ann", [NewFace(v) for v in near])])
    _enroll_synthetic(gallery, identities(20, seed=9))
    (candidates,) = gallery.identify("default", centre, top_k=5)
    assert candidates[0].subject_id == "ann"
    assert [c.subject_id for c in candidates].count("ann") == 1
    assert (
        candidates[0].similarity
        == max(float(v @ centre[0]) for v in near)
        == pytest.approx(candidates[0].similarity)
    )


def test_deletes_reach_the_index(tmp_path: Path) -> None:
    gallery = _gallery(tmp_path)
    centres = identities(10)
    added = _enroll_synthetic(gallery, centres)
    assert len(gallery.delete_subject("default", "s3")) == 1
    gallery.delete_face("default", "s4", added[4][0])
    results = gallery.identify("default", centres[[3, 4]], top_k=10)
    assert all(c.subject_id not in {"s3", "s4"} for row in results for c in row)
    assert gallery.index_size("default") == 8
    with pytest.raises(SubjectNotFound):
        gallery.delete_subject("default", "s3")
    assert len(gallery.delete_collection("default")) == 8
    assert gallery.index_size("default") == 0  # the default collection comes back, empty
    with pytest.raises(CollectionNotFound):
        gallery.identify("elsewhere", centres[:1])


def test_a_restart_keeps_everything(tmp_path: Path) -> None:
    centres = identities(300)
    first = _gallery(tmp_path)
    added = _enroll_synthetic(first, centres)
    first.delete_subject("default", "s0")
    again = _gallery(tmp_path)
    assert again.startup.rebuilt == {"default": 299}
    assert sorted(again.index_ids("default").tolist()) == sorted(i for group in added[1:] for i in group)
    (candidates,) = again.identify("default", centres[7:8], top_k=1)
    assert candidates[0].subject_id == "s7"


def test_snapshots_are_used_only_while_they_match_sqlite(tmp_path: Path) -> None:
    centres = identities(200)
    gallery = _gallery(tmp_path)
    _enroll_synthetic(gallery, centres)
    gallery.save_snapshots()
    assert _gallery(tmp_path).startup.loaded == {"default": 200}
    # An enrollment after the snapshot (say, before a crash) makes the snapshot stale: rebuild.
    _gallery(tmp_path).enroll("default", [Enrollment("late", [NewFace(faces_of(identities(1, seed=7))[0])])])
    reopened = _gallery(tmp_path)
    assert reopened.startup.rebuilt == {"default": 201}
    assert reopened.identify("default", identities(1, seed=7), top_k=1)[0][0].subject_id == "late"


def test_another_models_gallery_is_refused(tmp_path: Path) -> None:
    _enroll_synthetic(_gallery(tmp_path), identities(3))
    with pytest.raises(GalleryModelMismatch, match="enroll their subjects again"):
        _gallery(tmp_path, model="model-b")


def test_vectors_that_are_not_unit_are_refused(tmp_path: Path) -> None:
    gallery = _gallery(tmp_path)
    with pytest.raises(InvalidEmbedding):
        gallery.enroll("default", [Enrollment("x", [NewFace(np.ones(DIM, np.float32))])])
    with pytest.raises(InvalidEmbedding):
        gallery.identify("default", np.full((1, DIM), np.nan, np.float32))


def test_searches_during_enrollments_never_see_half_a_face(tmp_path: Path) -> None:
    gallery = _gallery(tmp_path, exact_limit=400)
    _enroll_synthetic(gallery, identities(100, seed=1))
    probes = identities(16, seed=2)
    errors: list[BaseException] = []
    done = threading.Event()

    def search() -> None:
        while not done.is_set():
            try:
                for row in gallery.identify("default", probes, top_k=3):
                    assert all(c.subject_id for c in row)
            except BaseException as exc:  # collected and re-raised in the test thread
                errors.append(exc)
                return

    threads = [threading.Thread(target=search) for _ in range(3)]
    for thread in threads:
        thread.start()
    for batch in range(8):  # grows past exact_limit: the index is rebuilt as IVF mid-way
        centres = identities(60, seed=100 + batch)
        gallery.enroll("default", [Enrollment(f"b{batch}-{i}", [NewFace(v)]) for i, v in enumerate(centres)])
    done.set()
    for thread in threads:
        thread.join()
    assert not errors, errors[0]
    assert gallery.index_size("default") == 580
