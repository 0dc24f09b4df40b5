"""MTCNN face detection on ONNX Runtime: scale pyramid, P-, R- and O-Net, numpy NMS, five landmarks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from app.face.manifest import Manifest
from app.face.runtime import open_session

FloatArray = npt.NDArray[np.float32]

_PNET_STRIDE = 2
# P-Net levels up to this many pixels run on one thread: on 2 cores, 54x54 and smaller ran faster so
# (0.24 against 0.26 ms at 54x54, 0.04 against 0.07 at 14x14), 76x76 and larger slower.
_PNET_ONE_THREAD_PIXELS = 60 * 60
_PNET_CELL = 12
# Pillow's bilinear filter widens when it shrinks, so it averages like the reference area resize.
_RESAMPLE = Image.Resampling.BILINEAR


@dataclass(frozen=True)
class DetectorSettings:
    """MTCNN's knobs, with the values of the original paper as defaults."""

    min_face_size: int = 20
    scale_factor: float = 0.709
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)


@dataclass(frozen=True)
class Detection:
    """One face: box (x1, y1, x2, y2) in pixels, score, and landmarks (5, 2) as (x, y).

    Landmark order: left eye, right eye, nose, left mouth corner, right mouth corner (image left/right).
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: tuple[tuple[float, float], ...]

    @property
    def size(self) -> float:
        """The shorter side of the box, in pixels."""
        return min(self.box[2] - self.box[0], self.box[3] - self.box[1])

    @property
    def area(self) -> float:
        return max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1])


def _overlaps(
    boxes: FloatArray, i: int | npt.NDArray[np.intp], rest: npt.NDArray[np.intp], mode: str
) -> FloatArray:
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
    h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
    inter = w * h
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    if mode == "min":
        return np.asarray(inter / np.minimum(areas[i], areas[rest]), dtype=np.float32)
    return np.asarray(inter / (areas[i] + areas[rest] - inter), dtype=np.float32)


# Up to this many boxes the pairwise overlap matrix (n^2 floats) is cheaper than repeated passes.
_NMS_MATRIX_LIMIT = 1500


def nms(boxes: FloatArray, scores: FloatArray, threshold: float, mode: str = "union") -> npt.NDArray[np.intp]:
    """Indices kept by greedy non-maximum suppression, best score first ('union' IoU or 'min' overlap)."""
    order = np.argsort(scores, kind="stable")[::-1]
    if len(order) <= _NMS_MATRIX_LIMIT:
        overlap = _overlaps(boxes, order[:, None], order[None, :], mode) > threshold
        suppressed = np.zeros(len(order), dtype=bool)
        keep = []
        for rank in range(len(order)):
            if not suppressed[rank]:
                keep.append(order[rank])
                suppressed |= overlap[rank]
        return np.asarray(keep, dtype=np.intp)
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        order = rest[_overlaps(boxes, best, rest, mode) <= threshold]
    return np.asarray(keep, dtype=np.intp)


def _square(boxes: FloatArray) -> FloatArray:
    """Grow each box to a square around its centre."""
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _regress(boxes: FloatArray, offsets: FloatArray, plus_one: bool) -> FloatArray:
    """Apply the nets' box regression (offsets are fractions of the box size)."""
    extra = 1.0 if plus_one else 0.0
    w = boxes[:, 2] - boxes[:, 0] + extra
    h = boxes[:, 3] - boxes[:, 1] + extra
    out = boxes.copy()
    out[:, 0] += offsets[:, 0] * w
    out[:, 1] += offsets[:, 1] * h
    out[:, 2] += offsets[:, 2] * w
    out[:, 3] += offsets[:, 3] * h
    return out


