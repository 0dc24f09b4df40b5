"""Alignment: the similarity fit is exact, and the warp reproduces dlib's own chips."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from app.face.align import BoxCut, align_face, apply_transform, similarity_transform
from app.face.image import decode_image
from app.face.pipeline import FacePipeline
from tests.conftest import photo


def test_a_known_similarity_is_recovered() -> None:
    rng = np.random.default_rng(0)
    source = rng.uniform(0, 100, (5, 2))
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -4.0])
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    target = source @ (scale * rotation).T + shift
    matrix = similarity_transform(source, target)
    assert np.allclose(apply_transform(matrix, source), target, atol=1e-9)


def test_a_mirror_image_is_not_fitted_with_a_reflection() -> None:
    source = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [7.0, 3.0], [2.0, 8.0]])
    mirrored = source * np.array([-1.0, 1.0])
    matrix = similarity_transform(source, mirrored)
    assert np.linalg.det(matrix[:, :2]) > 0


def test_mismatched_points_are_refused() -> None:
    with pytest.raises(ValueError, match="matching"):
        similarity_transform(np.zeros((5, 2)), np.zeros((4, 2)))


def test_the_warp_reproduces_dlibs_chip(photos: list[Path], dlib_tools: tuple[Any, Any, Any]) -> None:
    import dlib

    from training.fit_template import dlib_chip_template

    detector, predictor, _ = dlib_tools
    image = decode_image(photo(photos, "t1.jpg").read_bytes())
    for box in detector(image, 1):
        shape = predictor(image, box)
        points = [(p.x, p.y) for p in shape.parts()]
        theirs = dlib.get_face_chip(image, shape, size=150, padding=0.25).astype(float)
        ours = align_face(image, points, dlib_chip_template(), 150).astype(float)
        assert np.abs(ours - theirs).mean() < 1.0


def test_our_chips_embed_like_dlibs(
    pipeline: FacePipeline, photos: list[Path], dlib_tools: tuple[Any, Any, Any]
) -> None:
    """MTCNN landmarks on our template give chips whose embeddings match dlib's own chips'."""
    import dlib

    detector, predictor, _ = dlib_tools
    cosines = []
    for name in ("t1.jpg", "obama.jpg", "obama2.jpg", "biden.jpg", "Tom_Hanks_54745.png"):
        image = decode_image(photo(photos, name).read_bytes())
        ours = pipeline.detect(image)
        for box in detector(image, 1):
            centre = np.array([box.center().x, box.center().y])
            mine = min(
                ours, key=lambda d: np.hypot(*(np.array(d.box[:2]) / 2 + np.array(d.box[2:]) / 2 - centre))
            )
            theirs = dlib.get_face_chip(image, predictor(image, box), size=150, padding=0.25)
            vectors = pipeline.embedder.embed(
                np.stack([pipeline.chip(image, mine), theirs]), flip_average=False
            )
            cosines.append(float(vectors[0] @ vectors[1]))
    assert len(cosines) >= 10
    assert np.median(cosines) >= 0.98, cosines
    assert min(cosines) >= 0.93, cosines


def _facenet_pytorch_extract_face(image: Image.Image, box: Any, size: int, margin: float) -> np.ndarray:
    """facenet-pytorch 2.6.0's extract_face for a PIL image (models/utils/detect_face.py), restated:
    its module imports torchvision, which this environment lacks."""
    grow = [margin * (box[2] - box[0]) / (size - margin), margin * (box[3] - box[1]) / (size - margin)]
    edges = [
        int(max(box[0] - grow[0] / 2, 0)), int(max(box[1] - grow[1] / 2, 0)),
        int(min(box[2] + grow[0] / 2, image.size[0])), int(min(box[3] + grow[1] / 2, image.size[1])),
    ]  # fmt: skip
    return np.asarray(image.crop(edges).copy().resize((size, size), Image.BILINEAR))


@pytest.mark.parametrize("margin", [0.0, 20.0])
def test_a_box_cut_is_facenet_pytorchs_crop_of_the_same_box(
    pipeline: FacePipeline, photos: list[Path], margin: float
) -> None:
    cut = BoxCut(margin, 160)
    compared = 0
    for path in photos[:9]:
        photo_ = pipeline.decode_photo(path.read_bytes())
        for face in pipeline.detect_photo(photo_)[:2]:
            ours = cut.chip(photo_.pixels(1), face.box, face.landmarks, photo_.size)
            theirs = _facenet_pytorch_extract_face(Image.open(path).convert("RGB"), face.box, 160, margin)
            assert np.array_equal(ours, theirs), path.name
            compared += 1
    assert compared >= 8
