"""Edit masks: imagemill's one convention, and the providers'.

A ``mask`` at imagemill's API is a greyscale image **white where the model repaints and
black where it keeps** (grey: partly), covering the image it edits. A mask with
transparency is read the way OpenAI reads one (transparent repaints), so a mask made for
OpenAI works unchanged. Before a model sees it, every mask becomes imagemill's own form
(``canonical``: an 8-bit greyscale PNG at the image's size), and an adapter turns that
into its provider's (``as_alpha`` for OpenAI: transparent where to repaint).
"""

from __future__ import annotations

import io

from PIL import Image

from imagemill.storage.images import decoding


def canonical(data: bytes, width: int, height: int) -> bytes:
    """Any mask as imagemill's: greyscale (white repaints), ``width`` x ``height``, PNG."""
    with decoding("mask"), Image.open(io.BytesIO(data)) as opened:
        opened.load()
        image: Image.Image = opened
        if image.mode == "P" and "transparency" in image.info:
            image = image.convert("RGBA")
        repaint = image.convert("L")
        if "A" in image.getbands():
            alpha = image.getchannel("A")
            # Transparency means OpenAI's convention; a wholly opaque one says nothing.
            if alpha.getextrema()[0] != 255:
                repaint = alpha.point(lambda value: 255 - value)
    if repaint.size != (width, height):
        repaint = repaint.resize((width, height), Image.Resampling.BILINEAR)
    return _png(repaint)


def as_alpha(mask: bytes) -> bytes:
    """An imagemill mask as OpenAI takes one: a PNG whose alpha is 0 where the model
    repaints (and opaque where it keeps)."""
    with decoding("mask"), Image.open(io.BytesIO(mask)) as image:
        keep = image.convert("L").point(lambda value: 255 - value)
    rgba = Image.new("RGBA", keep.size, (0, 0, 0, 255))
    rgba.putalpha(keep)
    return _png(rgba)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
