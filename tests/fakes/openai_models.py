"""What OpenAI's image models accept, and a request checked against it as the API does.

Owns the model table (``ModelSpec``, ``MODELS``: ``gpt-image-1``, ``dall-e-3``,
``dall-e-2``, from OpenAI's API reference), ``OpenAIError`` (an answer in OpenAI's error
shape), ``validate`` (a generation's or edit's parameters, in the API's order, into an
``ImageRequest``) and ``attach_edit_files`` (an edit's images and mask, decoded and checked).
"""

from __future__ import annotations

import io
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from PIL import Image
from starlette.responses import JSONResponse


@dataclass(frozen=True)
class ModelSpec:
    """What one image model accepts, from the API reference."""

    name: str
    sizes: tuple[str, ...]
    default_size: str
    qualities: tuple[str, ...]
    default_quality: str
    max_n: int
    max_prompt: int
    params: frozenset[str]  # generation body parameters it accepts
    edit_params: frozenset[str] = frozenset()  # empty: no edits
    styles: tuple[str, ...] = ()

    @property
    def gpt_image(self) -> bool:
        return self.name.startswith("gpt-image")


_COMMON = frozenset({"prompt", "model", "n", "size", "quality", "user"})
_GPT_ONLY = frozenset(
    {"background", "moderation", "output_format", "output_compression", "stream", "partial_images"}
)
GPT_IMAGE_1 = ModelSpec(
    name="gpt-image-1",
    sizes=("1024x1024", "1536x1024", "1024x1536", "auto"),
    default_size="auto",
    qualities=("low", "medium", "high", "auto"),
    default_quality="auto",
    max_n=10,
    max_prompt=32000,
    params=_COMMON | _GPT_ONLY | {"safety_identifier"},
    edit_params=_COMMON
    | {"background", "output_format", "output_compression", "input_fidelity", "stream"}
    | {"partial_images", "safety_identifier"},
)
DALL_E_3 = ModelSpec(
    name="dall-e-3",
    sizes=("1024x1024", "1792x1024", "1024x1792"),
    default_size="1024x1024",
    qualities=("standard", "hd"),
    default_quality="standard",
    max_n=1,
    max_prompt=4000,
    params=_COMMON | {"response_format", "style"},
    styles=("vivid", "natural"),
)
DALL_E_2 = ModelSpec(
    name="dall-e-2",
    sizes=("256x256", "512x512", "1024x1024"),
    default_size="1024x1024",
    qualities=("standard",),
    default_quality="standard",
    max_n=10,
    max_prompt=1000,
    params=_COMMON | {"response_format"},
    edit_params=_COMMON | {"response_format"},
)
MODELS = {spec.name: spec for spec in (GPT_IMAGE_1, DALL_E_3, DALL_E_2)}

BLOCKED_WORD = re.compile(r"\bforbidden\b", re.IGNORECASE)


class OpenAIError(Exception):
    """An error answer in OpenAI's shape: ``{"error": {message, type, param, code}}``."""

    def __init__(
        self,
        message: str,
        param: str | None = None,
        code: str | None = None,
        *,
        kind: str = "invalid_request_error",
        status: int = 400,
    ) -> None:
        super().__init__(message)
        self.body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
        self.status = status

    def response(self) -> JSONResponse:
        return JSONResponse(self.body, status_code=self.status)


def unknown_parameter(name: str) -> OpenAIError:
    return OpenAIError(f"Unknown parameter: '{name}'.", name, "unknown_parameter")


def _missing(name: str) -> OpenAIError:
    return OpenAIError(f"Missing required parameter: '{name}'.", name, "missing_required_parameter")


