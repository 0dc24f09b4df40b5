"""`faceverify gallery reembed`: a collection's faces embedded again by another model, from the
thumbnails kept at enrollment, into a new collection bound to that model; a swap of the two names
then makes it the one requests use."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from app.face.choice import FaceChoice
from app.face.errors import FaceError
from app.face.pipeline import FacePipeline, Upload
from app.gallery.errors import SubjectNotFound, ThumbnailNotStored
from app.gallery.gallery import Gallery
from app.gallery.store import Collection, Enrollment, NewFace, Subject
from app.local import LocalService

PAGE = 200


class ReembedRefused(Exception):
    """The move cannot start (or the swap cannot be made) as asked; nothing was written."""


@dataclass(frozen=True)
class Refusal:
    """A kept face the new model could not embed, and why."""

    subject_id: str
    face_id: int
    code: str
    message: str


@dataclass
class ReembedReport:
    """What a run did: faces embedded now, found done by an earlier run, refused and left without a
    thumbnail; and whether the names were swapped."""

    source: str
    target: str
    model_id: str
    faces: int = 0
    embedded: int = 0
    already: int = 0
    without_thumbnail: int = 0
    refused: list[Refusal] = field(default_factory=list)
    swapped: bool = False

    @property
    def complete(self) -> bool:
        """Every face of the source is in the target."""
        return self.embedded + self.already == self.faces


def default_target(source: str, model_name: str) -> str:
    """The new collection's name when none is given: the source's, then the model's."""
    return f"{source}@{model_name}"


def _target_collection(gallery: Gallery, name: str, model_id: str) -> Collection:
    """The collection to fill: one an earlier run began (bound to the same model), or a new one."""
    existing = {c.name: c for c, _ in gallery.collections()}
    if name not in existing:
        return gallery.create_collection(name, model_id)
    if existing[name].model_id != model_id:
        raise ReembedRefused(
            f"collection {name!r} exists and is bound to {existing[name].model_id}, not {model_id}: "
            "name another target (--into)"
        )
    return existing[name]


def _subjects(gallery: Gallery, collection: str) -> list[Subject]:
    subjects, total = gallery.subjects(collection, 0, PAGE)
    while len(subjects) < total:
        page, total = gallery.subjects(collection, len(subjects), PAGE)
        if not page:
            break
        subjects.extend(page)
    return subjects


def reembed(
    local: LocalService,
    source: str,
    model: str,
    target: str | None = None,
    skip_missing: bool = False,
    swap: bool = False,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> ReembedReport:
    """Embed every kept face of `source` with `model` into `target` (resuming a run cut short), and
    with `swap`, once every face is there, exchange the two collections' names."""
    gallery = local.gallery
    collection = gallery.collection(source)
    pipeline = local.pipeline(model)
    artifact = pipeline.embedder.artifact
    if collection.model_id == artifact.id:
        raise ReembedRefused(f"collection {source!r} is bound to {artifact.id} already")
    total_faces = sum(len(s.face_ids) for s in _subjects(gallery, source))
    missing = gallery.store.faces_without_thumbnails(collection)
    if missing and not skip_missing:
        raise ReembedRefused(
            f"{missing:,} of the {total_faces:,} faces of {source!r} have no kept thumbnail (they were "
            "enrolled with FV_STORE_FACE_THUMBNAILS=false): they cannot be embedded again. Enroll those "
            "subjects "
            "again from their photos, or pass --skip-missing to move the others and enroll the rest later"
        )
    name = target or default_target(source, artifact.name or artifact.id)
    into = _target_collection(gallery, name, artifact.id)
    report = ReembedReport(source, into.name, artifact.id, faces=total_faces, without_thumbnail=missing)
    done = 0
    progress(done, total_faces)
    for subject in _subjects(gallery, source):
        _move_subject(gallery, pipeline, source, into.name, subject, report)
        done += len(subject.face_ids)
        progress(done, total_faces)
    if swap:
        if not report.complete:
            raise ReembedRefused(
                f"not swapped: {report.faces - report.embedded - report.already:,} faces of {source!r} are "
                f"not in {into.name!r} ({len(report.refused)} refused, {missing} without a thumbnail)"
            )
        gallery.rename_collections({source: into.name, into.name: source})
        report.swapped = True
    return report


def _done_photos(gallery: Gallery, target: str, subject_id: str) -> set[str]:
    """The photos (by sha256) a subject has in the target already, from an earlier run."""
    try:
        return {f.image_sha256 for f in gallery.faces(target, subject_id) if f.image_sha256}
    except SubjectNotFound:  # not in the target yet
        return set()


def _move_subject(
    gallery: Gallery,
    pipeline: FacePipeline,
    source: str,
    target: str,
    subject: Subject,
    report: ReembedReport,
) -> None:
    """Embed one subject's kept faces that the target lacks, and store them in one transaction."""
    done = _done_photos(gallery, target, subject.external_id)
    faces = []
    for record in gallery.faces(source, subject.external_id):
        try:
            jpeg = gallery.thumbnail(source, subject.external_id, record.id)
        except ThumbnailNotStored:
            continue
        # A face enrolled without its photo's hash is known by its thumbnail's.
        photo = record.image_sha256 or hashlib.sha256(jpeg).hexdigest()
        if photo in done:
            report.already += 1
            continue
        try:
            # The thumbnail is the face aligned with a margin: the face nearest its centre is the one.
            (found,) = pipeline.chosen_faces([Upload("thumbnail", jpeg, FaceChoice("central"))])
        except FaceError as error:
            report.refused.append(Refusal(subject.external_id, record.id, error.code, str(error)))
            continue
        # The box and score stay those of the face in its original photo.
        faces.append(NewFace(found.face.embedding, record.box, record.score, photo, thumbnail=jpeg))
    if faces:
        enrollment = Enrollment(subject.external_id, faces, subject.name, subject.metadata)
        (ids,) = gallery.enroll(target, [enrollment], create=False, model_id=pipeline.model_id)
        report.embedded += sum(not repeated for repeated in ids.repeated)
        report.already += sum(ids.repeated)
