"""MTCNN on ONNX Runtime: finds every face in a group photo, nothing in blank images; NMS is exact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from app.face.detector import MtcnnDetector, nms
from app.face.image import decode_image
from app.face.pipeline import FacePipeline
from tests.conftest import photo


def _detector(pipeline: FacePipeline) -> MtcnnDetector:
    return pipeline.detector


def test_a_group_photo_yields_every_face(pipeline: FacePipeline, photos: list[Path]) -> None:
    image = decode_image(photo(photos, "t1.jpg").read_bytes())
    detections = _detector(pipeline).detect(image)
    assert len(detections) == 6
    centres = sorted(((d.box[0] + d.box[2]) / 2) for d in detections)
    assert min(np.diff(centres)) > 50, "two detections of one face"


def test_landmarks_sit_inside_the_face(pipeline: FacePipeline, photos: list[Path]) -> None:
    image = decode_image(photo(photos, "obama.jpg").read_bytes())
    face = max(_detector(pipeline).detect(image), key=lambda d: d.area)
    x1, y1, x2, y2 = face.box
    points = np.array(face.landmarks)
    assert ((points[:, 0] > x1) & (points[:, 0] < x2) & (points[:, 1] > y1) & (points[:, 1] < y2)).all()
    left_eye, right_eye, nose, left_mouth, right_mouth = points
    assert left_eye[0] < right_eye[0] and left_mouth[0] < right_mouth[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(left_mouth[1], right_mouth[1])
    assert face.score > 0.99


def test_blank_and_tiny_images_have_no_face(pipeline: FacePipeline) -> None:
    detector = _detector(pipeline)
    assert detector.detect(np.full((240, 320, 3), 128, np.uint8)) == []
    assert detector.detect(np.zeros((10, 10, 3), np.uint8)) == []


def _brute_force_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    keep: list[int] = []
    for i in np.argsort(-scores, kind="stable"):
        ok = True
        for j in keep:
            w = max(0.0, min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0]) + 1)
            h = max(0.0, min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1]) + 1)
            area_i = (boxes[i, 2] - boxes[i, 0] + 1) * (boxes[i, 3] - boxes[i, 1] + 1)
            area_j = (boxes[j, 2] - boxes[j, 0] + 1) * (boxes[j, 3] - boxes[j, 1] + 1)
            if w * h / (area_i + area_j - w * h) > threshold:
                ok = False
                break
        if ok:
            keep.append(int(i))
    return keep


def test_nms_matches_a_brute_force_oracle() -> None:
    rng = np.random.default_rng(5)
    for count in (0, 1, 7, 120):
        corners = rng.uniform(0, 200, (count, 2))
        sizes = rng.uniform(10, 60, (count, 1))
        boxes = np.hstack([corners, corners + sizes]).astype(np.float32)
        scores = rng.random(count).astype(np.float32)
        for threshold in (0.3, 0.5, 0.7):
            assert nms(boxes, scores, threshold).tolist() == _brute_force_nms(boxes, scores, threshold)


def test_a_smallest_face_skips_only_levels_that_find_smaller_faces(
    pipeline: FacePipeline, photos: list[Path]
) -> None:
    detector = _detector(pipeline)
    image = decode_image(photo(photos, "t1.jpg").read_bytes())
    picture = Image.fromarray(image)
    full = detector._pyramid(picture, None)
    # Windows of 20, 28.2, 39.9 px: a 32 px face is found by the second level, the first is skipped.
    skipped = detector._pyramid(picture, 32.0)
    assert [scale for scale, _ in skipped] == [scale for scale, _ in full[1:]]
    for (_, searched), (_, made) in zip(skipped, full[1:], strict=True):
        assert np.array_equal(np.asarray(searched), np.asarray(made))
    assert len(detector._pyramid(picture, 20.0)) == len(full)
    every = detector.detect(image)
    large = detector.detect(image, smallest_face=32.0)
    assert len(large) == len([d for d in every if d.size >= 32]) == 6
    for face in large:
        nearest = min(every, key=lambda d: float(np.abs(np.subtract(d.box, face.box)).max()))
        assert np.abs(np.subtract(nearest.landmarks, face.landmarks)).max() < 3.0


def test_small_pyramid_levels_run_on_one_thread_with_the_same_faces(
    pipeline: FacePipeline, photos: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.face.detector import _PNET_ONE_THREAD_PIXELS

    pnet = _detector(pipeline).pnet
    image = decode_image(photo(photos, "t1.jpg").read_bytes())
    before = _detector(pipeline).detect(image)
    levels: list[tuple[int, bool]] = []
    original = pnet.run

    def recording(outputs: list[str] | None, feeds: dict[str, np.ndarray], small: bool = False) -> list[Any]:
        levels.append((feeds["images"].shape[1] * feeds["images"].shape[2], small))
        return original(outputs, feeds, small)

    monkeypatch.setattr(pnet, "run", recording)
    after = _detector(pipeline).detect(image)
    assert {small for _, small in levels} == {True, False}
    assert all(small == (pixels <= _PNET_ONE_THREAD_PIXELS) for pixels, small in levels)
    assert [d.box for d in after] == [d.box for d in before]
