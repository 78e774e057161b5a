"""Image handling: probing, decompression-bomb limits, thumbnails, fitting, PNG params."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from imagemill.errors import InvalidInput
from imagemill.storage.images import (
    EXIF_ORIENTATION,
    THUMBNAIL_SIDE,
    fit_exact,
    header_size,
    ingest,
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
    with pytest.raises(InvalidInput) as raised:
        probe(garbage)
    assert "0x" not in raised.value.message


def _cut_in_half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _noisy_png(width: int, height: int) -> bytes:
    """A PNG that does not compress away, so half of it is half of its pixels."""
    image = Image.frombytes("RGB", (width, height), bytes(range(256)) * (width * height * 3 // 256))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg_with_orientation(width: int, height: int, orientation: int) -> bytes:
    """A JPEG stored ``width`` x ``height`` whose EXIF says to show it turned; its
    top-left quarter is red, the rest blue."""
    image = Image.new("RGB", (width, height), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, width // 2, height // 2))
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95, exif=exif)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (_cut_in_half(_noisy_png(256, 256)), "truncated or corrupt"),
        (_cut_in_half(_encode(256, 256, "JPEG")), "truncated or corrupt"),
        (b"\x89PNG\r\n\x1a\ntruncated", "truncated or corrupt"),
        (b"not an image at all", "not an image imagemill can read"),
        (_encode(32, 32, "BMP"), "not an image imagemill can read"),
        (_encode(32, 32, "TIFF"), "not an image imagemill can read"),
    ],
)
def test_an_upload_that_is_not_a_whole_image_is_refused_in_plain_words(
    data: bytes, says: str
) -> None:
    with pytest.raises(InvalidInput) as raised:
        ingest(data, max_pixels=50_000_000, field="file")
    assert raised.value.field == "file"
    assert says in raised.value.message
    assert "0x" not in raised.value.message and "<" not in raised.value.message


def test_the_pixel_limit_is_imagemills_own_and_quoted_as_configured() -> None:
    data = _encode(40, 25, "PNG")
    assert ingest(data, max_pixels=1000).width == 40
    with pytest.raises(InvalidInput) as raised:
        ingest(data, max_pixels=999)
    assert "40x25" in raised.value.message
    assert "999" in raised.value.message and "IMAGEMILL_MAX_IMAGE_PIXELS" in raised.value.message
    assert "89478485" not in raised.value.message.replace(",", "")  # never Pillow's own limit


def test_a_decompression_bomb_is_refused_from_its_header() -> None:
    bomb = _png_header_only(30_000, 30_000)  # 900 megapixels, a few bytes on the wire
    with pytest.raises(InvalidInput) as raised:
        ingest(bomb, max_pixels=50_000_000)
    assert "50,000,000" in raised.value.message


def test_a_limit_above_pillows_own_is_honoured() -> None:
    """Pillow refuses over 2 x 89 million pixels on its own; imagemill's limit decides."""
    assert header_size(_png_header_only(15_000, 15_000), 300_000_000) == ("PNG", 15_000, 15_000)


def test_probe_of_a_models_output_has_no_pixel_limit() -> None:
    assert probe(_png_header_only(20_000, 20_000)).width == 20_000


@pytest.mark.parametrize(
    ("orientation", "upright_red_corner"),
    [(1, (0, 0)), (3, (1, 1)), (6, (1, 0)), (8, (0, 1))],
)
def test_exif_orientation_is_applied_once_at_ingest(
    orientation: int, upright_red_corner: tuple[int, int]
) -> None:
    """A JPEG stored 80x40 with Orientation 6 is shown 40x80 by every viewer: that is
    what is stored, recorded and thumbnailed, with no orientation left to apply twice."""
    checked = ingest(_jpeg_with_orientation(80, 40, orientation), max_pixels=50_000_000)

    turned = orientation in (6, 8)
    assert (checked.width, checked.height) == ((40, 80) if turned else (80, 40))
    with Image.open(io.BytesIO(checked.data)) as image:
        assert image.size == (checked.width, checked.height)
        assert image.getexif().get(EXIF_ORIENTATION, 1) == 1
        x, y = upright_red_corner  # the red quarter's centre, once upright
        centre = ((2 * x + 1) * image.width // 4, (2 * y + 1) * image.height // 4)
        red = image.convert("RGB").getpixel(centre)
        assert red[0] > 200 and red[2] < 60, red
    with Image.open(io.BytesIO(checked.thumbnail)) as thumb:
        assert thumb.format == "WEBP"
        assert (thumb.width > thumb.height) == (not turned)


def test_an_upright_upload_is_stored_as_it_came() -> None:
    data = _encode(64, 32, "PNG")
    assert ingest(data, max_pixels=50_000_000).data is data


def test_a_thumbnail_made_later_is_upright_too() -> None:
    """Assets stored before ingest turned them (or outputs carrying an orientation)."""
    thumb = thumbnail(_jpeg_with_orientation(80, 40, 6))
    assert probe(thumb).width == 40 and probe(thumb).height == 80


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


@pytest.mark.parametrize("prompt", ["a café at night — 夜", "", "x" * 1000])
def test_png_params_round_trip_and_the_image_still_decodes(prompt: str) -> None:
    params = {"prompt": prompt, "seed": 42, "params": {"steps": 30}}
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
