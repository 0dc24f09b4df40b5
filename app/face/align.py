"""How a face becomes the embedder's square chip: five-point similarity alignment onto a template, or a
crop of the detector's box."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image

Points = Sequence[tuple[float, float]] | npt.NDArray[np.floating]
Matrix = npt.NDArray[np.float64]

# dlib downsamples with a pyramid before sampling a chip from a much larger face; without it the
# bilinear warp aliases. Past this many source pixels per chip pixel, the source is reduced first.
_MAX_SHRINK = 2.0


def similarity_transform(source: Points, target: Points) -> npt.NDArray[np.float64]:
    """Least-squares similarity (Umeyama) taking source points onto target points, as a 2x3 matrix."""
    src = np.asarray(source, dtype=np.float64)
    dst = np.asarray(target, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"need matching (n >= 2, 2) point sets, got {src.shape} and {dst.shape}")
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    covariance = dst_c.T @ src_c / len(src)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1.0  # a reflection is not a similarity
    rotation = u @ sign @ vt
    variance = (src_c**2).sum() / len(src)
    scale = float(np.trace(np.diag(singular) @ sign) / variance) if variance > 0 else 1.0
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def apply_transform(matrix: npt.NDArray[np.float64], points: Points) -> npt.NDArray[np.float64]:
    """Map (n, 2) points through a 2x3 affine matrix."""
    pts = np.asarray(points, dtype=np.float64)
    return pts @ matrix[:, :2].T + matrix[:, 2]


def invert_transform(matrix: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The inverse of a 2x3 affine matrix."""
    linear = np.linalg.inv(matrix[:, :2])
    return np.hstack([linear, (-linear @ matrix[:, 2])[:, None]])


def chip_to_image_transform(landmarks: Points, template: Points) -> npt.NDArray[np.float64]:
    """The least-squares map from chip coordinates to image coordinates (dlib fits this direction)."""
    return similarity_transform(template, landmarks)


def pyramid_factor(chip_to_image: npt.NDArray[np.float64]) -> int:
    """How many times (a power of two) the source is averaged down before a chip is sampled from it:
    halving as dlib's pyramid does, until at most 2 source pixels remain per chip pixel."""
    shrink = math.sqrt(abs(np.linalg.det(chip_to_image[:, :2])))  # source pixels per chip pixel
    return 2 ** math.floor(math.log2(shrink)) if shrink > _MAX_SHRINK else 1


def _crop(
    image: npt.NDArray[np.uint8], left: int, top: int, right: int, bottom: int
) -> npt.NDArray[np.uint8]:
    """image[top:bottom, left:right], black where the box lies outside the image (as Pillow crops)."""
    height, width = image.shape[:2]
    out = np.zeros((bottom - top, right - left, image.shape[2]), np.uint8)
    x0, y0, x1, y1 = max(left, 0), max(top, 0), min(right, width), min(bottom, height)
    if x0 < x1 and y0 < y1:
        out[y0 - top : y1 - top, x0 - left : x1 - left] = image[y0:y1, x0:x1]
    return out


def warp_chip(
    image: npt.NDArray[np.uint8], chip_to_image: npt.NDArray[np.float64], size: int
) -> npt.NDArray[np.uint8]:
    """Sample a size x size chip: chip pixel (c, r) takes the image at chip_to_image @ (c, r, 1), bilinear.

    Coordinates put pixel centres on integers; outside the image is black.
    """
    matrix = chip_to_image.copy()
    # Only the chip's footprint (and a margin for the bilinear taps) is handed to Pillow: a big photo
    # is never copied whole.
    corners = apply_transform(matrix, [(0, 0), (size - 1, 0), (0, size - 1), (size - 1, size - 1)])
    left, top = np.floor(corners.min(axis=0)).astype(int) - 2
    right, bottom = np.ceil(corners.max(axis=0)).astype(int) + 2
    factor = pyramid_factor(matrix)
    right += (factor - (right - left) % factor) % factor
    bottom += (factor - (bottom - top) % factor) % factor
    picture = Image.fromarray(_crop(image, int(left), int(top), int(right), int(bottom)))
    if factor > 1:
        picture = picture.reduce(factor)
    # Image point p sits at (p - origin - (factor - 1) / 2) / factor in the reduced crop.
    offset = np.array([left, top], dtype=np.float64) + (factor - 1) / 2.0
    matrix[:, 2] = (matrix[:, 2] - offset) / factor
    matrix[:, :2] /= factor
    # Pillow's affine transform feeds integer output coordinates and reads input pixel centres at +0.5
    # (checked against dlib's get_face_chip: 0.67 grey levels mean difference, 4.4 unshifted).
    a, b, c = matrix[0]
    d, e, f = matrix[1]
    coefficients = (a, b, c + 0.5, d, e, f + 0.5)
    chip = picture.transform((size, size), Image.Transform.AFFINE, coefficients, Image.Resampling.BILINEAR)
    return np.asarray(chip, dtype=np.uint8)


def align_face(
    image: npt.NDArray[np.uint8], landmarks: Points, template: Points, size: int
) -> npt.NDArray[np.uint8]:
    """The aligned size x size chip of one face, given its landmarks and the template's chip points."""
    return warp_chip(image, chip_to_image_transform(landmarks, template), size)


