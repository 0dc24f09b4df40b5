"""A corpus of malformed, oversized and unsupported image files, generated on the fly."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable

import numpy as np
from PIL import Image

from app.face.errors import BadImage, ImageError, ImageTooLarge, UnsupportedImageFormat


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    """An image saved in a format, as bytes."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def sample(size: tuple[int, int] = (64, 48)) -> Image.Image:
    """A noisy RGB picture (noise defeats compression, so truncation always cuts pixel data)."""
    pixels = np.random.default_rng(3).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A valid PNG header that claims a huge canvas over a few bytes of data (a decompression bomb)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = zlib.compress(b"\x00" * 16)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", body)
        + _png_chunk(b"IEND", b"")
    )


def gif_claiming(width: int, height: int) -> bytes:
    """A GIF whose logical screen is huge."""
    data = bytearray(encode(sample((8, 8)), "GIF"))
    data[6:10] = struct.pack("<HH", width, height)
    return bytes(data)


def _cut(data: bytes, fraction: float) -> bytes:
    return data[: int(len(data) * fraction)]


def _corrupt_middle(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes(b ^ 0x5A for b in data[middle : middle + 64]) + data[middle + 64 :]


def bad_corpus() -> dict[str, tuple[Callable[[], bytes], type[ImageError]]]:
    """Name -> (bytes factory, the error decoding must raise)."""
    picture = sample()
    return {
        "empty": (lambda: b"", BadImage),
        "random bytes": (lambda: np.random.default_rng(1).bytes(4096), BadImage),
        "plain text": (lambda: b"this is not an image\n" * 20, BadImage),
        "html page": (lambda: b"<!doctype html><html><body>hello</body></html>", BadImage),
        "pdf document": (lambda: b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF", BadImage),
        "jpeg truncated": (lambda: _cut(encode(picture, "JPEG"), 0.5), BadImage),
        "jpeg header only": (lambda: encode(picture, "JPEG")[:300], BadImage),
        "png truncated": (lambda: _cut(encode(picture, "PNG"), 0.6), BadImage),
        "png corrupt pixel data": (lambda: _corrupt_middle(encode(picture, "PNG")), BadImage),
        "gif truncated": (lambda: _cut(encode(picture, "GIF"), 0.5), BadImage),
        "bmp truncated": (lambda: _cut(encode(picture, "BMP"), 0.5), BadImage),
        "tiff truncated": (lambda: _cut(encode(picture, "TIFF"), 0.5), BadImage),
        "webp truncated": (lambda: _cut(encode(picture, "WEBP"), 0.5), BadImage),
        "png pixel bomb": (lambda: png_claiming(30_000, 30_000), ImageTooLarge),
        "gif pixel bomb": (lambda: gif_claiming(65_535, 65_535), ImageTooLarge),
        "ico": (lambda: encode(picture, "ICO"), UnsupportedImageFormat),
        "ppm": (lambda: encode(picture, "PPM"), UnsupportedImageFormat),
        "pcx": (lambda: encode(picture, "PCX"), UnsupportedImageFormat),
        "sgi": (lambda: encode(picture, "SGI"), UnsupportedImageFormat),
        "jpeg 2000": (lambda: encode(picture, "JPEG2000"), UnsupportedImageFormat),
        "dds": (lambda: encode(picture.convert("RGBA"), "DDS"), UnsupportedImageFormat),
        "xbm": (lambda: encode(picture.convert("1"), "XBM"), UnsupportedImageFormat),
    }