def _one_of(param: str, value: object, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        quoted = [f"'{option}'" for option in allowed]
        listed = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + ", and " + quoted[-1]
        message = f"Invalid value: '{value}'. Supported values are: {listed}."
        raise OpenAIError(message, param, "invalid_value")
    return str(value)


def _integer(param: str, value: object, low: int, high: int) -> int:
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        value = int(value)  # multipart fields arrive as text
    if not isinstance(value, int) or isinstance(value, bool):
        kind = type(value).__name__
        message = f"Invalid type for '{param}': expected an integer, but got {kind} instead."
        raise OpenAIError(message, param, "invalid_type")
    for bad, word, code, bound in (
        (value < low, "below minimum", "integer_below_min_value", f">= {low}"),
        (value > high, "above maximum", "integer_above_max_value", f"<= {high}"),
    ):
        if bad:
            message = (
                f"Invalid '{param}': integer {word} value. "
                f"Expected a value {bound}, but got {value} instead."
            )
            raise OpenAIError(message, param, code)
    return value


def _prompt(fields: dict[str, Any], spec: ModelSpec) -> str:
    prompt = fields.get("prompt")
    if prompt is None:
        raise _missing("prompt")
    if not isinstance(prompt, str):
        raise OpenAIError("Invalid type for 'prompt': expected a string.", "prompt", "invalid_type")
    if len(prompt) > spec.max_prompt:
        message = (
            f"Invalid 'prompt': string too long. Expected a string with maximum length "
            f"{spec.max_prompt}, but got a string with length {len(prompt)} instead."
        )
        raise OpenAIError(message, "prompt", "string_above_max_length")
    if BLOCKED_WORD.search(prompt) and spec.gpt_image:
        message = (
            "Your request was rejected by the safety system. If you believe this is an error, "
            "contact us at help.openai.com and include the request ID "
            f"{secrets.token_hex(16)}. safety_violations=[violence]."
        )
        raise OpenAIError(message, None, "moderation_blocked", kind="image_generation_user_error")
    if BLOCKED_WORD.search(prompt):
        message = (
            "Your request was rejected as a result of our safety system. Your prompt may "
            "contain text that is not allowed by our safety system."
        )
        raise OpenAIError(message, None, "content_policy_violation")
    return prompt


# ---------------------------------------------------------------- a validated request


@dataclass
class ImageRequest:
    """A generation or edit, validated against its model."""

    spec: ModelSpec
    prompt: str
    n: int
    size: str
    quality: str
    response_format: str  # "url" or "b64_json"
    output_format: str = "png"
    output_compression: int | None = None
    background: str = "auto"
    style: str | None = None
    sources: list[Image.Image] = field(default_factory=list)  # edits: input images
    mask: Image.Image | None = None


def _model(fields: dict[str, Any], *, editing: bool) -> ModelSpec:
    name = fields.get("model")
    if name is None:  # the reference: dall-e-2 unless a GPT-image-only parameter is used
        name = "gpt-image-1" if _GPT_ONLY & fields.keys() else "dall-e-2"
    allowed = tuple(m for m, spec in MODELS.items() if spec.edit_params or not editing)
    return MODELS[_one_of("model", name, allowed)]


def validate(fields: dict[str, Any], *, editing: bool = False) -> ImageRequest:
    """The request's parameters, checked as the API checks them, in its order."""
    fields = {key: value for key, value in fields.items() if value is not None}
    spec = _model(fields, editing=editing)
    accepted = spec.edit_params if editing else spec.params
    if unknown := next((name for name in fields if name not in accepted), None):
        raise unknown_parameter(unknown)
    prompt = _prompt(fields, spec)
    if spec.max_n == 1 and fields.get("n", 1) not in (1, "1"):
        raise OpenAIError(f"Invalid 'n': {spec.name} only supports n=1.", "n", "invalid_value")
    n = _integer("n", fields.get("n", 1), 1, spec.max_n)
    size = fields.get("size", spec.default_size)
    if size not in spec.sizes and not spec.gpt_image:  # DALL·E names no param here
        raise OpenAIError("The size is not supported by this model.", None, "invalid_size")
    size = _one_of("size", size, spec.sizes)
    quality = _one_of("quality", fields.get("quality", spec.default_quality), spec.qualities)
    request = ImageRequest(spec, prompt, n, size, quality, response_format="b64_json")
    if spec.styles:
        request.style = _one_of("style", fields.get("style", spec.styles[0]), spec.styles)
    if not spec.gpt_image:
        response_format = fields.get("response_format", "url")
        request.response_format = _one_of("response_format", response_format, ("url", "b64_json"))
        return request
    output_format = fields.get("output_format", "png")
    request.output_format = _one_of("output_format", output_format, ("png", "jpeg", "webp"))
    background = fields.get("background", "auto")
    request.background = _one_of("background", background, ("transparent", "opaque", "auto"))
    if request.background == "transparent" and request.output_format == "jpeg":
        message = "Transparent background requires output_format 'png' or 'webp'."
        raise OpenAIError(message, "background", "invalid_value")
    if "output_compression" in fields:
        if request.output_format == "png":
            message = "output_compression is only supported for the 'jpeg' and 'webp' formats."
            raise OpenAIError(message, "output_compression", "invalid_value")
        compression = fields["output_compression"]
        request.output_compression = _integer("output_compression", compression, 0, 100)
    _one_of("moderation", fields.get("moderation", "auto"), ("low", "auto"))
    if fields.get("stream") in (True, "true"):
        message = "This fake does not stream; call without stream=True."
        raise OpenAIError(message, "stream", "unsupported_value")
    return request


# ---------------------------------------------------------------- edits' files


def _open_image(upload: bytes, param: str, spec: ModelSpec) -> Image.Image:
    limit_mb = 50 if spec.gpt_image else 4
    formats = ("PNG", "JPEG", "WEBP") if spec.gpt_image else ("PNG",)
    try:
        image = Image.open(io.BytesIO(upload))
        image.load()
    except Exception as exc:
        message = f"Invalid image file for '{param}': it could not be decoded as an image."
        raise OpenAIError(message, param, "invalid_image_file") from exc
    if image.format not in formats or len(upload) > limit_mb * 1024 * 1024:
        names = " or ".join(f.lower() for f in formats)
        message = f"Uploaded image must be a {names} and less than {limit_mb} MB."
        raise OpenAIError(message, param, "invalid_image_format")
    return image


def has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA") or "transparency" in image.info


def attach_edit_files(request: ImageRequest, images: list[bytes], mask: bytes | None) -> None:
    """Check the edit's images and mask as the reference describes them."""
    spec = request.spec
    most = 16 if spec.gpt_image else 1
    if not images:
        raise _missing("image")
    if len(images) > most:
        message = f"Too many images: {spec.name} accepts at most {most}."
        raise OpenAIError(message, "image", "invalid_value")
    request.sources = [_open_image(data, "image", spec) for data in images]
    first = request.sources[0]
    if not spec.gpt_image and first.width != first.height:
        raise OpenAIError("Uploaded image must be square.", "image", "invalid_value")
    if mask is not None:
        request.mask = _open_image(mask, "mask", spec)
        if request.mask.format != "PNG" or not has_alpha(request.mask):
            message = "The mask must be a PNG with an alpha channel."
            raise OpenAIError(message, "mask", "invalid_image_format")
        if request.mask.size != first.size:
            mask_size = f"{request.mask.width}x{request.mask.height}"
            message = (
                f"The mask ({mask_size}) and the image ({first.width}x{first.height}) "
                "must have the same dimensions."
            )
            raise OpenAIError(message, "mask", "invalid_value")
    elif not spec.gpt_image and not has_alpha(first):
        message = f"Invalid input image - format must be in ['RGBA', 'LA', 'L'], got {first.mode}."
        raise OpenAIError(message, "image", "invalid_image_format")
