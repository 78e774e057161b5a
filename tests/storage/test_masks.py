"""Edit masks: one convention at the API (white repaints), OpenAI's read too, and each
provider's form made from it."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from imagemill.errors import InvalidInput
from imagemill.storage.masks import as_alpha, canonical


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _greyscale_mask(width: int, height: int) -> bytes:
    """White (repaint) on the left half, black (keep) on the right."""
    image = Image.new("L", (width, height), 0)
    image.paste(255, (0, 0, width // 2, height))
    return _png(image)


def _openai_mask(width: int, height: int) -> bytes:
    """OpenAI's form of the same: transparent (repaint) on the left, opaque on the right."""
    image = Image.new("RGBA", (width, height), (255, 255, 255, 255))
    image.paste((0, 0, 0, 0), (0, 0, width // 2, height))
    return _png(image)


def _decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.mark.parametrize("mask", [_greyscale_mask(64, 64), _openai_mask(64, 64)])
def test_both_forms_become_one_white_repaints_mask(mask: bytes) -> None:
    result = _decoded(canonical(mask, 64, 64))
    assert (result.mode, result.size, result.format) == ("L", (64, 64), "PNG")
    assert result.getpixel((8, 32)) == 255  # repaint
    assert result.getpixel((56, 32)) == 0  # keep


def test_an_opaque_rgba_mask_is_read_by_its_brightness() -> None:
    """Transparency nowhere says nothing: white still repaints."""
    rgb = Image.open(io.BytesIO(_greyscale_mask(32, 32))).convert("RGBA")
    result = _decoded(canonical(_png(rgb), 32, 32))
    assert result.getpixel((4, 16)) == 255 and result.getpixel((28, 16)) == 0


def test_a_mask_of_the_images_shape_is_resized_to_its_size() -> None:
    result = _decoded(canonical(_greyscale_mask(128, 128), 256, 256))
    assert result.size == (256, 256)
    assert result.getpixel((20, 128)) == 255 and result.getpixel((236, 128)) == 0


def test_openai_gets_transparency_where_to_repaint() -> None:
    result = _decoded(as_alpha(canonical(_greyscale_mask(64, 64), 64, 64)))
    assert (result.mode, result.format) == ("RGBA", "PNG")
    assert result.getpixel((8, 32))[3] == 0  # repaint: transparent
    assert result.getpixel((56, 32))[3] == 255  # keep: opaque


def test_a_mask_that_is_not_an_image_is_refused_naming_mask() -> None:
    with pytest.raises(InvalidInput) as raised:
        canonical(b"not a mask", 64, 64)
    assert raised.value.field == "mask"
