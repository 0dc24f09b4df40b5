"""Fit where MTCNN's five landmarks fall in dlib's face chip, so our chips match the embedder's training.

dlib's embedder was trained on `get_face_chip(size=150, padding=0.25)` chips, which map dlib's own five
landmarks (eye corners, nose base) onto a mean-face template. MTCNN finds other points (eye centres,
nose tip, mouth corners). On real faces found by both, this maps MTCNN's points into dlib's chip frame
and averages them: that average is the template our aligner uses. Half the faces fit the template; the
other half check it, by the cosine between the embedding of our chip and of dlib's chip.

Run: python -m training.fit_template --images ../shared/data/lfw-dev/images \
        --pairs ../shared/data/lfw-dev/pairsDevTrain.txt
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.face.align import align_face, apply_transform, chip_to_image_transform, invert_transform
from app.face.detector import Detection, MtcnnDetector
from app.face.embedder import Embedder
from app.face.image import decode_image
from app.face.manifest import load_manifest
from training.build import DLIB_MODELS_PACKAGE, TEMPLATE_FILE, package_dir
from training.lfw import pair_people

CHIP_SIZE = 150
CHIP_PADDING = 0.25
LANDMARKS = ("left_eye", "right_eye", "nose", "left_mouth", "right_mouth")

# dlib's 5-point mean face on the unit square (get_face_chip_details in dlib's interpolation.h),
# in the order of shape_predictor_5_face_landmarks: eye corners of each eye, then the nose base.
_DLIB_UNIT_TEMPLATE = np.array(
    [
        (0.8595674595992, 0.2134981538014),
        (0.6460604764104, 0.2289674387677),
        (0.1205750620789, 0.2137274526848),
        (0.3340850613712, 0.2290642403242),
        (0.4901123135679, 0.6277975316475),
    ]
)


def dlib_chip_template(size: int = CHIP_SIZE, padding: float = CHIP_PADDING) -> np.ndarray:
    """dlib's five template points in a size x size chip with the given padding."""
    return (padding + _DLIB_UNIT_TEMPLATE) / (2 * padding + 1) * size


@dataclass
class MatchedFace:
    """One face seen by both detectors."""

    path: Path
    image: np.ndarray
    dlib_points: np.ndarray
    mtcnn: Detection
    mtcnn_in_chip: np.ndarray


def _iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match_faces(
    paths: list[Path], detector: MtcnnDetector, dlib_detector: Any, predictor: Any
) -> list[MatchedFace]:
    """Faces where dlib's face nearest the centre and an MTCNN face are the same face."""
    matched = []
    template = dlib_chip_template()
    for path in paths:
        image = decode_image(path.read_bytes())
        centre = np.array(image.shape[1::-1]) / 2
        rects = list(dlib_detector(image, 1))
        if not rects:
            continue
        rect = min(rects, key=lambda r: float(np.hypot(*(np.array([r.center().x, r.center().y]) - centre))))
        dlib_box = (float(rect.left()), float(rect.top()), float(rect.right()), float(rect.bottom()))
        detections = detector.detect(image)
        if not detections:
            continue
        best = max(detections, key=lambda d: _iou(d.box, dlib_box))
        if _iou(best.box, dlib_box) < 0.3:
            continue  # the two detectors picked different faces
        points = np.array([(p.x, p.y) for p in predictor(image, rect).parts()], dtype=np.float64)
        image_to_chip = invert_transform(chip_to_image_transform(points, template))
        in_chip = apply_transform(image_to_chip, best.landmarks)
        matched.append(MatchedFace(path, image, points, best, in_chip))
    return matched


def _cosines(faces: list[MatchedFace], template: np.ndarray, embedder: Embedder) -> np.ndarray:
    ours = np.stack([align_face(f.image, f.mtcnn.landmarks, template, CHIP_SIZE) for f in faces])
    theirs = np.stack([align_face(f.image, f.dlib_points, dlib_chip_template(), CHIP_SIZE) for f in faces])
    return np.sum(
        embedder.embed(ours, flip_average=False) * embedder.embed(theirs, flip_average=False), axis=1
    )


def fit(faces: list[MatchedFace], embedder: Embedder) -> dict[str, Any]:
    """Fit on the even-indexed faces, check on the odd ones; the record to commit."""
    fit_half, check_half = faces[0::2], faces[1::2]
    points = np.mean([f.mtcnn_in_chip for f in fit_half], axis=0)
    spread = np.std([f.mtcnn_in_chip for f in fit_half], axis=0)
    cosines = _cosines(check_half, points, embedder)
    return {
        "template_id": "mtcnn5-dlib-chip-150-pad0.25",
        "chip_size": CHIP_SIZE,
        "landmarks": list(LANDMARKS),
        "points": [[round(float(x), 3), round(float(y), 3)] for x, y in points],
        "spread_px": [[round(float(x), 2), round(float(y), 2)] for x, y in spread],
        "fitted_on_faces": len(fit_half),
        "check": {
            "faces": len(check_half),
            "median_cosine_to_dlib_chip": round(float(np.median(cosines)), 4),
            "p5_cosine_to_dlib_chip": round(float(np.percentile(cosines, 5)), 4),
        },
    }


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: fit the template and write it beside this script."""
    import dlib

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--images", type=Path, required=True, help="LFW images folder (one folder per person)"
    )
    parser.add_argument("--pairs", type=Path, required=True, help="pairs file whose people to use (DevTrain)")
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--limit", type=int, default=1000, help="images to try")
    parser.add_argument("--out", type=Path, default=TEMPLATE_FILE)
    args = parser.parse_args(argv)

    people = pair_people(args.pairs)
    paths = [p for person in people for p in sorted((args.images / person).glob("*.jpg"))[:1]][: args.limit]
    manifest = load_manifest(args.models)
    detector = MtcnnDetector(args.models, manifest)
    embedder = Embedder(args.models, manifest.artifact("embedder"))
    folder = package_dir(DLIB_MODELS_PACKAGE) / "models"
    predictor = dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat"))
    faces = match_faces(paths, detector, dlib.get_frontal_face_detector(), predictor)
    record = fit(faces, embedder)
    record["fitted_on"] = {"images": len(paths), "matched": len(faces), "people_from": args.pairs.name}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
