"""Deterministic pictures for the image fakes: the same seed draws the same image.

Owns ``render_image`` (a background and a centred block, in colours from the seed's
hash), ``seed_colours`` (those colours), ``encode_image`` (PNG, JPEG or WebP, fast) and
``CONTENT_TYPES`` (the media type of each output format a fake serves).
"""

from __future__ import annotations

import hashlib
import io

from PIL import Image, ImageDraw

CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
CONTENT_TYPES["svg"] = "image/svg+xml"


def render_image(
    seed: str,
    width: int,
    height: int,
    fmt: str = "png",
    transparent: bool = False,
    compression: int | None = None,
    *,
    fill: tuple[int, int, int] | None = None,
    accent: tuple[int, int, int] | None = None,
) -> bytes:
    """A picture of exactly ``width`` x ``height``, the same for the same ``seed``.

    A background colour and a centred block, both drawn from the seed's hash unless
    ``fill`` or ``accent`` name them; with ``transparent`` the background is clear.
    """
    background, block = seed_colours(seed)
    background, accent = fill or background, accent or block
    if transparent:
        image = Image.new("RGBA", (width, height), (*background, 0))
    else:
        image = Image.new("RGB", (width, height), background)
    ImageDraw.Draw(image).rectangle(
        (width // 4, height // 4, 3 * width // 4, 3 * height // 4), fill=(*accent, 255)
    )
    return encode_image(image, fmt, compression)


def seed_colours(seed: str) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    digest = hashlib.sha256(seed.encode()).digest()
    return (digest[0], digest[1], digest[2]), (digest[3], digest[4], digest[5])


def encode_image(image: Image.Image, fmt: str, compression: int | None = None) -> bytes:
    buffer = io.BytesIO()
    if fmt == "png":
        image.save(buffer, "PNG", compress_level=1)  # fast; the fake's images are flat
    elif fmt == "jpeg":
        quality = 95 if compression is None else min(compression, 95)  # PIL's useful top
        image.convert("RGB").save(buffer, "JPEG", quality=quality)
    elif fmt == "webp":
        quality = compression if compression is not None else 100
        image.save(buffer, "WEBP", quality=quality, method=0)
    else:
        raise ValueError(f"cannot encode {fmt!r}")
    return buffer.getvalue()
