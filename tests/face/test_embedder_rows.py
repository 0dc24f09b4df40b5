"""Guards against normalising over the batch axis: each row is its own unit vector."""

from __future__ import annotations

import numpy as np
import pytest

from app.face.embedder import Embedder


@pytest.fixture
def eight_chips(dlib_chips: np.ndarray) -> np.ndarray:
    assert len(dlib_chips) >= 8
    return dlib_chips[:8]


def test_every_row_has_unit_norm(embedder: Embedder, eight_chips: np.ndarray) -> None:
    norms = np.linalg.norm(embedder.embed(eight_chips, flip_average=False), axis=1)
    assert np.all(np.abs(norms - 1.0) <= 1e-5), norms


def test_no_two_rows_are_equal(embedder: Embedder, eight_chips: np.ndarray) -> None:
    vectors = embedder.embed(eight_chips, flip_average=False)
    gaps = np.linalg.norm(vectors[:, None, :] - vectors[None, :, :], axis=2)
    off_diagonal = gaps[~np.eye(8, dtype=bool)]
    assert off_diagonal.min() > 1e-3, f"two rows are (nearly) equal: min distance {off_diagonal.min():.2e}"


def test_a_chip_alone_embeds_as_inside_a_batch(embedder: Embedder, eight_chips: np.ndarray) -> None:
    batch = embedder.embed(eight_chips, flip_average=False)
    for i in (0, 3, 7):
        alone = embedder.embed(eight_chips[i : i + 1], flip_average=False)[0]
        assert np.abs(alone - batch[i]).max() <= 1e-5


def test_empty_batch_gives_no_rows(embedder: Embedder) -> None:
    assert embedder.embed(np.zeros((0, 150, 150, 3), dtype=np.uint8), flip_average=False).shape == (0, 128)


def test_wrong_chip_shape_is_refused(embedder: Embedder) -> None:
    with pytest.raises(ValueError, match="chips must be uint8"):
        embedder.embed(np.zeros((1, 112, 112, 3), dtype=np.uint8), flip_average=False)
