"""The committed alignment template agrees with a fit on the registry photos."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch", reason="the `train` extra is needed for the template fit")

from app.face.pipeline import FacePipeline
from training.build import TEMPLATE_FILE
from training.fit_template import fit, match_faces


def test_a_fit_on_other_faces_lands_near_the_committed_template(
    pipeline: FacePipeline, photos: list[Path], dlib_tools: tuple[Any, Any, Any]
) -> None:
    detector, predictor, _ = dlib_tools
    faces = match_faces(photos, pipeline.detector, detector, predictor)
    assert len(faces) >= 8
    record = fit(faces, pipeline.embedder)
    committed = np.array(json.loads(TEMPLATE_FILE.read_text())["points"])
    assert np.abs(np.array(record["points"]) - committed).max() < 5.0
    assert record["check"]["median_cosine_to_dlib_chip"] > 0.98


def test_the_manifest_carries_the_committed_template(pipeline: FacePipeline) -> None:
    committed = json.loads(TEMPLATE_FILE.read_text())
    contract = pipeline.embedder.artifact.input_contract
    assert contract.alignment_template == committed["template_id"]
    assert np.allclose(contract.alignment_points, committed["points"])
