"""Real face photos for tests and benchmarks: pinned PyPI sdists, checksum-verified and cached."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("FV_TEST_CACHE", REPO / ".cache" / "test-assets"))
LFW_DEV = Path(os.environ.get("FV_LFW_DIR", REPO.parent / "shared" / "data" / "lfw-dev"))


@dataclass(frozen=True)
class PhotoSdist:
    """A source distribution on PyPI whose archive carries sample photos."""

    name: str
    version: str
    sha256: str
    members: tuple[str, ...]  # paths inside the archive, below its top folder

    @property
    def archive(self) -> str:
        return f"{self.name}-{self.version}.tar.gz"


FACE_RECOGNITION = PhotoSdist(
    "face_recognition",
    "1.3.0",
    "5e5efdd1686aa566af0d3cc1313b131e4b197657a8ffd03669e6d3fad92705ec",
    tuple(
        f"tests/test_images/{n}"
        for n in (
            "32bit.png",
            "biden.jpg",
            "obama.jpg",
            "obama2.jpg",
            "obama3.jpg",
            "obama_partial_face.jpg",
            "obama_partial_face2.jpg",
        )
    ),
)
INSIGHTFACE = PhotoSdist(
    "insightface",
    "2.1",
    "776cbd36b70f5f2ae1a026101cfb80387f0b2280a0dbaf073f8d3ed69f554e01",
    ("insightface/data/images/t1.jpg", "insightface/data/images/Tom_Hanks_54745.png"),
)
PHOTO_SDISTS = (FACE_RECOGNITION, INSIGHTFACE)


class AssetUnavailable(RuntimeError):
    """The registry could not be reached or served a file with another checksum."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _download(sdist: PhotoSdist, into: Path) -> Path:
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--no-binary",
        ":all:",
        "--no-build-isolation",
        "-d",
        str(into),
        f"{sdist.name}=={sdist.version}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    archive = into / sdist.archive
    if result.returncode != 0 and not archive.exists():
        raise AssetUnavailable(f"pip download {sdist.name}=={sdist.version} failed: {result.stderr[-500:]}")
    return archive


def sdist_photos(sdist: PhotoSdist) -> list[Path]:
    """The sdist's photos, extracted into the cache (downloaded and verified on first use)."""
    folder = CACHE / f"{sdist.name}-{sdist.version}"
    wanted = [folder / Path(m).name for m in sdist.members]
    if all(p.is_file() for p in wanted):
        return wanted
    with tempfile.TemporaryDirectory() as tmp:
        archive = _download(sdist, Path(tmp))
        if (digest := _sha256(archive)) != sdist.sha256:
            raise AssetUnavailable(f"{archive.name} has sha256 {digest}, expected {sdist.sha256}")
        folder.mkdir(parents=True, exist_ok=True)
        top = f"{sdist.name}-{sdist.version}"
        with tarfile.open(archive) as tar:
            for member, target in zip(sdist.members, wanted, strict=True):
                source = tar.extractfile(f"{top}/{member}")
                if source is None:
                    raise AssetUnavailable(f"{member} is not a file in {archive.name}")
                partial = target.with_suffix(target.suffix + ".part")
                partial.write_bytes(source.read())
                partial.replace(target)
    return wanted


def registry_photos() -> list[Path]:
    """Every sample photo from the pinned sdists."""
    return [photo for sdist in PHOTO_SDISTS for photo in sdist_photos(sdist)]


def lfw_photos(limit: int) -> list[Path]:
    """Up to `limit` LFW development images, one per person, or [] where the data is absent."""
    images = LFW_DEV / "images"
    if not images.is_dir():
        return []
    people = sorted(p for p in images.iterdir() if p.is_dir())
    photos = [next(iter(sorted(person.glob("*.jpg"))), None) for person in people[:limit]]
    return [p for p in photos if p is not None]


def devtest_people(limit: int, photos_each: int = 2) -> list[list[Path]]:
    """Up to `limit` people of lfw-dev's DevTest pairs with at least `photos_each` photos (sorted), or []
    where the data is absent."""
    pairs, images = LFW_DEV / "pairsDevTest.txt", LFW_DEV / "images"
    if not pairs.is_file():
        return []
    names = sorted(
        {line.split("\t")[0] for line in pairs.read_text().splitlines()[1:] if line.count("\t") == 2}
    )
    people = [sorted((images / name).glob("*.jpg")) for name in names]
    return [photos[:photos_each] for photos in people if len(photos) >= photos_each][:limit]


def copy_models(models: Path, folder: Path) -> Path:
    """A copy of a models folder's files (not its imported embedders) in a new folder, to import into."""
    folder.mkdir(parents=True)
    for item in models.iterdir():
        if item.is_file():
            shutil.copy2(item, folder / item.name)
    return folder
