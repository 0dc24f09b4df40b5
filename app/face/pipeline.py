"""FacePipeline: image bytes -> faces with embeddings, and the one-face / many-face policies."""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from app.face.align import ChipCut, FivePointCut, pyramid_factor
from app.face.batcher import EmbedChips
from app.face.catalog import ModelCatalog
from app.face.choice import FaceChoice, dominates
from app.face.detector import Detection, DetectorSettings, MtcnnDetector
from app.face.embedder import Embedder
from app.face.errors import FaceError, FaceTooSmall, ManyFaces
from app.face.image import DEFAULT_DETECTION_SIDE, DecodeLimits, decode_image
from app.face.photo import Photo

THUMBNAIL_SIDE = 256
THUMBNAIL_FACE_SHARE = 0.5  # the chip's face takes half the thumbnail's side: a margin all round
# Thumbnails of a model that crops boxes are aligned on ArcFace's five points, so that every thumbnail
# is an upright face with a margin, whatever model enrolled it.
THUMBNAIL_TEMPLATE = FivePointCut(
    ((38.2946, 51.6963), (73.5318, 51.5014), (56.0252, 71.7366), (41.5493, 92.3655), (70.7299, 92.2041)), 112
)

# Told each stage's name (decode, detect, align, embed) and its seconds, for metrics.
StageObserver = Callable[[str, float], None]


@dataclass(frozen=True)
class PipelineSettings:
    """Serving policy: decode limits, the smallest usable face, and flip averaging (its one owner)."""

    limits: DecodeLimits = field(default_factory=DecodeLimits)
    min_face_size: float = 32.0
    flip_average: bool = True
    detection_side: int = DEFAULT_DETECTION_SIDE  # faces are found on a copy no longer than this


@dataclass(frozen=True)
class Face:
    """A detected face and its unit-length embedding."""

    detection: Detection
    embedding: npt.NDArray[np.float32]


@dataclass(frozen=True)
class FaceResult:
    """The face a request uses, how many faces its image held, and all of them (largest first)."""

    face: Face
    faces_found: int
    detections: Sequence[Detection] = ()
    thumbnail: bytes | None = None  # a JPEG of the aligned face with a margin, when asked for


@dataclass(frozen=True)
class Upload:
    """An image of a request: the field it came in (named in errors), its bytes and the face to use."""

    field_name: str
    data: bytes
    choice: FaceChoice = field(default_factory=FaceChoice)


def largest_first(detections: Sequence[Detection]) -> list[Detection]:
    """Detections ordered by box area, largest first."""
    return sorted(detections, key=lambda d: d.area, reverse=True)


def embed_directly(embedder: Embedder, settings: PipelineSettings) -> EmbedChips:
    """Chips -> vectors by one embedder call, flip-averaged as the settings say."""
    return partial(embedder.embed, flip_average=settings.flip_average)


