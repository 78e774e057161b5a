"""Image handling: probing, decompression-bomb limits, thumbnails, fitting, PNG params."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from imagemill.errors import InvalidInput
from imagemill.storage.images import (
    THUMBNAIL_SIDE,
    fit_exact,
    png_params,
    probe,
    thumbnail,
    with_png_params,
)


def _encode(width: int, height: int, fmt: str, mode: str = "RGB") -> bytes:
    image = Image.new(mode, (width, height), (200, 30, 60) if mode == "RGB" else 128)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims a size but carries one tiny IDAT: a decompression bomb's header."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0"))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("fmt", "content_type"),
    [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp"), ("GIF", "image/gif")],
)
def test_probe_reads_type_and_size(fmt: str, content_type: str) -> None:
    info = probe(_encode(40, 24, fmt))
    assert (info.content_type, info.width, info.height) == (content_type, 40, 24)


def test_probe_recognises_mp4_without_decoding() -> None:
    mp4 = b"\x00\x00\x00\x18ftypisom" + b"\x00" * 32
    info = probe(mp4)
    assert (info.content_type, info.width, info.height) == ("video/mp4", None, None)


@pytest.mark.parametrize("garbage", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\ntruncated"])
def test_probe_rejects_garbage(garbage: bytes) -> None:
    with pytest.raises(InvalidInput):
        probe(garbage)


def test_probe_enforces_max_pixels() -> None:
    data = _encode(40, 25, "PNG")
    assert probe(data, max_pixels=1000).width == 40
    with pytest.raises(InvalidInput) as raised:
        probe(data, max_pixels=999)
    assert "40x25" in raised.value.message


def test_a_decompression_bomb_is_rejected_from_its_header() -> None:
    bomb = _png_header_only(30_000, 30_000)  # 900 megapixels, a few bytes on the wire
    with pytest.raises(InvalidInput):
        probe(bomb)
    with pytest.raises(InvalidInput):
        probe(_png_header_only(8000, 8000), max_pixels=50_000_000)


@pytest.mark.parametrize(("size", "expected"), [((1024, 512), (384, 192)), ((200, 800), (96, 384))])
def test_thumbnail_is_a_small_webp(size: tuple[int, int], expected: tuple[int, int]) -> None:
    thumb = thumbnail(_encode(*size, "PNG"))
    info = probe(thumb)
    assert info.content_type == "image/webp"
    assert (info.width, info.height) == expected
    assert max(expected) <= THUMBNAIL_SIDE


def test_thumbnail_of_a_small_or_palette_image() -> None:
    assert probe(thumbnail(_encode(50, 40, "PNG"))).width == 50  # never upscaled
    palette = _encode(500, 500, "GIF", mode="P")
    info = probe(thumbnail(palette))
    assert (info.content_type, info.width) == ("image/webp", 384)
    jpeg = probe(thumbnail(_encode(2000, 1000, "JPEG")))
    assert (jpeg.width, jpeg.height) == (384, 192)


def test_fit_exact_produces_exactly_the_requested_size() -> None:
    fitted = fit_exact(_encode(1024, 1024, "PNG"), 1920, 1080)
    info = probe(fitted)
    assert (info.content_type, info.width, info.height) == ("image/png", 1920, 1080)
    with Image.open(io.BytesIO(fitted)) as image:
        image.load()
        assert image.getpixel((960, 540)) == (200, 30, 60)


def test_fit_exact_keeps_an_image_already_the_right_size() -> None:
    data = _encode(64, 48, "JPEG")
    assert fit_exact(data, 64, 48) is data


def test_png_params_round_trip_and_the_image_still_decodes() -> None:
    params = {"prompt": "a café at night — 夜", "seed": 42, "params": {"steps": 30}}
    original = _encode(32, 16, "PNG")

    tagged = with_png_params(original, params)

    assert tagged != original
    assert png_params(tagged) == params
    assert png_params(original) is None
    with Image.open(io.BytesIO(tagged)) as image:
        image.load()  # CRCs and chunk order are valid
        assert image.size == (32, 16)
        assert image.getpixel((5, 5)) == (200, 30, 60)
    assert tagged.endswith(original[-12:])  # IEND stays last


def test_png_params_leave_other_formats_alone() -> None:
    jpeg = _encode(16, 16, "JPEG")
    assert with_png_params(jpeg, {"seed": 1}) is jpeg
