"""The messages of a Chat Completions request, read as OpenAI's API reads them.

Owns ``read_messages`` (roles and content parts checked, in the API's words; what the
answer needs of them: the user's text and the prompt's token count), ``redacted`` (a body
as ``FakeOpenAI.calls`` records it, each data-URL image replaced by its size in bytes),
``tokens`` (about four characters a token) and the builders of OpenAI's 400s that the
chat fake shares (``missing``, ``invalid_type``, ``one_of``).

An ``image_url`` part must hold a PNG, JPEG, GIF or WebP data URL (decoded, or the API's
"unsupported image" 400) or an http(s) URL (not fetched: the fake has no network of its
own); each counts ``IMAGE_TOKENS[detail]`` prompt tokens, a fixed and plausible figure.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import math
import re
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from fakes.openai_models import OpenAIError

# Per input image: gpt-4o's figures for a 1024x1024 picture (85 at low detail, 85 + 170
# per 512-px tile otherwise). Plausible, fixed, not what OpenAI bills each model.
IMAGE_TOKENS = {"low": 85, "high": 765, "auto": 765}


TOKENS_PER_MESSAGE = 3


ROLES = ("system", "assistant", "user", "function", "tool", "developer")


PART_TYPES = ("text", "image_url", "input_audio", "refusal", "audio", "file")


IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "WEBP")


UNSUPPORTED_IMAGE = (
    "You uploaded an unsupported image. Please make sure your image is below 20 MB in size "
    "and is of one the following formats: ['png', 'jpeg', 'gif', 'webp']."
)


@dataclass
class Conversation:
    """What the messages hold, as the answer needs it."""

    user_text: list[str] = field(default_factory=list)
    all_text: list[str] = field(default_factory=list)
    prompt_tokens: int = TOKENS_PER_MESSAGE  # every reply is primed with a few


def read_messages(messages: Any) -> Conversation:
    if messages is None:
        raise missing("messages")
    if not isinstance(messages, list):
        raise invalid_type("messages", "an array", messages)
    if not messages:
        message = (
            "Invalid 'messages': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead."
        )
        raise OpenAIError(message, "messages", "empty_array")
    conversation = Conversation()
    for i, turn in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(turn, dict):
            raise invalid_type(where, "an object", turn)
        role = turn.get("role")
        if role is None:
            raise missing(f"{where}.role")
        one_of(f"{where}.role", role, ROLES)
        content = turn.get("content")
        if content is None and role != "assistant":
            raise missing(f"{where}.content")
        texts = _read_content(content, where, role, conversation)
        conversation.all_text += texts
        if role == "user":
            conversation.user_text += texts
        conversation.prompt_tokens += TOKENS_PER_MESSAGE + sum(map(tokens, texts))
    return conversation


def _read_content(content: Any, where: str, role: str, conversation: Conversation) -> list[str]:
    if content is None or isinstance(content, str):
        return [content] if content else []
    if not isinstance(content, list):
        message = (
            f"Invalid type for '{where}.content': expected one of a string or array of "
            f"objects, but got {type_name(content)} instead."
        )
        raise OpenAIError(message, f"{where}.content", "invalid_type")
    texts = []
    for j, part in enumerate(content):
        at = f"{where}.content[{j}]"
        if not isinstance(part, dict):
            raise invalid_type(at, "an object", part)
        kind = part.get("type")
        if kind is None:
            raise missing(f"{at}.type")
        one_of(f"{at}.type", kind, PART_TYPES)
        if kind == "text":
            if not isinstance(part.get("text"), str):
                raise missing(f"{at}.text")
            texts.append(part["text"])
        elif kind == "image_url":
            if role != "user":
                message = (
                    f"Invalid '{where}'. Image URLs are only allowed for messages with role "
                    f"'user', but this message with role '{role}' contains an image URL."
                )
                raise OpenAIError(message, where, "invalid_value")
            conversation.prompt_tokens += _read_image(part.get("image_url"), f"{at}.image_url")
        elif kind != "refusal" or role != "assistant":
            raise OpenAIError(f"This fake does not implement '{kind}' parts.", f"{at}.type")
    return texts


def _read_image(image_url: Any, where: str) -> int:
    """The prompt tokens of one ``image_url`` part, checked as the API checks it."""
    if not isinstance(image_url, dict) or not isinstance(image_url.get("url"), str):
        raise missing(f"{where}.url")
    detail = image_url.get("detail", "auto")
    one_of(f"{where}.detail", detail, ("auto", "low", "high"))
    url: str = image_url["url"]
    if url.startswith(("http://", "https://")):
        return IMAGE_TOKENS[detail]  # not fetched: the fake has no network of its own
    match = re.fullmatch(r"data:(image/[\w.+-]+);base64,(.*)", url, re.DOTALL)
    if match is None:
        message = (
            f"Invalid '{where}.url'. Expected a base64-encoded data URL with an image MIME "
            "type (e.g. 'data:image/png;base64,aW1nIGJ5dGVzIGhlcmU='), or an http(s) URL."
        )
        raise OpenAIError(message, f"{where}.url", "invalid_value")
    try:
        data = base64.b64decode(match.group(2), validate=True)
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            if image.format not in IMAGE_FORMATS or len(data) > 20 * 1024 * 1024:
                raise ValueError(image.format)
    except (binascii.Error, OSError, ValueError):
        raise OpenAIError(UNSUPPORTED_IMAGE, None, "invalid_image_format") from None
    return IMAGE_TOKENS[detail]


def one_of(param: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        quoted = [f"'{option}'" for option in allowed]
        listed = ", ".join(quoted[:-1]) + ", and " + quoted[-1]
        message = f"Invalid value: '{value}'. Supported values are: {listed}."
        raise OpenAIError(message, param, "invalid_value")


def missing(name: str) -> OpenAIError:
    return OpenAIError(f"Missing required parameter: '{name}'.", name, "missing_required_parameter")


def invalid_type(name: str, expected: str, value: Any) -> OpenAIError:
    message = f"Invalid type for '{name}': expected {expected}, but got {type_name(value)} instead."
    return OpenAIError(message, name, "invalid_type")


def type_name(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a decimal", str: "a string"}
    names |= {list: "an array", dict: "an object"}
    return names.get(type(value), "null")


def tokens(text: str) -> int:
    return math.ceil(len(text) / 4)  # roughly four characters a token


def redacted(fields: dict[str, Any]) -> dict[str, Any]:
    """The body as recorded: every data-URL image replaced by its size in bytes."""

    def walk(value: Any) -> Any:
        if isinstance(value, list):
            return [walk(item) for item in value]
        if not isinstance(value, dict):
            return value
        out = {key: walk(item) for key, item in value.items()}
        url = value.get("url")
        if isinstance(url, str) and url.startswith("data:") and "," in url:
            with contextlib.suppress(binascii.Error, ValueError):
                out["url"] = len(base64.b64decode(url.split(",", 1)[1]))
        return out

    return {key: walk(value) for key, value in fields.items()}