class FacePipeline:
    """Decode, detect, align and embed; every face of one call is embedded in one batch.

    `embed_chips` is how chips become vectors: directly by default, or through a micro-batcher
    that a serving engine shares between concurrent requests.
    """

    def __init__(
        self,
        detector: MtcnnDetector,
        embedder: Embedder,
        settings: PipelineSettings | None = None,
        embed_chips: EmbedChips | None = None,
        on_stage: StageObserver | None = None,
    ) -> None:
        self.detector = detector
        self.embedder = embedder
        self.settings = settings or PipelineSettings()
        self.embed_chips = embed_chips or self._embed_directly
        self._on_stage = on_stage

    def _embed_directly(self, chips: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """Chips -> vectors by one embedder call, flip-averaged as the settings say when it runs (a
        benchmark may change them between passes)."""
        return self.embedder.embed(chips, flip_average=self.settings.flip_average)

    @contextmanager
    def _stage(self, name: str) -> Iterator[None]:
        if self._on_stage is None:
            yield
            return
        started = time.perf_counter()
        yield
        self._on_stage(name, time.perf_counter() - started)

    @classmethod
    def from_models(
        cls,
        models_dir: Path,
        settings: PipelineSettings | None = None,
        detector_settings: DetectorSettings | None = None,
        model: str | None = None,
    ) -> FacePipeline:
        """Load and verify the detector and an embedder (the built one, or the named `model`)."""
        catalog = ModelCatalog.load(models_dir)
        detector = MtcnnDetector(models_dir, catalog.manifest, detector_settings)
        artifact = catalog.built if model is None else catalog.find(model)
        return cls(detector, Embedder(models_dir, artifact), settings)

    @property
    def model_id(self) -> str:
        """The embedder's id, stored beside every embedding."""
        return self.embedder.model_id

    def decode(self, data: bytes) -> npt.NDArray[np.uint8]:
        """Bytes -> upright RGB uint8 (typed errors for bad input)."""
        return decode_image(data, self.settings.limits)

    def detect(self, image: npt.NDArray[np.uint8], scale: float = 1.0) -> list[Detection]:
        """Every face at least min_face_size across (smaller ones may be missed), largest first; `scale`
        is the image's size over the photo's, whose pixels min_face_size counts."""
        return largest_first(self.detector.detect(image, self.settings.min_face_size * scale))

    def decode_photo(self, data: bytes) -> Photo:
        """Bytes -> a Photo: a bounded detection copy, and pixels for chips (typed errors for bad input)."""
        with self._stage("decode"):
            return Photo(data, self.settings.limits, self.settings.detection_side)

    def detect_photo(self, photo: Photo) -> list[Detection]:
        """Every face of a photo at least min_face_size across, found on its detection copy, in
        full-resolution pixels; largest first."""
        sx, sy = photo.scale
        with self._stage("detect"):
            found = self.detect(photo.detection, min(sx, sy))
        if (sx, sy) == (1.0, 1.0):
            return found

        def x(value: float) -> float:  # pixel centres: centre i of the copy is at (i + 0.5) / s - 0.5
            return (value + 0.5) / sx - 0.5

        def y(value: float) -> float:
            return (value + 0.5) / sy - 0.5

        return [
            Detection(
                box=(x(d.box[0]), y(d.box[1]), x(d.box[2]), y(d.box[3])),
                score=d.score,
                landmarks=tuple((x(px), y(py)) for px, py in d.landmarks),
            )
            for d in found
        ]

    def chip(self, image: npt.NDArray[np.uint8], detection: Detection) -> npt.NDArray[np.uint8]:
        """The aligned chip of one detected face."""
        height, width = image.shape[:2]
        return self.embedder.cut.chip(image, detection.box, detection.landmarks, (width, height))

    def photo_chip(self, photo: Photo, detection: Detection) -> npt.NDArray[np.uint8]:
        """The aligned chip of a face of a photo, from the coarsest pixels that hold all the detail the
        chip keeps (a JPEG's face five times the chip's size is cut from its 1/2 or 1/4 decoding)."""
        return _aligned(photo, detection, self.embedder.cut)

    def thumbnail(self, photo: Photo, detection: Detection) -> bytes:
        """A JPEG of the face aligned as its chip is, with a margin round it (the face takes half the
        side), so that a person can see what was enrolled and a later model can embed it again."""
        cut = self.embedder.cut
        points = cut if isinstance(cut, FivePointCut) else THUMBNAIL_TEMPLATE
        buffer = io.BytesIO()
        thumbnail = _aligned(photo, detection, points.widened(THUMBNAIL_SIDE, THUMBNAIL_FACE_SHARE))
        Image.fromarray(thumbnail).save(buffer, "JPEG", quality=90)
        return buffer.getvalue()

    def embed_photos(self, photos: Sequence[Photo], detections: Sequence[Detection]) -> list[Face]:
        """Embed the i-th detection of the i-th photo, all in one batch."""
        if not detections:
            return []
        with self._stage("align"):
            chips = np.stack([self.photo_chip(photo, d) for photo, d in zip(photos, detections, strict=True)])
        with self._stage("embed"):
            vectors = self.embed_chips(chips)
        return [Face(d, v) for d, v in zip(detections, vectors, strict=True)]

    def embed(self, images: Sequence[npt.NDArray[np.uint8]], detections: Sequence[Detection]) -> list[Face]:
        """Embed the i-th detection of the i-th image, all in one batch."""
        if not detections:
            return []
        chips = np.stack([self.chip(image, d) for image, d in zip(images, detections, strict=True)])
        vectors = self.embed_chips(chips)
        return [Face(d, v) for d, v in zip(detections, vectors, strict=True)]

    def _usable(self, detection: Detection) -> Detection:
        if detection.size < self.settings.min_face_size:
            raise FaceTooSmall(
                f"the face is {detection.size:.0f} px; at least {self.settings.min_face_size:.0f} px "
                "is needed for a reliable embedding"
            )
        return detection

    def _found(self, upload: Upload) -> tuple[Photo, list[Detection]]:
        with culprit(upload.field_name):
            photo = self.decode_photo(upload.data)
            return photo, self.detect_photo(photo)

    def chosen_faces(self, uploads: Sequence[Upload]) -> list[FaceResult]:
        """Each upload's chosen face (verify, identify), embedded together in one batch."""
        photos, picked = [], []
        for upload in uploads:
            photo, detections = self._found(upload)
            with culprit(upload.field_name):
                picked.append((self._usable(upload.choice.pick(detections, photo.size)), detections))
            photos.append(photo)
        faces = self.embed_photos(photos, [detection for detection, _ in picked])
        return [FaceResult(face, len(found), found) for face, (_, found) in zip(faces, picked, strict=True)]

    def enrollment_faces(
        self, uploads: Sequence[Upload], allow_largest: bool = False, thumbnails: bool = False
    ) -> list[FaceResult]:
        """One face per upload (enroll): the only one, one the caller named, or the largest when it
        dominates (DOMINANCE times the area of the next) or `allow_largest` says so; else ManyFaces
        with the competing boxes. With `thumbnails`, each result carries its face's thumbnail."""
        photos, picked = [], []
        for upload in uploads:
            photo, detections = self._found(upload)
            with culprit(upload.field_name):
                if upload.choice.rule == "largest" and not allow_largest and not dominates(detections):
                    boxes = [d.box for d in detections]
                    raise ManyFaces(
                        f"{len(detections)} faces were found and none is twice the area of the others: "
                        "send a photo of one person, or choose a face (face=, as an index or a box of "
                        "/detect's answer), or allow_largest=true",
                        boxes,
                    )
                picked.append((self._usable(upload.choice.pick(detections, photo.size)), detections))
            photos.append(photo)
        faces = self.embed_photos(photos, [detection for detection, _ in picked])
        return [
            FaceResult(face, len(found), found, self.thumbnail(photo, face.detection) if thumbnails else None)
            for face, (_, found), photo in zip(faces, picked, photos, strict=True)
        ]

    def largest_faces(self, payloads: Sequence[bytes]) -> list[FaceResult]:
        """The largest face of each image, embedded together in one batch."""
        return self.chosen_faces([Upload(f"images[{i}]", data) for i, data in enumerate(payloads)])

    def single_face(self, data: bytes, allow_largest: bool = False) -> FaceResult:
        """One face of an image as enroll takes it (see enrollment_faces)."""
        (result,) = self.enrollment_faces([Upload("image", data)], allow_largest)
        return result

    def every_face(self, upload: Upload, limit: int) -> tuple[FaceResult, list[Face]]:
        """The upload's chosen face, and every face large enough to embed (largest first, at most
        `limit`, the chosen one always among them), from one decode and one embedder batch."""
        photo, detections = self._found(upload)
        with culprit(upload.field_name):
            chosen = self._usable(upload.choice.pick(detections, photo.size))
        usable = [d for d in detections if d.size >= self.settings.min_face_size][:limit]
        if chosen not in usable:
            usable = sorted([chosen, *usable[: limit - 1]], key=lambda d: d.area, reverse=True)
        faces = self.embed_photos([photo] * len(usable), usable)
        picked = faces[usable.index(chosen)]
        return FaceResult(picked, len(detections), detections), faces

    def all_faces(self, data: bytes, field: str = "image", limit: int | None = None) -> list[Face]:
        """Every face large enough to embed, largest first (at most `limit` of them)."""
        photo, detections = self._found(Upload(field, data))
        usable = [d for d in detections if d.size >= self.settings.min_face_size][:limit]
        return self.embed_photos([photo] * len(usable), usable)


def _aligned(photo: Photo, detection: Detection, cut: ChipCut) -> npt.NDArray[np.uint8]:
    """The face's chip as `cut` cuts it, from the coarsest pixels that hold all the detail it keeps."""
    matrix = cut.chip_to_image(detection.box, detection.landmarks, photo.size)
    reduction = photo.reduction_for(pyramid_factor(matrix))
    pixels = photo.pixels(reduction)
    return cut.chip(pixels, detection.box, detection.landmarks, photo.size, reduction, matrix=matrix)


@contextmanager
def culprit(field: str) -> Iterator[None]:
    """Name `field` in a FaceError raised inside, unless it names one already."""
    try:
        yield
    except FaceError as exc:
        if exc.field is None:
            exc.field = field
        raise
