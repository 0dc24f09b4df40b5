"""Safe decoding: every malformed input gets its typed error; every mode becomes RGB uint8."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.face.errors import BadImage, ImageTooLarge
from app.face.image import DecodeLimits, decode_image
from app.face.photo import Photo
from tests.face.bad_images import bad_corpus, encode, sample

CORPUS = bad_corpus()


def test_the_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 15


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_bad_input_gets_its_typed_error(name: str) -> None:
    factory, expected = CORPUS[name]
    with pytest.raises(expected) as caught:
        decode_image(factory())
    assert type(caught.value) is expected
    assert str(caught.value), "the error must say what is wrong"


def test_too_many_bytes_is_refused_before_decoding() -> None:
    data = encode(sample((200, 200)), "PNG")
    with pytest.raises(ImageTooLarge, match="bytes"):
        decode_image(data, DecodeLimits(max_bytes=len(data) - 1))


def test_too_many_pixels_is_refused_before_decoding() -> None:
    data = encode(sample((200, 100)), "PNG")
    with pytest.raises(ImageTooLarge, match="20,000 pixels"):
        decode_image(data, DecodeLimits(max_pixels=19_999))
    assert decode_image(data, DecodeLimits(max_pixels=20_000)).shape == (100, 200, 3)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF"])
def test_accepted_formats_decode(fmt: str) -> None:
    decoded = decode_image(encode(sample(), fmt))
    assert decoded.shape == (48, 64, 3)
    assert decoded.dtype == np.uint8


def _via(image: Image.Image, fmt: str) -> np.ndarray:
    return decode_image(encode(image, fmt))


def test_every_mode_becomes_rgb() -> None:
    gray = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (8, 1))  # 8 x 64 ramp
    cases = {
        "1": _via(Image.fromarray(gray).convert("1"), "PNG"),
        "L": _via(Image.fromarray(gray), "PNG"),
        "LA": _via(Image.fromarray(gray).convert("LA"), "PNG"),
        "P": _via(Image.fromarray(gray).convert("RGB").convert("P"), "PNG"),
        "RGBA": _via(Image.fromarray(gray).convert("RGBA"), "PNG"),
        "CMYK": _via(Image.fromarray(gray).convert("RGB").convert("CMYK"), "TIFF"),
        "I;16": _via(Image.fromarray(gray.astype(np.uint16) * 257), "PNG"),
        "I": _via(Image.fromarray(gray.astype(np.int32)), "TIFF"),
        "F": _via(Image.fromarray(gray.astype(np.float32) / 255), "TIFF"),
    }
    for mode, decoded in cases.items():
        assert decoded.shape == (8, 64, 3), mode
        assert decoded.dtype == np.uint8, mode
        if mode != "1":  # bilevel keeps only black and white
            # Palette quantisation may move a colour by a few levels.
            assert abs(int(decoded[0, -1, 0]) - 252) <= 4, f"{mode}: the bright end became {decoded[0, -1]}"
            assert int(decoded[0, 0, 0]) <= 2, f"{mode}: the dark end became {decoded[0, 0]}"


def test_sixteen_bit_is_scaled_not_clipped() -> None:
    ramp = np.array([[0, 257 * 128, 65_535]], dtype=np.uint16)
    decoded = decode_image(encode(Image.fromarray(ramp), "PNG"))
    assert decoded[0, :, 0].tolist() == [0, 128, 255]


def test_transparent_pixels_become_white() -> None:
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)  # black, fully transparent
    decoded = decode_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert (decoded == 255).all()


def test_animated_gif_gives_its_first_frame() -> None:
    red = Image.new("RGB", (16, 16), (255, 0, 0))
    blue = Image.new("RGB", (16, 16), (0, 0, 255))
    buffer = io.BytesIO()
    red.save(buffer, "GIF", save_all=True, append_images=[blue])
    decoded = decode_image(buffer.getvalue())
    assert decoded[8, 8].tolist() == [255, 0, 0]


def test_exif_orientation_is_applied(photos: list[Path]) -> None:
    upright = Image.open(next(p for p in photos if p.name == "obama.jpg")).convert("RGB")
    sideways = upright.transpose(Image.Transpose.ROTATE_90)  # stored rotated a quarter turn left
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: turn a quarter right to display
    decoded = decode_image(encode(sideways, "PNG", exif=exif.tobytes()))
    assert decoded.shape == np.asarray(upright).shape
    assert np.array_equal(decoded, np.asarray(upright))


def test_a_non_image_is_bad() -> None:
    with pytest.raises(BadImage, match="not an image"):
        decode_image(bytes(range(256)) * 4)


def test_a_photo_keeps_its_pixels_and_a_bounded_detection_copy(photos: list[Path]) -> None:
    upright = Image.open(next(p for p in photos if p.name == "obama.jpg")).convert("RGB")
    big = upright.resize((upright.width * 4, upright.height * 4), Image.Resampling.BICUBIC)
    photo = Photo(encode(big, "PNG"), detection_side=640)
    assert photo.size == big.size and photo.reductions == (1,)  # a PNG decodes whole
    assert np.array_equal(photo.pixels(), np.asarray(big))
    assert max(photo.detection.shape[:2]) == 640
    sx, sy = photo.scale
    assert photo.detection.shape[:2] == (round(big.height * sy), round(big.width * sx))
    # A photo within the side is its own detection copy, and decodes whole even as a JPEG.
    small = Photo(encode(upright, "JPEG"), detection_side=4096)
    assert small.scale == (1.0, 1.0) and small.detection is small.pixels() and small.reductions == (1,)


def test_a_big_jpeg_decodes_at_the_reduction_asked_for(photos: list[Path]) -> None:
    upright = Image.open(next(p for p in photos if p.name == "obama.jpg")).convert("RGB")
    big = upright.resize((4001, 2999), Image.Resampling.BICUBIC)
    photo = Photo(encode(big, "JPEG", quality=95), detection_side=1280)
    assert photo.reductions == (1, 2, 4, 8) and max(photo.detection.shape[:2]) == 1280
    full = photo.pixels(1).astype(np.float64)
    for r in (2, 4, 8):
        reduced = photo.pixels(r)
        assert reduced.shape[:2] == (-(-2999 // r), -(-4001 // r))
        # Each reduced pixel is about the mean of its r x r block of the full decoding.
        blocks = (
            full[: 2999 // r * r, : 4001 // r * r].reshape(2999 // r, r, 4001 // r, r, 3).mean(axis=(1, 3))
        )
        assert np.abs(reduced[: 2999 // r, : 4001 // r] - blocks).mean() < 2.0, r
    with pytest.raises(ValueError):
        photo.pixels(3)


def test_a_sideways_jpeg_is_upright_at_every_reduction(photos: list[Path]) -> None:
    upright = Image.open(next(p for p in photos if p.name == "obama.jpg")).convert("RGB")
    big = upright.resize((upright.width * 3, upright.height * 3), Image.Resampling.BICUBIC)
    exif = Image.Exif()
    exif[0x0112] = 6
    photo = Photo(encode(big.transpose(Image.Transpose.ROTATE_90), "JPEG", exif=exif.tobytes()))
    assert photo.size == big.size
    for r in photo.reductions:
        assert photo.pixels(r).shape[:2] == (-(-big.height // r), -(-big.width // r))


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "I;16", "CMYK"])
def test_every_mode_gets_a_detection_copy_like_its_pixels(mode: str) -> None:
    gray = np.tile(np.arange(0, 256, 1, dtype=np.uint8), (64, 8))  # 64 x 2048 ramp
    source = {
        "L": Image.fromarray(gray),
        "LA": Image.fromarray(gray).convert("LA"),
        "P": Image.fromarray(gray).convert("RGB").convert("P"),
        "RGBA": Image.fromarray(gray).convert("RGBA"),
        "I;16": Image.fromarray(gray.astype(np.uint16) * 257),
        "CMYK": Image.fromarray(gray).convert("RGB").convert("CMYK"),
    }[mode]
    photo = Photo(encode(source, "TIFF" if mode == "CMYK" else "PNG"), detection_side=512)
    assert photo.detection.shape == (16, 512, 3) and photo.detection.dtype == np.uint8
    # The copy shows what the pixels show (scaled 16-bit, flattened alpha), only smaller.
    shrunk = np.asarray(Image.fromarray(photo.pixels()).resize((512, 16), Image.Resampling.BILINEAR))
    assert np.abs(photo.detection.astype(int) - shrunk.astype(int)).mean() < 3, mode
