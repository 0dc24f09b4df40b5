"""FacePipeline: the one-face / many-face policy, typed refusals, and embeddings that separate people."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.face.align import chip_to_image_transform, pyramid_factor
from app.face.errors import FaceTooSmall, ManyFaces, NoFace
from app.face.pipeline import FacePipeline, PipelineSettings
from tests.conftest import photo


def _bytes(photos: list[Path], name: str) -> bytes:
    return photo(photos, name).read_bytes()


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def test_enroll_policy_wants_exactly_one_face(pipeline: FacePipeline, photos: list[Path]) -> None:
    group = _bytes(photos, "t1.jpg")
    with pytest.raises(ManyFaces, match="6 faces"):
        pipeline.single_face(group)
    result = pipeline.single_face(group, allow_largest=True)
    assert result.faces_found == 6
    assert np.linalg.norm(result.face.embedding) == pytest.approx(1.0, abs=1e-5)


def test_no_face_is_refused(pipeline: FacePipeline) -> None:
    with pytest.raises(NoFace):
        pipeline.largest_faces([_png(np.full((200, 200, 3), 90, np.uint8))])


def test_a_face_below_the_minimum_size_is_refused(models_dir: Path, photos: list[Path]) -> None:
    strict = FacePipeline.from_models(models_dir, PipelineSettings(min_face_size=400))
    with pytest.raises(FaceTooSmall, match="at least 400 px"):
        strict.single_face(_bytes(photos, "obama.jpg"))


def test_verify_pairs_are_embedded_together(pipeline: FacePipeline, photos: list[Path]) -> None:
    threshold = pipeline.embedder.artifact.threshold
    assert threshold is not None
    names = ["obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"]
    results = pipeline.largest_faces([_bytes(photos, n) for n in names])
    vectors = np.stack([r.face.embedding for r in results])
    same = [float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2]), float(vectors[1] @ vectors[2])]
    different = [float(vectors[i] @ vectors[3]) for i in range(3)]
    assert min(same) >= threshold.similarity, same
    assert max(different) < threshold.similarity, different


def test_exif_rotated_copy_embeds_like_the_upright_photo(pipeline: FacePipeline, photos: list[Path]) -> None:
    upright = Image.open(photo(photos, "obama2.jpg")).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 8  # orientation: turn a quarter left to display
    buffer = io.BytesIO()
    upright.transpose(Image.Transpose.ROTATE_270).save(buffer, "JPEG", quality=95, exif=exif.tobytes())
    plain, rotated = pipeline.largest_faces([_bytes(photos, "obama2.jpg"), buffer.getvalue()])
    assert float(plain.face.embedding @ rotated.face.embedding) >= 0.99


def test_every_face_of_a_group_photo_is_embedded(pipeline: FacePipeline, photos: list[Path]) -> None:
    faces = pipeline.all_faces(_bytes(photos, "t1.jpg"))
    assert len(faces) == 6
    vectors = np.stack([f.embedding for f in faces])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similarities = vectors @ vectors.T
    assert similarities[~np.eye(6, dtype=bool)].max() < 0.97, "one face was embedded twice"


def test_flip_averaging_keeps_unit_vectors_close_to_plain_ones(
    pipeline: FacePipeline, photos: list[Path]
) -> None:
    image = pipeline.decode(_bytes(photos, "obama.jpg"))
    chip = pipeline.chip(image, pipeline.detect(image)[0])[None]
    plain = pipeline.embedder.embed(chip, flip_average=False)[0]
    flipped = pipeline.embedder.embed(chip, flip_average=True)[0]
    assert np.linalg.norm(flipped) == pytest.approx(1.0, abs=1e-5)
    assert 0.95 < float(plain @ flipped) < 1.0 - 1e-6


def test_faces_in_a_big_photo_are_found_on_a_bounded_copy_and_embedded_from_full_pixels(
    pipeline: FacePipeline, photos: list[Path]
) -> None:
    original = Image.open(photo(photos, "obama.jpg")).convert("RGB")
    big = original.resize((original.width * 4, original.height * 4), Image.Resampling.BICUBIC)
    small_face = pipeline.largest_faces([_bytes(photos, "obama.jpg")])[0].face
    bounded = FacePipeline(pipeline.detector, pipeline.embedder, PipelineSettings(detection_side=800))
    photo_big = bounded.decode_photo(_png(np.asarray(big)))
    assert max(photo_big.detection.shape[:2]) == 800
    (face,) = bounded.largest_faces([_png(np.asarray(big))])
    # Boxes and landmarks come back in the big photo's own pixels: four times the original's, give or
    # take what MTCNN moves between scales (a few percent of the face).
    width = small_face.detection.box[2] - small_face.detection.box[0]
    assert np.allclose(np.array(face.face.detection.box) / 4, small_face.detection.box, atol=0.05 * width)
    landmarks = np.array(face.face.detection.landmarks) / 4
    assert np.allclose(landmarks, small_face.detection.landmarks, atol=0.03 * width)
    # The chip is cut from the full-resolution pixels: the same person, the same embedding nearly.
    assert float(face.face.embedding @ small_face.embedding) > 0.97


def test_the_smallest_usable_face_is_scaled_onto_a_photos_detection_copy(
    pipeline: FacePipeline, photos: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A group photo whose faces are about 40 px across, found on a copy of half its size (about 20 px):
    # the detector is told the 32 px minimum in the copy's pixels, 16, so that it searches every level
    # that finds a face usable at full size.
    group = Image.open(photo(photos, "t1.jpg")).convert("RGB")
    small = group.resize((group.width // 5, group.height // 5), Image.Resampling.BILINEAR)
    big = np.asarray(small.resize((small.width * 2, small.height * 2), Image.Resampling.BICUBIC))
    bounded = FacePipeline(pipeline.detector, pipeline.embedder, PipelineSettings(detection_side=small.width))
    told: list[float | None] = []
    detect = bounded.detector.detect

    def spying(image: np.ndarray, smallest_face: float | None = None) -> list:  # type: ignore[type-arg]
        told.append(smallest_face)
        return detect(image, smallest_face)

    monkeypatch.setattr(bounded.detector, "detect", spying)
    found = bounded.detect_photo(bounded.decode_photo(_png(big)))
    assert told == [pytest.approx(bounded.settings.min_face_size * small.width / big.shape[1])]
    assert len(found) == 6 and min(d.size for d in found) >= bounded.settings.min_face_size


def test_a_big_jpegs_face_is_cut_from_its_reduced_decoding_as_from_its_full_pixels(
    pipeline: FacePipeline, photos: list[Path]
) -> None:
    original = Image.open(photo(photos, "obama.jpg")).convert("RGB")
    big = original.resize((original.width * 4, original.height * 4), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    big.save(buffer, "JPEG", quality=95)
    decoded = pipeline.decode_photo(buffer.getvalue())
    face = pipeline.detect_photo(decoded)[0]
    factor = pyramid_factor(chip_to_image_transform(face.landmarks, pipeline.embedder.template))
    assert decoded.reduction_for(factor) > 1  # this face needs less than the full pixels
    fast, whole = pipeline.photo_chip(decoded, face), pipeline.chip(decoded.pixels(1), face)
    embedded = pipeline.embedder.embed(np.stack([fast, whole]), flip_average=True)
    assert float(embedded[0] @ embedded[1]) > 0.9995


def test_a_pipeline_without_a_batcher_flips_as_its_current_settings_say(
    pipeline: FacePipeline, photos: list[Path]
) -> None:
    from dataclasses import replace

    data = photo(photos, "obama.jpg").read_bytes()
    settings = pipeline.settings
    try:
        pipeline.settings = replace(settings, flip_average=True)
        flipped = pipeline.largest_faces([data])[0].face.embedding
        pipeline.settings = replace(settings, flip_average=False)
        plain = pipeline.largest_faces([data])[0].face.embedding
    finally:
        pipeline.settings = settings
    assert float(flipped @ plain) < 0.9999  # the mirror image's embedding moved the average
