"""The service opens the gallery at start, snapshots it at shutdown, and refuses another model's gallery."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.gallery.errors import GalleryModelMismatch
from app.gallery.gallery import Gallery
from app.gallery.sqlite import DATABASE_NAME
from app.gallery.store import Enrollment, NewFace
from app.main import create_app
from tests.gallery.vectors import DIM, faces_of, identities


def test_the_gallery_opens_with_the_service_and_is_snapshotted(models_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    app = create_app(Settings(models_dir=models_dir, data_dir=data))
    with TestClient(app):
        gallery: Gallery = app.state.service.gallery
        assert gallery.model_id == app.state.service.pipeline.model_id
        gallery.enroll("default", [Enrollment("ann", [NewFace(faces_of(identities(1))[0])])])
    assert (data / DATABASE_NAME).is_file()
    assert list((data / "index").glob("*.faiss")), "no index snapshot was written at shutdown"
    with TestClient(create_app(Settings(models_dir=models_dir, data_dir=data))) as client:
        assert client.app.state.service.gallery.startup.loaded == {"default": 1}  # type: ignore[attr-defined]


def test_another_models_gallery_stops_the_start(models_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    Gallery(data, "some-older-model", DIM).enroll(
        "default", [Enrollment("bo", [NewFace(faces_of(identities(1))[0])])]
    )
    app = create_app(Settings(models_dir=models_dir, data_dir=data))
    with pytest.raises(GalleryModelMismatch, match="some-older-model"), TestClient(app):
        pass
