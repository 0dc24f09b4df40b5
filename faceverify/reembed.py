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
from app.gallery.store import Collection, Enrollment, FaceRecord, NewFace, Subject
from app.local import LocalService

PAGE = 200
MAX_COLLECTION_NAME = 128  # what the API takes


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
    dropped: int = 0  # faces an earlier run stored whose subject or photo the source has lost since
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
    """Embed every kept face of `source` with `model` into `target` (resuming a run cut short, and
    dropping from the target what the source lost since), and with `swap`, once every face is there,
    exchange the two collections' names."""
    gallery = local.gallery
    collection = gallery.collection(source)
    pipeline = local.pipeline(model)
    artifact = pipeline.embedder.artifact
    if collection.model_id == artifact.id:
        raise ReembedRefused(f"collection {source!r} is bound to {artifact.id} already")
    subjects = _subjects(gallery, source)
    total_faces = sum(len(s.face_ids) for s in subjects)
    missing = gallery.store.faces_without_thumbnails(collection)
    if missing and not skip_missing:
        raise ReembedRefused(
            f"{missing:,} of the {total_faces:,} faces of {source!r} have no kept thumbnail (they were "
            "enrolled with FV_STORE_FACE_THUMBNAILS=false): they cannot be embedded again. Enroll those "
            "subjects again from their photos, or pass --skip-missing to move the others and enroll "
            "the rest into the new collection yourself"
        )
    name = _checked_target(target or default_target(source, artifact.name or artifact.id))
    into = _target_collection(gallery, name, artifact.id)
    report = ReembedReport(source, into.name, artifact.id, faces=total_faces, without_thumbnail=missing)
    done = 0
    progress(done, total_faces)
    photos_of: dict[str, set[str]] = {}
    for subject in subjects:
        photos_of[subject.external_id] = _move_subject(gallery, pipeline, source, into.name, subject, report)
        done += len(subject.face_ids)
        progress(done, total_faces)
    # The source is served between runs: what was deleted there since an earlier run goes here too.
    report.dropped = _drop_what_the_source_lost(gallery, into.name, photos_of)
    if swap:
        if not report.complete:
            raise ReembedRefused(
                f"not swapped: {report.faces - report.embedded - report.already:,} faces of {source!r} are "
                f"not in {into.name!r} ({len(report.refused)} refused, {missing} without a thumbnail); "
                "enroll them there, or delete them from the source, and run again"
            )
        gallery.rename_collections({source: into.name, into.name: source})
        report.swapped = True
    return report


def _checked_target(name: str) -> str:
    """A target name the API can address (as a collection it creates must be)."""
    from app.api.errors import ApiError
    from app.api.fields import checked_id

    if len(name) > MAX_COLLECTION_NAME:
        raise ReembedRefused(f"the new collection's name {name!r} is too long: name it with --into")
    try:
        return checked_id(name, "into")
    except ApiError as error:
        raise ReembedRefused(f"the new collection's name {name!r} {error}") from None


def _target_faces(gallery: Gallery, target: str, subject_id: str) -> list[FaceRecord]:
    """A subject's faces in the target, from an earlier run (none when it is not there yet)."""
    try:
        return gallery.faces(target, subject_id)
    except SubjectNotFound:
        return []


def _move_subject(
    gallery: Gallery,
    pipeline: FacePipeline,
    source: str,
    target: str,
    subject: Subject,
    report: ReembedReport,
) -> set[str]:
    """Embed one subject's kept faces that the target lacks and store them in one transaction (name and
    metadata as the source has them now); the subject's photos (by sha256) in the source."""
    done = {f.image_sha256 for f in _target_faces(gallery, target, subject.external_id) if f.image_sha256}
    photos, faces = set(), []
    for record in gallery.faces(source, subject.external_id):
        jpeg = None
        if record.image_sha256 is None:  # known by its thumbnail's hash instead
            jpeg = _thumbnail(gallery, source, subject.external_id, record.id)
        photo = record.image_sha256 or (hashlib.sha256(jpeg).hexdigest() if jpeg else None)
        if photo is None:
            continue
        photos.add(photo)
        if photo in done:  # by an earlier run, or enrolled there since
            report.already += 1
            continue
        jpeg = jpeg or _thumbnail(gallery, source, subject.external_id, record.id)
        if jpeg is None:
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
    elif done:
        gallery.update_subject(
            target, subject.external_id, name=subject.name, clear_name=subject.name is None,
            metadata=subject.metadata, replace_metadata=True,
        )  # fmt: skip
    return photos


def _thumbnail(gallery: Gallery, collection: str, subject_id: str, face_id: int) -> bytes | None:
    try:
        return gallery.thumbnail(collection, subject_id, face_id)
    except ThumbnailNotStored:
        return None


def _drop_what_the_source_lost(gallery: Gallery, target: str, photos_of: dict[str, set[str]]) -> int:
    """Delete from the target the subjects and faces the source no longer has; how many faces went."""
    dropped = 0
    for subject in _subjects(gallery, target):
        kept = photos_of.get(subject.external_id)
        if kept is None:
            dropped += len(gallery.delete_subject(target, subject.external_id))
            continue
        for face in gallery.faces(target, subject.external_id):
            if face.image_sha256 not in kept:
                gallery.delete_face(target, subject.external_id, face.id)
                dropped += 1
    return dropped
