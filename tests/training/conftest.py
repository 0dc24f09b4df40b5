"""Fixtures of the training suites: real LFW faces prepared by `train prepare`."""

from __future__ import annotations

import shutil
from itertools import pairwise
from pathlib import Path

import pytest

from app.face.pipeline import FacePipeline
from tests.assets import LFW_DEV

NEEDS_LFW = pytest.mark.skipif(
    not (LFW_DEV / "images").is_dir(), reason="needs LFW's development images (../shared/data/lfw-dev)"
)


@pytest.fixture(scope="session")
def prepared(tmp_path_factory: pytest.TempPathFactory, pipeline: FacePipeline) -> Path:
    """Chips of 10 LFW people with many photos (6 each) and 4 people with one photo."""
    people = sorted((LFW_DEV / "images").iterdir(), key=lambda p: (-len(list(p.glob("*.jpg"))), p.name))
    source = tmp_path_factory.mktemp("people")
    for person in people[:10]:
        (source / person.name).mkdir()
        for photo in sorted(person.glob("*.jpg"))[:6]:
            shutil.copy(photo, source / person.name / photo.name)
    singles = [p for p in sorted((LFW_DEV / "images").iterdir()) if len(list(p.glob("*.jpg"))) == 1][:4]
    for person in singles:
        shutil.copytree(person, source / person.name)
    (source / "not_an_image.txt").write_text("skipped: not a folder")
    (source / singles[0].name / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path_factory.mktemp("prepared")
    from training.prepare import prepare  # needs torch only through training's imports

    prepare(pipeline, source, out, [64, 150], progress=False)
    return out


def write_lfw_pairs(path: Path, people: int) -> Path:
    """An LFW-format pairs file over lfw-dev: each of the first people with two photos against
    itself, and each against the next one (the first `people` + 1 such people)."""
    names = [p.name for p in sorted((LFW_DEV / "images").iterdir()) if len(list(p.glob("*.jpg"))) >= 2]
    names = names[: people + 1]
    same = [f"{name}\t1\t2" for name in names[1:]]
    different = [f"{a}\t1\t{b}\t1" for a, b in pairwise(names)]
    path.write_text(f"{people}\n" + "\n".join(same + different) + "\n")  # LFW: N same, then N different
    return path
