"""A folder of one folder per person, embedded through the serving pipeline."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from app.face.pipeline import FacePipeline
from training.evaluate import embed_images, file_digest
from training.lfw import pair_people
from training.prepare import IMAGE_SUFFIXES, person_folders


def person_key(name: str) -> str:
    """A stable key for a person's name, so that shipped files can say who is who without names."""
    return hashlib.sha256(name.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class LabelledFaces:
    """One unit vector per usable photo, with the index of the person it shows."""

    vectors: npt.NDArray[np.float32]  # (N, D)
    people: npt.NDArray[np.int64]  # (N,) indexes into names
    names: tuple[str, ...]
    paths: tuple[Path, ...]
    skipped: int  # photos without a face or unreadable: the service would refuse them too
    source: str  # what the photos are, for provenance

    def person_keys(self) -> list[str]:
        """The person key of every face."""
        keys = [person_key(name) for name in self.names]
        return [keys[int(p)] for p in self.people]

    def subset(self, rows: npt.NDArray[np.intp], source: str) -> LabelledFaces:
        """The faces of the given rows, people renumbered."""
        used, people = np.unique(self.people[rows], return_inverse=True)
        return LabelledFaces(
            self.vectors[rows], people.astype(np.int64), tuple(self.names[int(u)] for u in used),
            tuple(self.paths[int(r)] for r in rows), 0, source,
        )  # fmt: skip


def labelled_photos(images: Path, people_of: Path | None = None) -> list[tuple[Path, str]]:
    """Every photo under images/<person>/, in name order; with a pairs file, only the people it names."""
    only = set(pair_people(people_of)) if people_of is not None else None
    return [
        (path, folder.name)
        for folder in person_folders(images, only)
        for path in sorted(folder.iterdir())
        if path.suffix.lower() in IMAGE_SUFFIXES
    ]


def describe(images: Path, people_of: Path | None) -> str:
    """Where a set of labelled photos came from, in words."""
    folder = f"{images.parent.name}/{images.name}" if images.parent.name else images.name
    if people_of is None:
        return f"{folder} (every person)"
    return f"{folder}, the people of {people_of.name} (sha256 {file_digest(people_of)})"


def embed_labelled(
    pipeline: FacePipeline, images: Path, people_of: Path | None = None, progress: bool = True
) -> LabelledFaces:
    """Embed each photo's central face as the service embeds faces; photos without one are skipped."""
    photos = labelled_photos(images, people_of)
    embedded = embed_images(pipeline, [path for path, _ in photos], progress)
    missing = set(embedded.no_face) | set(embedded.unreadable)
    kept = [(path, person) for path, person in photos if path not in missing]
    if not kept:
        raise ValueError(f"no face was found in any photo under {images}")
    names, people = np.unique([person for _, person in kept], return_inverse=True)
    return LabelledFaces(
        vectors=np.stack([embedded.vectors[path] for path, _ in kept]).astype(np.float32),
        people=people.astype(np.int64),
        names=tuple(str(n) for n in names),
        paths=tuple(path for path, _ in kept),
        skipped=len(photos) - len(kept),
        source=describe(images, people_of),
    )
