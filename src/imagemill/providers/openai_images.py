"""OpenAI images: ``openai/gpt-image-1`` (images and edits) and ``openai/dall-e-3``.

Through the official ``openai`` SDK, with its own retries off (the worker retries, with
backoff that honours Retry-After, across attempts). gpt-image-1 answers with the image
bytes; DALL·E 3 with URLs that expire after an hour, which imagemill downloads at once.
The request and response mapping and the error translation here are shared by every
provider that speaks the OpenAI images API (see ``recraft.py``).

The SDK is imported only where a key makes it needed: importing it costs every process
about 0.7 s of CPU at start-up (the CLI's commands, each worker), keyed or not.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pybase64
from pydantic import BaseModel, ValidationError

from imagemill.config import Settings
from imagemill.domain import Output, Size, Task, TaskKind
from imagemill.errors import (
    AuthError,
    ContentRejected,
    ProviderError,
    ProviderInputError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    describe,
)
from imagemill.providers.base import (
    RunContext,
    read_body,
    redact,
    retry_after_seconds,
    side_by_side,
)
from imagemill.providers.sizes import nearest_size
from imagemill.specs import InputLimits, ModelSpec, Pricing, SizeRange
from imagemill.storage import masks

if TYPE_CHECKING:
    import openai
    from openai import AsyncOpenAI
    from openai._response import AsyncAPIResponse, AsyncResponseContextManager

GPT_IMAGE_SIZES = ["1024x1024", "1536x1024", "1024x1536"]
DALL_E_3_SIZES = ["1024x1024", "1792x1024", "1024x1792"]
# USD per million tokens (gpt-image-1): what an image really cost, from the response's usage.
TOKEN_PRICES = {"text": 5.0, "image": 10.0, "output": 40.0}

GPT_IMAGE_1 = ModelSpec(
    id="openai/gpt-image-1",
    provider="openai",
    name="gpt-image-1",
    title="GPT Image 1",
    description="OpenAI's natively multimodal image model: strong prompt following, "
    "text rendering and editing with several input images and a mask.",
    kinds=[TaskKind.IMAGE, TaskKind.EDIT],
    params_schema={
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "quality": {
                "title": "Quality",
                "enum": ["low", "medium", "high", "auto"],
                "default": "auto",
                "description": "Higher quality takes longer and costs more.",
            },
            "background": {
                "title": "Background",
                "enum": ["transparent", "opaque", "auto"],
                "default": "auto",
                "description": "Transparent needs the PNG or WebP format.",
            },
            "output_format": {
                "title": "File format",
                "enum": ["png", "jpeg", "webp"],
                "default": "png",
                "description": "The format the image is made in.",
            },
            "output_compression": {
                "title": "Compression (%)",
                "type": "integer",
                "minimum": 0,
                "maximum": 100,
                "description": "JPEG and WebP only: 0 is the largest file, 100 the smallest.",
            },
            "moderation": {
                "title": "Moderation",
                "enum": ["auto", "low"],
                "default": "auto",
                "description": "How strictly OpenAI filters what it makes (low: less).",
            },
            "input_fidelity": {
                "title": "Input fidelity",
                "enum": ["low", "high"],
                "description": "Edits: how closely to keep the input image's details "
                "(faces, logos); high costs more.",
            },
        },
        # As OpenAI's reference has it: compression is for JPEG and WebP; a transparent
        # background needs a format with transparency.
        "allOf": [
            {
                "description": "output_compression is for output_format jpeg or webp",
                "field": "output_format",
                "anyOf": [
                    {"properties": {"output_compression": {"type": "null"}}},  # none given
                    {
                        "properties": {"output_format": {"enum": ["jpeg", "webp"]}},
                        "required": ["output_format"],
                    },
                ],
            },
            {
                "description": "a transparent background needs output_format png or webp",
                "field": "output_format",
                "anyOf": [
                    {"properties": {"background": {"enum": ["opaque", "auto"]}}},
                    {"properties": {"output_format": {"enum": ["png", "webp"]}}},
                ],
            },
        ],
    },
    sizes=SizeRange(min_side=64, max_side=4096, fixed=GPT_IMAGE_SIZES, default="1024x1024"),
    # OpenAI's images reference: prompts to 32,000 characters; up to 16 PNG, WebP or JPEG
    # inputs under 50 MB each; a mask (for the first image).
    limits=InputLimits(
        max_prompt_chars=32_000,
        max_inputs=16,
        input_types=["image/png", "image/webp", "image/jpeg"],
        max_input_bytes=50 * 1024 * 1024,
        mask=True,
        negative_prompt=False,
        param_kinds={"moderation": [TaskKind.IMAGE], "input_fidelity": [TaskKind.EDIT]},
    ),
    max_n=10,
    supports_seed=False,
    pricing=Pricing(
        per_image=0.042,
        by_quality={
            "low": {"1024x1024": 0.011, "*": 0.016},
            "medium": {"1024x1024": 0.042, "*": 0.063},
            "high": {"1024x1024": 0.167, "*": 0.25},
        },
    ),
)

DALL_E_3 = ModelSpec(
    id="openai/dall-e-3",
    provider="openai",
    name="dall-e-3",
    title="DALL·E 3",
    description="OpenAI's DALL·E 3; rewrites prompts (the revised prompt is kept per output).",
    kinds=[TaskKind.IMAGE],
    params_schema={
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "quality": {
                "title": "Quality",
                "enum": ["standard", "hd"],
                "default": "standard",
                "description": "hd: finer detail, at a higher price.",
            },
            "style": {
                "title": "Style",
                "enum": ["vivid", "natural"],
                "default": "vivid",
                "description": "vivid: dramatic and hyper-real; natural: less so.",
            },
        },
    },
    sizes=SizeRange(min_side=64, max_side=4096, fixed=DALL_E_3_SIZES, default="1024x1024"),
    limits=InputLimits(max_prompt_chars=4000, negative_prompt=False),  # OpenAI's reference
    max_n=4,  # one image per call: n calls run side by side
    supports_seed=False,
    pricing=Pricing(
        per_image=0.04,
        by_size={"1792x1024": 0.08, "1024x1792": 0.08},
        by_quality={"hd": {"1024x1024": 0.08, "*": 0.12}},
    ),
)


def openai_client(settings: Settings) -> tuple[str | None, AsyncOpenAI | None]:
    """The configured key and an SDK client on it (its own retries off: the worker
    retries), or ``(None, None)`` without a key."""
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    if not key:
        return None, None
    from openai import AsyncOpenAI  # only with a key: see the module's docstring

    client = AsyncOpenAI(
        api_key=key,
        base_url=settings.openai_base_url,
        timeout=settings.provider_timeout_seconds,
        max_retries=0,
    )
    return key, client


class OpenAIImages:
    name = "openai"

    def __init__(self, settings: Settings) -> None:
        self._key, self._client = openai_client(settings)

    def models(self) -> list[ModelSpec]:
        if self._client is not None:
            return [GPT_IMAGE_1, DALL_E_3]
        reason = "OPENAI_API_KEY is not set"
        return [spec.unavailable(reason) for spec in (GPT_IMAGE_1, DALL_E_3)]

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def run(self, task: Task, ctx: RunContext) -> list[Output]:
        if self._client is None:
            raise AuthError("OPENAI_API_KEY is not set")
        size = nearest_size(Size(task.width, task.height), _sizes(task.model))
        headers = {"Idempotency-Key": task.job_id}
        from openai import omit

        with translated_errors("OpenAI", self._key):
            if task.kind is TaskKind.EDIT:
                body = await body_of(
                    self._client.images.with_streaming_response.edit(
                        model=task.model,
                        image=[
                            _file(i.data, i.content_type, f"input-{n}")
                            for n, i in enumerate(task.inputs)
                        ],
                        mask=_file(masks.as_alpha(task.mask.data), "image/png", "mask")
                        if task.mask
                        else omit,
                        prompt=task.prompt,
                        n=task.n,
                        size=str(size),
                        extra_headers=headers,
                        **_options(task.params, edit=True),
                    ),
                    ctx,
                )
                return outputs_of([body], task.params.get("quality"))
            if task.model == DALL_E_3.name:  # one image per call
                calls = [
                    body_of(
                        self._client.images.with_streaming_response.generate(
                            model=task.model,
                            prompt=task.prompt,
                            n=1,
                            size=str(size),
                            response_format="url",
                            extra_headers={"Idempotency-Key": f"{task.job_id}-{index}"},
                            **_options(task.params),
                        ),
                        ctx,
                    )
                    for index in range(task.n)
                ]
                bodies = await side_by_side(calls)
            else:
                call = self._client.images.with_streaming_response.generate(
                    model=task.model,
                    prompt=task.prompt,
                    n=task.n,
                    size=str(size),
                    extra_headers=headers,
                    **_options(task.params),
                )
                bodies = [await body_of(call, ctx)]
        return outputs_of(bodies, task.params.get("quality"))


async def body_of(
    call: AsyncResponseContextManager[AsyncAPIResponse[Any]], ctx: RunContext
) -> ImagesBody:
    """An images response's body: read once the process's response budget has room for
    it (``read_body``), parsed once from its bytes straight into what imagemill reads of
    it (pydantic-core; the SDK would decode megabytes of text and copy them into its own
    models first). ``ProviderError`` if it is not JSON, or not that shape."""
    import openai

    async with call as response:
        http = response.http_response
        # The SDK's HTTP library (httpx, or httpx2 in later SDKs): its errors while the
        # body is read become the SDK's, as they would inside the SDK.
        library = sys.modules[type(http).__module__.partition(".")[0]]
        try:
            content = await read_body(http, ctx)
        except library.TimeoutException as exc:
            raise openai.APITimeoutError(request=http.request) from exc
        except library.RequestError as exc:
            raise openai.APIConnectionError(request=http.request) from exc
    try:
        return ImagesBody.model_validate_json(content)
    except ValidationError as exc:
        if any(error["type"] == "json_invalid" for error in exc.errors()):
            message = "the provider sent a body that is not JSON"
        else:
            message = "the provider sent a response imagemill could not read"
        raise ProviderError(message, retryable=True) from exc


def _sizes(model: str) -> list[str]:
    return DALL_E_3_SIZES if model == DALL_E_3.name else GPT_IMAGE_SIZES


def _options(params: dict[str, Any], *, edit: bool = False) -> dict[str, Any]:
    """The model params as the SDK's keyword arguments (checked at submit against the
    schema, and ``limits.param_kinds``), without those of the other endpoint: a job
    recorded before submit refused them must not make the SDK call fail."""
    kind = TaskKind.EDIT if edit else TaskKind.IMAGE
    kinds = GPT_IMAGE_1.limits.param_kinds
    return {k: v for k, v in params.items() if kind in kinds.get(k, [kind])}


def _file(data: bytes, content_type: str, stem: str) -> tuple[str, bytes, str]:
    extension = content_type.rsplit("/", 1)[-1].replace("jpeg", "jpg")
    return (f"{stem}.{extension}", data, content_type)


def outputs_of(bodies: Sequence[ImagesBody], quality: str | None) -> list[Output]:
    """One ``Output`` per image in OpenAI-shaped response bodies (the images reference's
    ``ImagesResponse``): its bytes, decoded once, or a URL to fetch now. Each image's
    base64 is let go from its body once decoded, so its megabytes are held once.
    ``ProviderError`` for a body with no images or damaged base64."""
    outputs = []
    for response in bodies:
        if not response.data:
            raise ProviderError("the provider answered with no images", retryable=True)
        cost = _token_cost(response.usage, len(response.data))
        content_type = f"image/{response.output_format}" if response.output_format else None
        for item in response.data:
            if item.b64_json:
                image = Output(data=_decoded(item.b64_json), content_type=content_type)
                item.b64_json = None
            elif item.url:
                image = Output(url=item.url)
            else:
                raise ProviderError("an image came with neither bytes nor a URL", retryable=True)
            outputs.append(
                dataclasses.replace(
                    image,
                    revised_prompt=item.revised_prompt,
                    cost_usd=cost,
                    quality=response.quality or quality,
                )
            )
    return outputs


def _decoded(encoded: str) -> bytes:
    """An image sent as base64 (plain, or wrapped in lines), decoded from the text as it
    is (pybase64: SIMD, no copy of the text first)."""
    try:
        return pybase64.b64decode(encoded, validate=True)
    except ValueError:  # not plain base64 (binascii.Error is one): lines, or damage
        pass
    try:
        return pybase64.b64decode(encoded)
    except ValueError as exc:
        raise ProviderError("an image's base64 is damaged", retryable=True) from exc


class _Image(BaseModel):
    b64_json: str | None = None
    url: str | None = None
    revised_prompt: str | None = None


class _Usage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0
    input_tokens_details: dict[str, int] | None = None


class ImagesBody(BaseModel):
    """What imagemill reads of an images response (fields it does not read are ignored)."""

    data: list[_Image] | None = None
    output_format: str | None = None
    quality: str | None = None
    usage: _Usage | None = None


def _token_cost(usage: _Usage | None, images: int) -> float | None:
    """Per image, from the tokens gpt-image-1 reports; ``None`` leaves it to the price table."""
    if usage is None:
        return None
    details = usage.input_tokens_details
    text = details.get("text_tokens", 0) if details else usage.input_tokens
    image = details.get("image_tokens", 0) if details else 0
    total = (
        text * TOKEN_PRICES["text"]
        + image * TOKEN_PRICES["image"]
        + usage.output_tokens * TOKEN_PRICES["output"]
    ) / 1_000_000
    return round(total / images, 6)


@contextmanager
def translated_errors(provider: str, secret: str | None) -> Iterator[None]:
    """The OpenAI SDK's exceptions, as imagemill's error tree (secrets blanked out)."""
    import openai

    try:
        yield
    except openai.APITimeoutError as exc:
        raise ProviderTimeout(f"{provider} did not answer in time") from exc
    except openai.APIConnectionError as exc:
        raise ProviderUnavailable(
            f"could not reach {provider}: {redact(describe(exc), secret)}"
        ) from exc
    except openai.APIStatusError as exc:
        raise _status_error(provider, exc, redact(_message(exc), secret)) from exc
    except (openai.APIResponseValidationError, ValueError) as exc:
        raise ProviderError(
            f"{provider} sent a response imagemill could not read", retryable=True
        ) from exc


def _status_error(provider: str, exc: openai.APIStatusError, message: str) -> ProviderError:
    status = exc.status_code
    text = f"{provider}: {message}"
    if status == 429:
        return RateLimited(text, retry_after=_retry_after(exc))
    if status in (401, 403):
        return AuthError(f"{provider} refused the API key ({status})")
    if status == 400 and _code(exc) in ("content_policy_violation", "moderation_blocked"):
        return ContentRejected(text)
    if status in (400, 404, 422):
        param = _body(exc).get("param")
        return ProviderInputError(text, field=f"params.{param}" if param else None)
    return ProviderError(text, retryable=status >= 500 or status in (408, 409))


def _body(exc: openai.APIStatusError) -> dict[str, Any]:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        return inner if isinstance(inner, dict) else {}
    return {}


def _code(exc: openai.APIStatusError) -> str | None:
    code = _body(exc).get("code") or getattr(exc, "code", None)
    return str(code) if code else None


def _message(exc: openai.APIStatusError) -> str:
    message = _body(exc).get("message")
    return str(message) if message else f"HTTP {exc.status_code}"


def _retry_after(exc: openai.APIStatusError) -> float | None:
    return retry_after_seconds(exc.response.headers.get("retry-after"))
