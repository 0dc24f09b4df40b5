"""`faceverify models build`: skips current models, rebuilds damaged ones, runs from the command line."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="the `train` extra is needed to build models")

from app.face.manifest import load_manifest, verified_path
from training.build import build_models


def test_current_models_are_not_rebuilt(models_dir: Path) -> None:
    result = build_models(models_dir, log=lambda _: None)
    assert not result.rebuilt
    assert result.seconds < 10


def test_a_damaged_artifact_is_rebuilt(models_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "models"
    shutil.copytree(models_dir, copy)
    manifest = load_manifest(copy)
    pnet = copy / manifest.artifact("pnet").file
    pnet.write_bytes(b"not an onnx model")
    result = build_models(copy, log=lambda _: None)
    assert result.rebuilt
    assert result.seconds < 120
    for role, artifact in result.manifest.artifacts.items():
        verified_path(copy, artifact)
        # Reproducible: a build elsewhere from the same sources gives the same bytes.
        assert artifact.sha256 == manifest.artifacts[role].sha256
    assert not (copy / ".build").exists()


def test_the_command_line_builds_into_a_folder(tmp_path: Path) -> None:
    out = tmp_path / "fresh"
    command = [sys.executable, "-m", "faceverify.cli", "models", "build", "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "built 5 models" in done.stdout
    assert set(load_manifest(out).artifacts) == {"embedder", "embedder-int8", "pnet", "rnet", "onet"}