def widened_template(template: Points, chip_size: int, size: int, face_share: float) -> Points:
    """The template's points for a size x size crop where the chip's face takes `face_share` of the
    side, centred: the same alignment with a margin round it (for thumbnails a later model can
    detect and align again)."""
    scale = size / chip_size * face_share
    centre = chip_size / 2
    return tuple((size / 2 + (x - centre) * scale, size / 2 + (y - centre) * scale) for x, y in template)


Box = tuple[float, float, float, float]


def in_reduced_pixels(matrix: Matrix, reduction: int) -> Matrix:
    """A chip-to-image map onto the image's pixels at 1/reduction (full-size p sits at (p - (r-1)/2) / r,
    as a decoder's block averages place it)."""
    reduced = matrix / reduction
    reduced[:, 2] -= (reduction - 1) / 2.0 / reduction
    return reduced


def resize_region(pixels: npt.NDArray[np.uint8], edges: Box, size: int) -> npt.NDArray[np.uint8]:
    """The region within `edges` (pixel edges, left top right bottom) resized to size x size by Pillow's
    bilinear filter, which widens to average when it shrinks; only the region is handed to Pillow."""
    left, top = max(math.floor(edges[0]), 0), max(math.floor(edges[1]), 0)
    right, bottom = math.ceil(edges[2]), math.ceil(edges[3])
    region = Image.fromarray(np.ascontiguousarray(pixels[top:bottom, left:right]))
    inner = (edges[0] - left, edges[1] - top, edges[2] - left, edges[3] - top)
    return np.asarray(region.resize((size, size), Image.Resampling.BILINEAR, box=inner), dtype=np.uint8)


@dataclass(frozen=True)
class FivePointCut:
    """A chip aligned by the five landmarks onto a template (dlib's and ArcFace's way)."""

    points: tuple[tuple[float, float], ...]
    size: int

    def chip_to_image(self, box: Box, landmarks: Points, image_size: tuple[int, int]) -> Matrix:
        """The map from chip pixels to image pixels for one face."""
        return chip_to_image_transform(landmarks, self.points)

    def chip(
        self,
        pixels: npt.NDArray[np.uint8],
        box: Box,
        landmarks: Points,
        image_size: tuple[int, int],
        reduction: int = 1,
        matrix: Matrix | None = None,
    ) -> npt.NDArray[np.uint8]:
        """The face's chip, from the image's pixels at 1/reduction (box and landmarks in full-size pixels);
        `matrix` is the face's chip_to_image map where the caller has it already."""
        if matrix is None:
            matrix = self.chip_to_image(box, landmarks, image_size)
        return warp_chip(pixels, in_reduced_pixels(matrix, reduction), self.size)

    def widened(self, size: int, face_share: float) -> FivePointCut:
        """The same alignment into a size x size crop where the chip's face takes face_share of the side."""
        return FivePointCut(tuple(widened_template(self.points, self.size, size, face_share)), size)


@dataclass(frozen=True)
class BoxCut:
    """A chip cut from the detector's box, widened by a margin of chip pixels and resized without
    regard to landmarks, as facenet-pytorch's extract_face cuts a PIL image: the box widened, cut to
    whole pixels within the image, resized with Pillow's bilinear filter."""

    margin: float
    size: int

    def edges(self, box: Box, image_size: tuple[int, int]) -> Box:
        """The whole-pixel region the chip is resized from."""
        x0, y0, x1, y1 = box
        grow_x = self.margin * (x1 - x0) / (self.size - self.margin) / 2
        grow_y = self.margin * (y1 - y0) / (self.size - self.margin) / 2
        left, top = int(max(x0 - grow_x, 0)), int(max(y0 - grow_y, 0))
        right = max(int(min(x1 + grow_x, image_size[0])), left + 1)
        bottom = max(int(min(y1 + grow_y, image_size[1])), top + 1)
        return (left, top, right, bottom)

    def chip_to_image(self, box: Box, landmarks: Points, image_size: tuple[int, int]) -> Matrix:
        """The map from chip pixels to image pixels for one face (what a resize of the region does)."""
        left, top, right, bottom = self.edges(box, image_size)
        sx, sy = (right - left) / self.size, (bottom - top) / self.size
        # Chip pixel centre c samples the region at (c + 0.5) * s - 0.5.
        return np.array([[sx, 0.0, left + 0.5 * sx - 0.5], [0.0, sy, top + 0.5 * sy - 0.5]])

    def chip(
        self,
        pixels: npt.NDArray[np.uint8],
        box: Box,
        landmarks: Points,
        image_size: tuple[int, int],
        reduction: int = 1,
        matrix: Matrix | None = None,
    ) -> npt.NDArray[np.uint8]:
        """The face's chip, from the image's pixels at 1/reduction (the box in full-size pixels); a
        box's region is its own map, so `matrix` is not needed."""
        left, top, right, bottom = (edge / reduction for edge in self.edges(box, image_size))
        return resize_region(pixels, (left, top, right, bottom), self.size)


ChipCut = FivePointCut | BoxCut
