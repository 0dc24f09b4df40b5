"""`faceverify gallery reembed`: a collection moved to another model from its kept thumbnails,
resumed, swapped live; refused where thumbnails were not kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.config import Settings
from app.face.pipeline import Upload
from app.gallery.store import Enrollment, NewFace
from app.local import LocalService
from faceverify.cli import main
from faceverify.reembed import ReembedRefused, reembed
from tests.conftest import ImportedModels, photo

PEOPLE = (("obama", "obama.jpg"), ("obama", "obama2.jpg"), ("biden", "biden.jpg"))


def _enroll(settings: Settings, collection: str, model: str, photos: list[Path], thumbnails: bool) -> None:
    with LocalService(settings) as local:
        local.gallery.create_collection(collection, model)
        pipeline = local.pipeline(model)
        for person, name in PEOPLE:
            data = photo(photos, name).read_bytes()
            (found,) = pipeline.enrollment_faces([Upload("images[0]", data)], thumbnails=thumbnails)
            face = NewFace.from_photo(
                found.face.embedding,
                found.face.detection.box,
                found.face.detection.score,
                data,
                found.thumbnail,
            )
            enrollment = Enrollment(person, [face], person.title(), {"team": "blue"})
            local.gallery.enroll(collection, [enrollment], create=False, model_id=model)


def _reembed(models: ImportedModels, data: Path, *extra: str) -> int:
    return main(
        ["gallery", "reembed", "--collection", "staff", "--model", models.stock, "--data-dir", str(data),
         "--models", str(models.folder), *extra]
    )  # fmt: skip


def test_a_collection_moves_to_another_model_resumes_and_swaps(
    imported_models: ImportedModels, photos: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    settings = Settings(data_dir=data, models_dir=imported_models.folder, store_face_thumbnails=True)
    # Enrolled by the ArcFace-shaped model, moved to the stock one: its answers can be checked.
    _enroll(settings, "staff", imported_models.arcface, photos, thumbnails=True)
    with LocalService(settings) as local:
        before = {
            s.external_id: local.gallery.faces("staff", s.external_id)
            for s in local.gallery.subjects("staff")[0]
        }

    assert _reembed(imported_models, data) == 0
    first = capsys.readouterr().out
    target = f"staff@{imported_models.stock}"
    assert f"{target!r}" in first and "3 faces embedded now, 0 by an earlier run" in first
    assert _reembed(imported_models, data, "--swap") == 0  # resumes: nothing is embedded twice
    second = capsys.readouterr().out
    assert "0 faces embedded now, 3 by an earlier run" in second and "swapped" in second

    with LocalService(settings) as local:
        gallery = local.gallery
        assert gallery.model_of("staff") == imported_models.stock
        assert gallery.model_of(target) == imported_models.arcface  # the old one, kept
        subjects = {s.external_id: s for s in gallery.subjects("staff")[0]}
        assert {(s.name, s.metadata["team"]) for s in subjects.values()} == {
            ("Obama", "blue"),
            ("Biden", "blue"),
        }
        for person, faces in before.items():
            moved = gallery.faces("staff", person)
            assert [(f.box, f.image_sha256) for f in moved] == [(f.box, f.image_sha256) for f in faces]
            assert all(f.model_id == imported_models.stock for f in moved)
        # The stock model now identifies a photo that was never enrolled, from the moved faces.
        stock = local.pipeline(imported_models.stock)
        (probe,) = stock.chosen_faces([Upload("image", photo(photos, "obama3.jpg").read_bytes())])
        (ranking,) = gallery.rank(
            "staff", probe.face.embedding[None], top_k=2, model_id=imported_models.stock
        )
        assert ranking.candidates[0].subject_id == "obama" and ranking.candidates[0].similarity > 0.93
        # A face embedded from its thumbnail is close to the same face embedded from its photo.
        (direct,) = stock.chosen_faces([Upload("image", photo(photos, "biden.jpg").read_bytes())])
        stored = gallery.subject_embeddings("staff", "biden")
        assert float(stored[0] @ direct.face.embedding) > 0.95


def test_without_kept_thumbnails_the_move_is_refused_before_anything_is_written(
    imported_models: ImportedModels, photos: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    settings = Settings(data_dir=data, models_dir=imported_models.folder)
    _enroll(settings, "staff", imported_models.arcface, photos, thumbnails=False)
    assert _reembed(imported_models, data, "--swap") == 1
    error = capsys.readouterr().err
    assert "3 of the 3 faces of 'staff' have no kept thumbnail" in error
    assert "FV_STORE_FACE_THUMBNAILS" in error and "Enroll those" in error
    with LocalService(settings) as local:
        assert sorted(c.name for c, _ in local.gallery.collections()) == ["default", "staff"]
        assert local.gallery.model_of("staff") == imported_models.arcface
        assert np.asarray(local.gallery.index_ids("staff")).size == 3


class _Stop(Exception):
    """Cuts a run short, as a crash or Ctrl-C would."""


def test_a_run_cut_short_resumes_and_what_the_source_lost_meanwhile_is_dropped(
    imported_models: ImportedModels, photos: list[Path], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    settings = Settings(data_dir=data, models_dir=imported_models.folder, store_face_thumbnails=True)
    _enroll(settings, "staff", imported_models.arcface, photos, thumbnails=True)

    def stop_after_the_first_subject(done: int, total: int) -> None:
        if done:
            raise _Stop

    with LocalService(settings) as local, pytest.raises(_Stop):
        reembed(local, "staff", imported_models.stock, progress=stop_after_the_first_subject)
    with LocalService(settings) as local:
        target = f"staff@{imported_models.stock}"
        assert [s.external_id for s in local.gallery.subjects(target)[0]] == ["obama"]  # one subject in
        # Served meanwhile: one of obama's photos is deleted from the source, biden renamed.
        first = local.gallery.faces("staff", "obama")[0]
        local.gallery.delete_face("staff", "obama", first.id)
        local.gallery.update_subject("staff", "biden", name="Joe")
        report = reembed(local, "staff", imported_models.stock, swap=True)
        assert (report.embedded, report.already, report.dropped, report.swapped) == (1, 1, 1, True)
        assert [f.image_sha256 for f in local.gallery.faces("staff", "obama")] == [
            f.image_sha256 for f in local.gallery.faces(target, "obama")
        ]
        assert local.gallery.subject("staff", "biden").name == "Joe"
        assert local.gallery.index_size("staff") == 2


def test_faces_moved_without_thumbnails_by_hand_let_the_swap_happen(
    imported_models: ImportedModels, photos: list[Path], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    settings = Settings(data_dir=data, models_dir=imported_models.folder)
    _enroll(settings, "staff", imported_models.arcface, photos, thumbnails=False)
    with LocalService(settings) as local:
        with pytest.raises(ReembedRefused, match="not swapped: 3 faces"):
            reembed(local, "staff", imported_models.stock, skip_missing=True, swap=True)
        # Enrolled into the new collection from the photos, as the refusal says to.
        stock = local.pipeline(imported_models.stock)
        for person, name in PEOPLE:
            data_ = photo(photos, name).read_bytes()
            (found,) = stock.enrollment_faces([Upload("images[0]", data_)])
            face = NewFace.from_photo(
                found.face.embedding, found.face.detection.box, found.face.detection.score, data_
            )
            local.gallery.enroll(f"staff@{imported_models.stock}", [Enrollment(person, [face])], create=False,
                                 model_id=imported_models.stock)  # fmt: skip
        report = reembed(local, "staff", imported_models.stock, skip_missing=True, swap=True)
        assert (report.embedded, report.already, report.swapped) == (0, 3, True)
        assert local.gallery.model_of("staff") == imported_models.stock
