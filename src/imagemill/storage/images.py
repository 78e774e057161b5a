"""Image handling: probing, thumbnails, exact-size fitting and PNG parameter chunks."""

from __future__ import annotations

import io
import json
import struct
import zlib
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageFilter, ImageOps

from imagemill.errors import InvalidInput

THUMBNAIL_SIDE = 384
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PARAMS_CHUNK_KEY = "imagemill"

_FORMAT_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}


@dataclass(frozen=True, slots=True)
class ImageInfo:
    content_type: str
    width: int | None
    height: int | None


def probe(data: bytes, max_pixels: int | None = None) -> ImageInfo:
    """Content type and size from the header alone (no full decode)."""
    if data[4:12] in (b"ftypisom", b"ftypmp42", b"ftypiso5", b"ftypiso6", b"ftypavc1"):
        return ImageInfo("video/mp4", None, None)
    if _is_svg(data):  # vector output (Recraft's vector styles): no pixels to count
        return ImageInfo("image/svg+xml", None, None)
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            content_type = _FORMAT_TYPES.get(image.format or "", "application/octet-stream")
    except (OSError, Image.DecompressionBombError) as exc:
        raise InvalidInput(f"not a readable image: {exc}") from exc
    if max_pixels is not None and width * height > max_pixels:
        raise InvalidInput(f"image of {width}x{height} exceeds the limit of {max_pixels} pixels")
    return ImageInfo(content_type, width, height)


def _is_svg(data: bytes) -> bool:
    head = data[:1024].lstrip().lower()
    return head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in head)


def thumbnail(data: bytes, side: int = THUMBNAIL_SIDE, *, blur: bool = False) -> bytes:
    """A WebP no larger than ``side`` on its longer edge; ``blur``: unrecognisable (for
    flagged images), still showing the colours."""
    with Image.open(io.BytesIO(data)) as image:
        image.draft("RGB", (side, side))  # JPEG: decode at reduced scale
        small = ImageOps.exif_transpose(image)
        small.thumbnail((side, side))
        if small.mode not in ("RGB", "RGBA"):
            small = small.convert("RGBA" if "A" in small.getbands() else "RGB")
        if blur:
            small = small.filter(ImageFilter.GaussianBlur(radius=max(small.size) / 12))
        buffer = io.BytesIO()
        small.save(buffer, format="WEBP", quality=80, method=4)
    return buffer.getvalue()


def fit_exact(data: bytes, width: int, height: int) -> bytes:
    """Resize and centre-crop an image to exactly ``width``×``height`` (PNG out)."""
    with Image.open(io.BytesIO(data)) as image:
        if image.size == (width, height):
            return data
        fitted = ImageOps.fit(image, (width, height), method=Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        fitted.save(buffer, format="PNG")
    return buffer.getvalue()


def with_png_params(data: bytes, params: dict[str, Any]) -> bytes:
    """Insert an ``iTXt`` chunk carrying ``params`` as JSON, without re-encoding pixels."""
    if not data.startswith(PNG_SIGNATURE):
        return data
    text = json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    body = PARAMS_CHUNK_KEY.encode() + b"\0\0\0\0\0" + text.encode("utf-8")
    chunk = struct.pack(">I", len(body)) + b"iTXt" + body
    chunk += struct.pack(">I", zlib.crc32(b"iTXt" + body) & 0xFFFFFFFF)
    end = data.rfind(b"IEND") - 4  # the IEND chunk starts with its 4-byte length
    if end < len(PNG_SIGNATURE):
        return data
    return data[:end] + chunk + data[end:]


def png_params(data: bytes) -> dict[str, Any] | None:
    """The parameters ``with_png_params`` stored, if any."""
    with Image.open(io.BytesIO(data)) as image:
        text = image.text.get(PARAMS_CHUNK_KEY) if hasattr(image, "text") else None
    return json.loads(text) if text else None