class MtcnnDetector:
    """Finds faces and their five landmarks with the manifest's P-, R- and O-Net."""

    def __init__(
        self, models_dir: Path, manifest: Manifest, settings: DetectorSettings | None = None
    ) -> None:
        self.settings = settings or DetectorSettings()
        self.pnet = open_session(models_dir, manifest.artifact("pnet"))
        self.rnet = open_session(models_dir, manifest.artifact("rnet"))
        self.onet = open_session(models_dir, manifest.artifact("onet"))

    def _scales(self, height: int, width: int) -> list[float]:
        m = _PNET_CELL / self.settings.min_face_size
        side = min(height, width) * m
        scales = []
        while side >= _PNET_CELL:
            scales.append(m)
            m *= self.settings.scale_factor
            side *= self.settings.scale_factor
        return scales

    def _pyramid(self, picture: Image.Image, smallest_face: float | None) -> list[tuple[float, Image.Image]]:
        """(scale, image) per pyramid level searched, each level resized from the one above it.

        Level k's 12-pixel window spans min_face_size / f^k image pixels. Leading levels are made but
        not searched while the next level's window still fits inside `smallest_face`: that level finds
        such a face, and the skipped ones (the largest) would only add smaller ones. They are still made
        because every level is shrunk from the one above it, and the levels searched stay the same.
        """
        width, height = picture.size
        levels: list[tuple[float, Image.Image]] = []
        source = picture
        for scale in self._scales(height, width):
            size = (int(width * scale + 1), int(height * scale + 1))
            # Shrinking the previous level instead of the original costs a fraction of the time.
            source = source.resize(size, _RESAMPLE)
            next_window = _PNET_CELL / (scale * self.settings.scale_factor)
            if levels or smallest_face is None or next_window > smallest_face:
                levels.append((scale, source))
        return levels

    def _stage_one(self, pyramid: list[tuple[float, Image.Image]]) -> FloatArray:
        """P-Net over the pyramid -> candidate boxes (x1, y1, x2, y2, score), squared."""
        found = []
        for scale, level in pyramid:
            scaled = np.asarray(level, dtype=np.float32)
            small = scaled.shape[0] * scaled.shape[1] <= _PNET_ONE_THREAD_PIXELS
            regression, probability = self.pnet.run(None, {"images": scaled[None]}, small=small)
            rows, cols = np.nonzero(probability[0] >= self.settings.thresholds[0])
            if rows.size == 0:
                continue
            score = probability[0, rows, cols]
            offsets = regression[0][:, rows, cols].T
            cells = np.stack([cols, rows], axis=1).astype(np.float32)
            top_left = np.floor((_PNET_STRIDE * cells + 1) / scale)
            bottom_right = np.floor((_PNET_STRIDE * cells + _PNET_CELL) / scale)
            boxes = np.hstack([top_left, bottom_right, score[:, None], offsets]).astype(np.float32)
            found.append(boxes[nms(boxes[:, :4], boxes[:, 4], 0.5)])
        if not found:
            return np.zeros((0, 5), np.float32)
        boxes = np.vstack(found)
        boxes = boxes[nms(boxes[:, :4], boxes[:, 4], 0.7)]
        refined = _regress(boxes[:, :4], boxes[:, 5:9], plus_one=False)
        return _square(np.hstack([refined, boxes[:, 4:5]]))

    @staticmethod
    def _crops(
        picture: Image.Image, pyramid: list[tuple[float, Image.Image]], boxes: FloatArray, side: int
    ) -> FloatArray:
        """Square crops resized to side x side; parts outside the image are black, as MTCNN pads.

        A crop that shrinks a lot is cut from the smallest pyramid level that still holds at least
        side x side pixels of it: the same area average for a fraction of the work.
        """
        width, height = picture.size
        # Coarsest first; each level's true scale per axis (its sizes were rounded up).
        levels = [(lv.size[0] / width, lv.size[1] / height, lv) for _, lv in reversed(pyramid)]
        # Paste every resized crop into one tall strip: one array conversion instead of one per crop.
        strip = Image.new("RGB", (side, side * len(boxes)))
        for i, (x1, y1, x2, y2) in enumerate(np.trunc(boxes[:, :4]).astype(int).tolist()):
            region = (x1 - 1, y1 - 1, x2, y2)
            if region[0] >= 0 and region[1] >= 0 and region[2] <= width and region[3] <= height:
                extent = min(region[2] - region[0], region[3] - region[1])
                sx, sy, source = next(
                    ((sx, sy, lv) for sx, sy, lv in levels if extent * min(sx, sy) >= side),
                    (1.0, 1.0, picture),
                )
                box = (region[0] * sx, region[1] * sy, region[2] * sx, region[3] * sy)
                resized = source.resize((side, side), _RESAMPLE, box=box)
            else:
                resized = picture.crop(region).resize((side, side), _RESAMPLE)
            strip.paste(resized, (0, side * i))
        return np.asarray(strip, dtype=np.float32).reshape(len(boxes), side, side, 3)

    def detect(self, image: npt.NDArray[np.uint8], smallest_face: float | None = None) -> list[Detection]:
        """Every face in an RGB uint8 image, best score first.

        With `smallest_face` (pixels), the pyramid starts at the finest level that still finds a face of
        that size: faces smaller than it may be missed, and half of P-Net's work is saved.
        """
        if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < _PNET_CELL:
            return []
        picture = Image.fromarray(image)
        pyramid = self._pyramid(picture, smallest_face)
        boxes = self._stage_one(pyramid)
        if len(boxes) == 0:
            return []

        regression, probability = self.rnet.run(None, {"crops": self._crops(picture, pyramid, boxes, 24)})
        keep = probability > self.settings.thresholds[1]
        boxes = np.hstack([boxes[keep, :4], probability[keep, None]])
        regression = regression[keep]
        picked = nms(boxes[:, :4], boxes[:, 4], 0.7)
        boxes, regression = boxes[picked], regression[picked]
        boxes = _square(np.hstack([_regress(boxes[:, :4], regression, plus_one=True), boxes[:, 4:5]]))
        if len(boxes) == 0:
            return []

        regression, landmarks, probability = self.onet.run(
            None, {"crops": self._crops(picture, pyramid, boxes, 48)}
        )
        keep = probability > self.settings.thresholds[2]
        boxes, regression, landmarks = boxes[keep], regression[keep], landmarks[keep]
        boxes[:, 4] = probability[keep]
        w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        xs = w * landmarks[:, :5] + boxes[:, 0:1] - 1
        ys = h * landmarks[:, 5:] + boxes[:, 1:2] - 1
        boxes[:, :4] = _regress(boxes[:, :4], regression, plus_one=True)
        picked = nms(boxes[:, :4], boxes[:, 4], 0.7, mode="min")
        return [
            Detection(
                box=(float(boxes[i, 0]), float(boxes[i, 1]), float(boxes[i, 2]), float(boxes[i, 3])),
                score=float(boxes[i, 4]),
                landmarks=tuple((float(x), float(y)) for x, y in zip(xs[i], ys[i], strict=True)),
            )
            for i in picked
        ]
