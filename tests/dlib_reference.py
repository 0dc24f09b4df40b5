"""dlib as the numeric reference: its HOG detector, 5-point landmarks and own face chips."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

CHIP_SIZE = 150
CHIP_PADDING = 0.25


def load_rgb(path: Path) -> np.ndarray:
    """A photo as an RGB uint8 array."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def dlib_models(dat_folder: Path) -> tuple[Any, Any, Any]:
    """dlib's HOG detector, 5-point shape predictor and face-recognition model."""
    import dlib

    return (
        dlib.get_frontal_face_detector(),
        dlib.shape_predictor(str(dat_folder / "shape_predictor_5_face_landmarks.dat")),
        dlib.face_recognition_model_v1(str(dat_folder / "dlib_face_recognition_resnet_model_v1.dat")),
    )


def cut_dlib_chips(photos: list[Path], detector: Any, predictor: Any, minimum: int) -> np.ndarray:
    """Every face in the photos as dlib's own 150x150 chip (padding 0.25).

    Where fewer than `minimum` faces are found, the mirrored photos add their chips.
    """
    import dlib

    chips: list[np.ndarray] = []
    for mirrored in (False, True):
        for path in photos:
            image = load_rgb(path)
            if mirrored:
                image = np.ascontiguousarray(image[:, ::-1])
            for box in detector(image, 1):
                shape = predictor(image, box)
                chips.append(dlib.get_face_chip(image, shape, size=CHIP_SIZE, padding=CHIP_PADDING))
        if len(chips) >= minimum:
            break
    return np.stack(chips).astype(np.uint8)
