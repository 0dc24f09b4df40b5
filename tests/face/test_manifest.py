"""The manifest vouches for every file; a corrupted, missing or mismatched model is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.face.embedder import Embedder
from app.face.errors import ModelIntegrityError, ModelMismatch, ModelMissing
from app.face.manifest import MANIFEST_NAME, Manifest, load_manifest, sha256_file
from app.face.runtime import open_session
from app.main import create_app


@pytest.fixture
def models_copy(models_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "models"
    shutil.copytree(models_dir, copy)
    return copy


def _flip_a_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_manifest_checksums_match_the_files(models_dir: Path, manifest: Manifest) -> None:
    assert set(manifest.artifacts) == {"embedder", "embedder-int8", "pnet", "rnet", "onet"}
    for artifact in manifest.artifacts.values():
        path = models_dir / artifact.file
        assert sha256_file(path) == artifact.sha256
        assert path.stat().st_size == artifact.bytes


def test_embedder_contract_is_recorded(manifest: Manifest) -> None:
    embedder = manifest.artifact("embedder")
    assert embedder.input_contract.size == (150, 150)
    assert embedder.input_contract.dtype == "uint8"
    assert embedder.embedding_size == 128
    assert embedder.threshold is not None
    assert embedder.threshold.squared_distance == pytest.approx(2 - 2 * embedder.threshold.similarity)
    assert embedder.source.package == "face_recognition_models"
    assert embedder.source.licence == "CC0-1.0"


def test_a_corrupted_model_file_is_refused(models_copy: Path) -> None:
    manifest = load_manifest(models_copy)
    _flip_a_byte(models_copy / manifest.artifact("embedder").file, offset=100_000)
    with pytest.raises(ModelIntegrityError, match=r"dlib_resnet_v1\.onnx is corrupt or replaced"):
        Embedder(models_copy, manifest.artifact("embedder"))


def test_the_service_will_not_start_on_a_corrupted_model(models_copy: Path, tmp_path: Path) -> None:
    manifest = load_manifest(models_copy)
    _flip_a_byte(models_copy / manifest.artifact("embedder").file, offset=5_000)
    app = create_app(Settings(models_dir=models_copy, data_dir=tmp_path / "data"))
    with pytest.raises(ModelIntegrityError), TestClient(app):
        pass


def test_a_missing_model_file_is_named(models_copy: Path) -> None:
    manifest = load_manifest(models_copy)
    (models_copy / manifest.artifact("onet").file).unlink()
    with pytest.raises(ModelMissing, match=r"mtcnn_onet\.onnx is missing"):
        open_session(models_copy, manifest.artifact("onet"))


def test_a_missing_manifest_says_how_to_build(tmp_path: Path) -> None:
    with pytest.raises(ModelMissing, match="faceverify models build"):
        load_manifest(tmp_path)


def test_a_contract_mismatch_is_refused(models_copy: Path) -> None:
    path = models_copy / MANIFEST_NAME
    raw = json.loads(path.read_text())
    raw["artifacts"]["embedder"]["inputs"][0]["shape"] = [None, 160, 160, 3]
    path.write_text(json.dumps(raw))
    with pytest.raises(ModelMismatch, match="axis 1 is 150, the manifest says 160"):
        Embedder(models_copy, load_manifest(models_copy).artifact("embedder"))


def test_health_answers_once_models_are_loaded(models_dir: Path, tmp_path: Path) -> None:
    app = create_app(Settings(models_dir=models_dir, data_dir=tmp_path / "data"))
    with TestClient(app) as client:
        response = client.get("/health")
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}
        assert app.state.service.pipeline.model_id.startswith("dlib-resnet-v1-")
