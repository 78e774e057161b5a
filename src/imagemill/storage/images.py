"""Image handling: checking uploads, probing outputs, thumbnails, exact-size fitting and
PNG parameter chunks.

Two kinds of bytes come in, and they are treated differently:

- **Untrusted input** (uploads): ``ingest`` checks the header against imagemill's pixel
  limit *before* decoding anything, then decodes the image fully, so a truncated or
  corrupt file is refused at the door with a 422 and never stored. EXIF orientation is
  applied once, here: the stored image, its size, its thumbnail and every model see it
  the way every viewer shows it.
- **Imagemill's own results** (what a provider made): ``probe`` reads the header only, and
  no limit meant for untrusted input applies (an upscale is meant to be large).

imagemill makes its own decompression-bomb checks, with its configured limit and in its
own words, so Pillow's process-wide limit (a different number) is turned off here.
Decoding a large image takes memory in proportion to its pixels; ``AssetWriter`` bounds
how many pixels are being decoded at once across a process (``imagemill.memory``).
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageFile, ImageFilter, ImageOps, UnidentifiedImageError

from imagemill.errors import InvalidInput

THUMBNAIL_SIDE = 384
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PARAMS_CHUNK_KEY = "imagemill"
UPLOAD_FORMATS = ("PNG", "JPEG", "WEBP", "GIF")
FORMAT_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
EXIF_ORIENTATION = 0x0112
JPEG_QUALITY = 95  # re-encoding a rotated JPEG upload: visually lossless

# What turns an image with each EXIF orientation upright (as ``ImageOps.exif_transpose``).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

Image.MAX_IMAGE_PIXELS = None  # see the module docstring: the limit is imagemill's own
ImageFile.LOAD_TRUNCATED_IMAGES = False  # a cut file is an error, never half an image


@dataclass(frozen=True, slots=True)
class ImageInfo:
    content_type: str
    width: int | None
    height: int | None


@dataclass(frozen=True, slots=True)
class Ingested:
    """An upload, checked: the bytes to store (upright), their size and a thumbnail."""

    data: bytes
    content_type: str
    width: int
    height: int
    thumbnail: bytes


class UnreadableImage(InvalidInput):
    """Bytes that are not a whole image imagemill can read: never worth retrying."""


@contextmanager
def decoding(field: str | None = None) -> Iterator[None]:
    """Pillow's many ways of failing on bad bytes, as one plain ``UnreadableImage``."""
    try:
        yield
    except Image.DecompressionBombError as exc:  # pragma: no cover - the limit is off
        raise UnreadableImage("the image is too large to decode", field) from exc
    except UnidentifiedImageError as exc:
        raise UnreadableImage(
            "not an image imagemill can read (PNG, JPEG, WebP or GIF)", field
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError) as exc:
        # Pillow reports cut and corrupt files through all of these.
        raise UnreadableImage("the image data is truncated or corrupt", field) from exc


def probe(data: bytes) -> ImageInfo:
    """Content type and size from the header alone (no full decode, no pixel limit):
    for imagemill's own results."""
    if data[4:12] in (b"ftypisom", b"ftypmp42", b"ftypiso5", b"ftypiso6", b"ftypavc1"):
        return ImageInfo("video/mp4", None, None)
    if _is_svg(data):  # vector output (Recraft's vector styles): no pixels to count
        return ImageInfo("image/svg+xml", None, None)
    with decoding(), Image.open(io.BytesIO(data)) as image:
        width, height = image.size
        fmt = "JPEG" if image.format == "MPO" else image.format or ""
        content_type = FORMAT_TYPES.get(fmt, "application/octet-stream")
    return ImageInfo(content_type, width, height)


def header_size(data: bytes, max_pixels: int, field: str = "file") -> tuple[str, int, int]:
    """An upload's format and size from its header, refused (``InvalidInput(field)``) if
    it is not a PNG, JPEG, WebP or GIF or has more than ``max_pixels`` pixels."""
    with decoding(field), Image.open(io.BytesIO(data), formats=UPLOAD_FORMATS) as image:
        width, height = image.size
        # A phone's multi-picture JPEG (MPO) is a JPEG whose first picture every viewer shows.
        fmt = "JPEG" if image.format == "MPO" else image.format or ""
    check_pixels(width, height, max_pixels, field)
    return fmt, width, height


def check_pixels(width: int, height: int, max_pixels: int, field: str) -> None:
    if width * height > max_pixels:
        raise InvalidInput(
            f"the image is {width}x{height} ({width * height:,} pixels); this server takes "
            f"at most {max_pixels:,} pixels (IMAGEMILL_MAX_IMAGE_PIXELS)",
            field=field,
        )


