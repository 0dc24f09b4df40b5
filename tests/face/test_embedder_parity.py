"""The ONNX embedder equals dlib's own descriptor, normalised, on real and random chips."""

from __future__ import annotations

import numpy as np

from app.face.embedder import Embedder

TOLERANCE = 1e-4


def _dlib_unit(recogniser: object, chips: np.ndarray) -> np.ndarray:
    reference = np.array(
        [np.asarray(recogniser.compute_face_descriptor(chip, 0)) for chip in chips]  # type: ignore[attr-defined]
    )
    return reference / np.linalg.norm(reference, axis=1, keepdims=True)


def test_matches_dlib_on_real_face_chips(
    embedder: Embedder, dlib_chips: np.ndarray, dlib_tools: tuple
) -> None:
    assert len(dlib_chips) >= 20, f"only {len(dlib_chips)} real face chips were cut"
    reference = _dlib_unit(dlib_tools[2], dlib_chips)
    ours = embedder.embed(dlib_chips, flip_average=False)
    assert ours.shape == (len(dlib_chips), 128)
    worst = float(np.abs(ours - reference).max())
    assert worst <= TOLERANCE, f"largest component difference {worst:.2e}"


def test_matches_dlib_on_random_chips(embedder: Embedder, dlib_tools: tuple) -> None:
    chips = np.random.default_rng(7).integers(0, 256, (6, 150, 150, 3), dtype=np.uint8)
    worst = float(np.abs(embedder.embed(chips, flip_average=False) - _dlib_unit(dlib_tools[2], chips)).max())
    assert worst <= TOLERANCE, f"largest component difference {worst:.2e}"


def test_same_person_is_closer_than_different_people(embedder: Embedder, dlib_chips: np.ndarray) -> None:
    # The first chips come from face_recognition's photos: biden.jpg is chip 1, obama*.jpg chips 2-4.
    vectors = embedder.embed(dlib_chips[:5], flip_average=False)
    obama = vectors[2:5]
    same = obama @ obama.T
    different = obama @ vectors[1]
    assert same[np.triu_indices(3, 1)].min() > different.max()
