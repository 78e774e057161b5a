"""What the Gemini fake's endpoints share: reading a request as the Gemini API reads it.

Owns ``RequestRejected`` (a request the API refuses, answered as a Google error),
``invalid``/``one_of`` (400s naming the field), ``get_field`` (a field by its JSON or its
proto name: the API takes both, and the SDK sends both), ``decode_bytes`` (a proto
``bytes`` field), ``read_contents`` (a ``generateContent`` request's text and decoded
inline images), ``text_tokens`` and the words that drive the fake's safety answers
(``BLOCK_WORD`` blocks a prompt, ``FILTER_WORD`` filters an answer).
"""

from __future__ import annotations

import base64
import binascii
import io
import math
from collections.abc import Iterable
from typing import Any

from PIL import Image, UnidentifiedImageError

INPUT_IMAGE_MIME_TYPES = frozenset(
    {"image/png", "image/jpeg", "image/webp", "image/heic", "image/heif"}
)

BLOCK_WORD = "forbidden"
FILTER_WORD = "unsafe"
INPUT_IMAGE_TOKENS = 258  # an input image (up to 384 px a side; larger ones are tiled)


class RequestRejected(Exception):
    """A request the real API would refuse; becomes a Google error response."""

    def __init__(self, status: int, message: str, details: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details


def invalid(field: str, problem: str) -> RequestRejected:
    """A 400 naming the field, in the shape of the API's validation messages."""
    return RequestRejected(400, f"* {field}: {problem}")


def one_of(value: Any, allowed: Iterable[str], field: str) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise invalid(field, f"unsupported value {value!r}; supported: {', '.join(allowed)}")


def get_field(obj: dict[str, Any], camel: str, snake: str) -> Any:
    """A field by its JSON name or its proto name: the API accepts both."""
    return obj[camel] if camel in obj else obj.get(snake)


def decode_bytes(data: str) -> bytes:
    """A proto ``bytes`` field from JSON: standard or URL-safe base64, padded or not.

    The SDK sends URL-safe base64 (pydantic's encoding); the API accepts both alphabets.
    """
    standard = data.replace("-", "+").replace("_", "/")
    return base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)


def read_contents(contents: list[Any]) -> tuple[str, list[Image.Image]]:
    """The prompt (text of the last turn) and every inline input image, in order."""
    images: list[Image.Image] = []
    last_text: list[str] = []
    for turn, content in enumerate(contents):
        texts: list[str] = []
        for index, part in enumerate(content.get("parts") or []):
            if "text" in part:
                texts.append(str(part["text"]))
            inline = get_field(part, "inlineData", "inline_data")
            if inline is not None:
                images.append(_decode_input_image(inline, f"contents[{turn}].parts[{index}]"))
        last_text = texts or last_text
    return " ".join(last_text), images


def _decode_input_image(inline: dict[str, Any], where: str) -> Image.Image:
    mime_type = get_field(inline, "mimeType", "mime_type")
    if mime_type not in INPUT_IMAGE_MIME_TYPES:
        raise RequestRejected(400, f"Unsupported MIME type: {mime_type} at '{where}.inline_data'")
    try:
        raw = decode_bytes(inline.get("data") or "")
    except (binascii.Error, TypeError, ValueError):
        raise RequestRejected(
            400,
            f"Invalid value at '{where}.inline_data.data' (TYPE_BYTES), Base64 decoding failed",
        ) from None
    try:
        image = Image.open(io.BytesIO(raw))
        image.load()
    except (UnidentifiedImageError, OSError):
        raise RequestRejected(
            400,
            "Unable to process input image. Please retry or report in "
            "https://developers.generativeai.google/guide/troubleshooting",
        ) from None
    return image


def text_tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))  # roughly four characters a token
