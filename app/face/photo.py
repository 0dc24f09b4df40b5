"""A decoded upload as the pipeline uses it: a bounded copy to find faces on, pixels to cut chips from."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from app.face.errors import BadImage
from app.face.image import DEFAULT_DETECTION_SIDE, DecodeLimits, decoded, detection_copy, peek_jpeg, to_rgb

# libjpeg decodes at 1/2, 1/4 and 1/8 of the size directly; other formats decode whole.
_JPEG_FORMATS = frozenset({"JPEG", "MPO"})
_JPEG_REDUCTIONS = (1, 2, 4, 8)
_PIXEL_ERRORS = (OSError, ValueError, SyntaxError, EOFError)


class Photo:
    """An upright photo: a copy no longer than the detection side, where faces are looked for, and its
    pixels at full size or, for a JPEG, at 1/2, 1/4 or 1/8 of it where a face needs no more.

    Every coordinate the pipeline uses is in full-size pixels; pixels(r) holds full-size pixel p at
    (p - (r - 1) / 2) / r, as the decoder's block averages place them.
    """

    def __init__(
        self, data: bytes, limits: DecodeLimits | None = None, detection_side: int = DEFAULT_DETECTION_SIDE
    ) -> None:
        self._data = data
        self._limits = limits
        jpeg_size = peek_jpeg(data, limits)
        # Only JPEGs larger than the detection side decode in parts; every other photo decodes whole,
        # as it always has, so its chips (and the calibration made from such photos) stay as they were.
        big_jpeg = jpeg_size is not None and max(jpeg_size) > detection_side
        self.reductions: tuple[int, ...] = _JPEG_REDUCTIONS if big_jpeg else (1,)
        self._pixels: dict[int, npt.NDArray[np.uint8]] = {}
        # A big JPEG is decoded for detection only as large as the copy needs: a 12 MP photo at 1/2.
        coarse = 1
        if jpeg_size is not None and big_jpeg:
            coarse = max(r for r in self.reductions if max(jpeg_size) / r >= detection_side)
        source = decoded(data, limits, coarse)
        self.size: tuple[int, int] = jpeg_size if jpeg_size is not None else source.size
        if source.size != tuple(-(-side // coarse) for side in self.size):
            source.close()
            coarse, source = 1, decoded(data, limits)  # the decoder chose another scale: decode whole
        try:
            small = detection_copy(source, detection_side)
            self.detection: npt.NDArray[np.uint8] = np.ascontiguousarray(to_rgb(small))
            # Kept: a face may need no more detail than these pixels hold.
            self._pixels[coarse] = self.detection if small is source else np.ascontiguousarray(to_rgb(source))
        except _PIXEL_ERRORS as exc:  # Pillow reads some formats' pixel data only here
            raise BadImage(f"the image data is corrupt or truncated: {exc}") from None
        finally:
            source.close()
        height, width = self.detection.shape[:2]
        self.scale: tuple[float, float] = (width / self.size[0], height / self.size[1])

    def pixels(self, reduction: int = 1) -> npt.NDArray[np.uint8]:
        """(H / r, W / r, 3) RGB pixels, decoded once per reduction; r must be one of `reductions`."""
        if reduction not in self.reductions:
            raise ValueError(f"this photo decodes at {self.reductions}, not 1/{reduction}")
        if reduction not in self._pixels:
            self._pixels[reduction] = self._decode(reduction)
        return self._pixels[reduction]

    def _decode(self, reduction: int) -> npt.NDArray[np.uint8]:
        image = decoded(self._data, self._limits, reduction)
        try:
            expected = tuple(-(-side // reduction) for side in self.size)
            if image.size != expected:
                # The decoder chose another scale: average the whole image down instead.
                whole = decoded(self._data, self._limits)
                image.close()
                image = whole.reduce(reduction) if reduction > 1 else whole
            return np.ascontiguousarray(to_rgb(image))
        except _PIXEL_ERRORS as exc:
            raise BadImage(f"the image data is corrupt or truncated: {exc}") from None
        finally:
            image.close()

    def reduction_for(self, factor: int) -> int:
        """The coarsest available reduction that keeps at least the detail a factor-times shrink uses."""
        return max(r for r in self.reductions if r <= factor)
