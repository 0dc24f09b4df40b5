"""Safe decoding of uploaded bytes into an upright RGB uint8 array."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps, UnidentifiedImageError

from app.face.errors import BadImage, ImageTooLarge, UnsupportedImageFormat

# Pillow's format names; MPO is the multi-picture JPEG that many cameras write.
ACCEPTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "BMP", "GIF", "TIFF"})

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000
# Faces are found on a copy no longer than this: MTCNN's cost and memory grow with the pixels it sees,
# and a face that fills a few dozen pixels of such a copy is still found.
DEFAULT_DETECTION_SIDE = 1280
_ORIENTATION = 0x0112  # the EXIF tag


@dataclass(frozen=True)
class DecodeLimits:
    """Refuse inputs above these sizes before any pixel is decoded."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS


def _open(data: bytes, limits: DecodeLimits) -> Image.Image:
    if not data:
        raise BadImage("the image is empty")
    if len(data) > limits.max_bytes:
        raise ImageTooLarge(f"the image has {len(data):,} bytes; the limit is {limits.max_bytes:,}")
    try:
        with warnings.catch_warnings():
            # Our own pixel limit below is the guard; Pillow's bomb warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise BadImage("the data is not an image in any known format") from None
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(str(exc)) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise BadImage(f"the image header is unreadable: {exc}") from None
    if image.format not in ACCEPTED_FORMATS:
        raise UnsupportedImageFormat(
            f"{image.format} images are not accepted; send JPEG, PNG, WebP, BMP, GIF or TIFF"
        )
    width, height = image.size
    if width < 1 or height < 1:
        raise BadImage(f"the image has no pixels ({width}x{height})")
    if width * height > limits.max_pixels:
        raise ImageTooLarge(
            f"the image has {width}x{height} = {width * height:,} pixels; the limit is {limits.max_pixels:,}"
        )
    return image


def to_rgb(image: Image.Image) -> npt.NDArray[np.uint8]:
    """Any Pillow mode -> RGB uint8; high-bit-depth modes are scaled, not clipped."""
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        if mode.startswith("I;16") or (mode == "I" and values.max(initial=0) > 255):
            values = values / 257.0  # 16-bit range onto 8 bits
        elif mode == "F" and values.max(initial=0) <= 1.0:
            values = values * 255.0  # floats in 0..1
        gray = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "RGB":
        return np.asarray(image, dtype=np.uint8)
    if mode == "L":
        # Grey straight to three channels: no full-size RGB image inside Pillow on the way.
        gray = np.asarray(image, dtype=np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info):
        # Transparent pixels hold arbitrary colours: flatten onto white, as viewers show them.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def detection_copy(upright: Image.Image, side: int) -> Image.Image:
    """A copy whose longer side is `side` (the image itself when it is no longer), in a mode to_rgb takes."""
    width, height = upright.size
    if max(width, height) <= side:
        return upright
    factor = side / max(width, height)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    # Into a mode Pillow resizes, keeping what to_rgb needs: alpha (flattened on white) and 16 bits.
    if upright.mode in ("LA", "PA", "La", "RGBa") or "transparency" in upright.info:
        upright = upright.convert("RGBA")
    elif upright.mode.startswith("I;16"):
        upright = upright.convert("I")
    elif upright.mode not in ("L", "RGB", "RGBA", "I", "F"):
        upright = upright.convert("RGB")
    # An integer block average first (fast, and no full-size intermediate), then bilinear to the size.
    whole = max(width, height) // side
    reduced = upright.reduce(whole) if whole > 1 else upright
    return reduced.resize(size, Image.Resampling.BILINEAR)


def peek_jpeg(data: bytes, limits: DecodeLimits | None = None) -> tuple[int, int] | None:
    """A JPEG's upright (width, height) from its header alone (its EXIF comes before the pixels); None
    for another format. The limits' refusals apply."""
    image = _open(data, limits or DecodeLimits())
    try:
        if image.format not in ("JPEG", "MPO"):
            return None
        width, height = image.size
        turned = image.getexif().get(_ORIENTATION, 1) in (5, 6, 7, 8)  # a quarter turn either way
        return (height, width) if turned else (width, height)
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise BadImage(f"the image header is unreadable: {exc}") from None
    finally:
        image.close()


def decoded(data: bytes, limits: DecodeLimits | None, reduction: int = 1) -> Image.Image:
    """The upright first frame; a JPEG decoded at 1/reduction of its size (1, 2, 4 or 8) by libjpeg's
    scaled decoding, which never makes the full-size image."""
    image = _open(data, limits or DecodeLimits())
    try:
        if reduction > 1:
            width, height = image.size
            # Pillow picks the largest libjpeg scale that keeps at least the size asked for.
            image.draft(image.mode, (max(1, width // reduction), max(1, height // reduction)))
        image.seek(0)  # animated GIF / multi-page TIFF: the first frame
        image.load()
        if image.getexif().get(_ORIENTATION, 1) == 1:
            return image  # upright already: no copy of a big photo
        return ImageOps.exif_transpose(image)
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        image.close()
        raise BadImage(f"the image data is corrupt or truncated: {exc}") from None


def decode_image(data: bytes, limits: DecodeLimits | None = None) -> npt.NDArray[np.uint8]:
    """Bytes -> (H, W, 3) RGB uint8, upright per EXIF; typed errors for every bad input."""
    upright = decoded(data, limits)
    try:
        return np.ascontiguousarray(to_rgb(upright))
    finally:
        upright.close()
