"""Enrolling a folder of people (one subfolder per person, named by its subject id), photo by photo,
against a running service or in-process on a data directory; a journal makes a rerun resume."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Protocol

from faceverify.client import ServiceClient, b64

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
Status = Literal["stored", "duplicate", "refused"]


@dataclass(frozen=True)
class Outcome:
    """What became of one photo."""

    person: str
    photo: str
    status: Status
    face_id: int | None = None
    code: str | None = None  # the error code of a refusal
    message: str | None = None


class Target(Protocol):
    """Where faces are enrolled: a service or a data directory."""

    def enroll(self, person: str, photo: Path) -> Outcome:
        """Enroll the photo's face for the person."""
        ...


def people_of(folder: Path) -> list[tuple[str, list[Path]]]:
    """Each subfolder (a person) with its photos, both sorted by name."""
    people = []
    for person in sorted(p for p in folder.iterdir() if p.is_dir()):
        photos = sorted(p for p in person.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
        if photos:
            people.append((person.name, photos))
    return people


class RemoteTarget:
    """Enrolls through POST /enroll of a running service (JSON body, one photo a request)."""

    def __init__(self, client: ServiceClient, collection: str, create: bool) -> None:
        self.client, self.collection, self.create = client, collection, create

    def enroll(self, person: str, photo: Path) -> Outcome:
        body = {
            "subject_id": person, "images": [b64(photo.read_bytes())],
            "collection": self.collection, "create_collection": self.create,
        }  # fmt: skip
        answer = self.client.post("/enroll", body)
        if answer.ok:
            face = answer.body["faces"][0]
            return Outcome(
                person, photo.name, "duplicate" if face["duplicate"] else "stored", face["face_id"]
            )
        if answer.status in (401, 403, 404, 409, 503, 507):  # the run cannot go on: say so, stop
            raise RunStopped(f"{answer.status} {answer.error.get('code')}: {answer.error.get('message')}")
        return Outcome(
            person, photo.name, "refused", None, answer.error.get("code"), answer.error.get("message")
        )


class RunStopped(Exception):
    """An answer that no other photo would get past (a wrong key, a full disk, a busy service)."""


class LocalTarget:
    """Enrolls in-process into a data directory, with the service's pipeline and gallery (and its lock:
    not while a server runs on it)."""

    def __init__(self, data_dir: Path, models_dir: Path, collection: str, create: bool) -> None:
        from app.api.fields import checked_id
        from app.config import Settings
        from app.local import LocalService

        self.settings = Settings(data_dir=data_dir, models_dir=models_dir)
        self.collection, self.create = checked_id(collection, "collection"), create
        self.local = LocalService(self.settings)
        self.gallery = self.local.gallery
        try:
            # The collection's model: the default one for a collection this run creates.
            self.pipeline = self.local.pipeline(self.gallery.model_of(self.collection))
        except BaseException:
            self.local.close()
            raise

    def enroll(self, person: str, photo: Path) -> Outcome:
        from app.api.errors import ApiError
        from app.api.fields import checked_id
        from app.face.errors import FaceError
        from app.face.pipeline import Upload
        from app.gallery.errors import GalleryError
        from app.gallery.store import Enrollment, NewFace

        data = photo.read_bytes()
        try:
            checked_id(person, "subject_id")
            (result,) = self.pipeline.enrollment_faces(
                [Upload("images[0]", data)], thumbnails=self.settings.store_face_thumbnails
            )
            face = NewFace.from_photo(
                result.face.embedding, result.face.detection.box, result.face.detection.score, data,
                result.thumbnail,
            )  # fmt: skip
            (ids,) = self.gallery.enroll(
                self.collection,
                [Enrollment(person, [face])],
                create=self.create,
                model_id=self.pipeline.model_id,
            )
        except (FaceError, ApiError) as error:
            return Outcome(person, photo.name, "refused", None, getattr(error, "code", None), str(error))
        except GalleryError as error:
            raise RunStopped(f"{error.code}: {error}") from error
        return Outcome(person, photo.name, "duplicate" if ids.repeated[0] else "stored", ids[0])

    def close(self) -> None:
        """Save the index snapshots and release the data directory."""
        self.local.close()


def journal_of(path: Path) -> dict[tuple[str, str], Outcome]:
    """What an earlier run recorded, by (person, photo)."""
    if not path.exists():
        return {}
    done = {}
    for line in path.read_text().splitlines():
        try:
            outcome = Outcome(**json.loads(line))
        except (ValueError, TypeError):
            continue  # blank, or cut off by a crash: that photo is done again
        done[(outcome.person, outcome.photo)] = outcome
    return done


def enroll_folder(
    target: Target, folder: Path, journal: Path, progress: Callable[[int, int, Counter[str]], None]
) -> Iterator[Outcome]:
    """Enroll every photo of every person not in the journal yet, appending each outcome to it;
    yields the outcomes of this run. `progress(done, total, counts)` is told after each photo."""
    earlier = journal_of(journal)
    work = [(person, photo) for person, photos in people_of(folder) for photo in photos]
    counts: Counter[str] = Counter(outcome.status for outcome in earlier.values())
    done = sum((person, photo.name) in earlier for person, photo in work)
    progress(done, len(work), counts)
    with journal.open("a") as log:
        for person, photo in work:
            if (person, photo.name) in earlier:
                continue
            outcome = target.enroll(person, photo)
            log.write(json.dumps(asdict(outcome)) + "\n")
            log.flush()  # a run cut off resumes after its last written photo
            counts[outcome.status] += 1
            done += 1
            progress(done, len(work), counts)
            yield outcome