def ingest(data: bytes, max_pixels: int, field: str = "file") -> Ingested:
    """Check an upload and make it what is stored: decoded in full (under ``max_pixels``,
    checked from the header first), turned upright per its EXIF orientation, with a
    thumbnail. ``InvalidInput(field)`` in plain words if it is not a whole image."""
    fmt, width, height = header_size(data, max_pixels, field)
    with decoding(field), Image.open(io.BytesIO(data), formats=UPLOAD_FORMATS) as image:
        image.load()  # every byte of the first frame: a cut file fails here
        orientation = image.getexif().get(EXIF_ORIENTATION, 1)
        upright = ImageOps.exif_transpose(image) if orientation != 1 else image
        if upright is not image:
            data = _reencode(upright, fmt, image)
            width, height = upright.size
        small = _thumbnail_of(upright, THUMBNAIL_SIDE)
    if fmt == "PNG" and upright is image:  # stored as sent: whole, to its end chunk
        with decoding(field), Image.open(io.BytesIO(data), formats=["PNG"]) as again:
            again.verify()  # every chunk's checksum, through IEND (load() stops at the pixels)
    return Ingested(data, FORMAT_TYPES[fmt], width, height, small)


def _reencode(image: Image.Image, fmt: str, original: Image.Image) -> bytes:
    """An upright copy in the upload's format (its orientation tag dropped by
    ``exif_transpose``, its colour profile kept)."""
    buffer = io.BytesIO()
    extra: dict[str, Any] = {}
    if icc := original.info.get("icc_profile"):
        extra["icc_profile"] = icc
    if exif := image.info.get("exif"):
        extra["exif"] = exif
    if fmt == "JPEG":
        image.convert("RGB").save(buffer, "JPEG", quality=JPEG_QUALITY, **extra)
    elif fmt == "WEBP":
        image.save(buffer, "WEBP", lossless=True, **extra)
    else:  # PNG, and a GIF's first frame (a rotated animation is rare; its frames are not kept)
        image.save(buffer, "PNG", **extra)
    return buffer.getvalue()


def _is_svg(data: bytes) -> bool:
    head = data[:1024].lstrip().lower()
    return head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in head)


def thumbnail(data: bytes, side: int = THUMBNAIL_SIDE, *, blur: bool = False) -> bytes:
    """A WebP no larger than ``side`` on its longer edge; ``blur``: unrecognisable (for
    flagged images), still showing the colours. A JPEG is decoded at a reduced scale;
    other formats once, with no full-size copy."""
    with decoding(), Image.open(io.BytesIO(data)) as image:
        orientation = image.getexif().get(EXIF_ORIENTATION, 1)
        image.draft("RGB", (side, side))  # JPEG: decode at 1/2, 1/4 or 1/8 scale
        small = _thumbnail_of(image, side, orientation, blur=blur)
    return small


def _thumbnail_of(
    image: Image.Image, side: int, orientation: int = 1, *, blur: bool = False
) -> bytes:
    image.thumbnail((side, side))  # in place, reducing while it decodes: no full-size copy
    small = image.transpose(_UPRIGHT[orientation]) if orientation in _UPRIGHT else image
    if small.mode not in ("RGB", "RGBA"):
        transparent = "A" in small.getbands() or "transparency" in small.info
        small = small.convert("RGBA" if transparent else "RGB")
    if blur:
        small = small.filter(ImageFilter.GaussianBlur(radius=max(small.size) / 12))
    buffer = io.BytesIO()
    small.save(buffer, format="WEBP", quality=80, method=4)
    return buffer.getvalue()


def fit_exact(data: bytes, width: int, height: int) -> bytes:
    """Resize and centre-crop an image to exactly ``width``×``height`` (PNG out)."""
    with decoding(), Image.open(io.BytesIO(data)) as image:
        if image.size == (width, height):
            return data
        fitted = ImageOps.fit(image, (width, height), method=Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        fitted.save(buffer, format="PNG")
    return buffer.getvalue()


IHDR_END = 33  # the signature (8) and IHDR (4 length, 4 type, 13 data, 4 CRC): 3 * 11


def with_png_params(data: bytes, params: dict[str, Any]) -> bytes:
    """``data`` with an ``iTXt`` chunk carrying ``params`` as JSON right after ``IHDR``,
    without re-encoding pixels; ``data`` itself if it is not a PNG."""
    if not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return data
    text = json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    body = PARAMS_CHUNK_KEY.encode() + b"\0\0\0\0\0" + text.encode("utf-8")
    chunk = struct.pack(">I", len(body)) + b"iTXt" + body
    chunk += struct.pack(">I", zlib.crc32(b"iTXt" + body) & 0xFFFFFFFF)
    # Joined from views: one copy of a 2 MB image, not three.
    return b"".join((data[:IHDR_END], chunk, memoryview(data)[IHDR_END:]))


def png_params(data: bytes) -> dict[str, Any] | None:
    """The parameters ``with_png_params`` stored, if any."""
    with Image.open(io.BytesIO(data)) as image:
        text = image.text.get(PARAMS_CHUNK_KEY) if hasattr(image, "text") else None
    return json.loads(text) if text else None


def pixels_of(data: bytes) -> int:
    """How many pixels decoding ``data`` holds in memory (0 if it is not a raster image)."""
    try:
        info = probe(data)
    except InvalidInput:
        return 0
    return (info.width or 0) * (info.height or 0)
