"""Google: ``gemini/gemini-2.5-flash-image`` ("Nano Banana") and ``gemini/imagen-3.0-generate-002``.

Gemini 2.5 Flash Image goes through the official ``google-genai`` SDK
(``generateContent``: the image comes back inline; input images make it an edit).
Imagen is served on the same Gemini API key by ``predict``, which the SDK only calls
in Vertex mode, so that one request is made with httpx. The SDK's own retries are
off: the worker retries, with backoff that honours Retry-After. The SDK is imported only
where a key makes it needed (``sdk_client``): importing it costs every process about 0.9 s of
CPU at start-up, keyed or not.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import httpx

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
from imagemill.providers.sizes import nearest_aspect_ratio
from imagemill.specs import InputLimits, ModelSpec, Pricing, SizeRange

if TYPE_CHECKING:
    from google import genai
    from google.genai import types

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
API_VERSION = "v1beta"
FLASH_IMAGE_RATIOS = ["1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"]
IMAGEN_RATIOS = ["1:1", "3:4", "4:3", "9:16", "16:9"]
BLOCKED_FINISH_REASONS = {"SAFETY", "IMAGE_SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII"}

FLASH_IMAGE = ModelSpec(
    id="gemini/gemini-2.5-flash-image",
    provider="gemini",
    name="gemini-2.5-flash-image",
    title="Gemini 2.5 Flash Image (Nano Banana)",
    description="Google's fast multimodal image model: generation and conversational "
    "editing from one or several input images.",
    kinds=[TaskKind.IMAGE, TaskKind.EDIT],
    params_schema={"type": "object", "additionalProperties": False, "properties": {}},
    sizes=SizeRange(min_side=64, max_side=4096, default="1024x1024"),
    # Google's model page: up to 3 input images (PNG, JPEG, WebP) of 7 MB each; a request
    # carries at most 20 MB inline, base64 included (so 15 MB of images).
    limits=InputLimits(
        max_inputs=3,
        input_types=["image/png", "image/jpeg", "image/webp"],
        max_input_bytes=7 * 1024 * 1024,
        max_total_input_bytes=15 * 1024 * 1024,
        negative_prompt=False,
    ),
    max_n=4,  # one image per call: n calls run side by side
    supports_seed=False,
    pricing=Pricing(per_image=0.039),
    aliases=["nano-banana"],
)

IMAGEN_3 = ModelSpec(
    id="gemini/imagen-3.0-generate-002",
    provider="gemini",
    name="imagen-3.0-generate-002",
    title="Imagen 3",
    description="Google's Imagen 3 text-to-image model.",
    kinds=[TaskKind.IMAGE],
    params_schema={
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "person_generation": {
                "title": "People",
                "description": "Whether images may show people: none, adults only, or anyone.",
                "enum": ["dont_allow", "allow_adult", "allow_all"],
                "default": "allow_adult",
            }
        },
    },
    sizes=SizeRange(min_side=64, max_side=4096, default="1024x1024"),
    # "at most 480 tokens" (Imagen guide); negative prompts are gone from Imagen 3 on.
    limits=InputLimits(max_prompt_tokens=480, negative_prompt=False),
    max_n=4,
    supports_seed=False,
    pricing=Pricing(per_image=0.03),
)


class Gemini:
    name = "gemini"

    def __init__(self, settings: Settings) -> None:
        self._key = settings.gemini_api_key.get_secret_value() if settings.gemini_api_key else None
        self._base_url = (settings.gemini_base_url or DEFAULT_BASE_URL).rstrip("/")
        self._timeout = settings.provider_timeout_seconds
        self._client = sdk_client(settings)

    def models(self) -> list[ModelSpec]:
        if self._key:
            return [FLASH_IMAGE, IMAGEN_3]
        reason = "GEMINI_API_KEY is not set"
        return [spec.unavailable(reason) for spec in (FLASH_IMAGE, IMAGEN_3)]

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aio.aclose()

    async def run(self, task: Task, ctx: RunContext) -> list[Output]:
        if self._client is None or self._key is None:
            raise AuthError("GEMINI_API_KEY is not set")
        with translated_errors(self._key):
            if task.model == IMAGEN_3.name:
                return await self._imagen(ctx, task, self._key)
            calls = [self._flash_image(self._client, task, ctx) for _ in range(task.n)]
            return await side_by_side(calls)

    async def _flash_image(self, client: genai.Client, task: Task, ctx: RunContext) -> Output:
        from google.genai import types

        ratio = nearest_aspect_ratio(Size(task.width, task.height), FLASH_IMAGE_RATIOS)
        parts: list[Any] = [
            types.Part.from_bytes(data=image.data, mime_type=image.content_type)
            for image in task.inputs
        ]
        response = await client.aio.models.generate_content(
            model=task.model,
            contents=[*parts, task.prompt],
            config=types.GenerateContentConfig(
                response_modalities=["TEXT", "IMAGE"],
                image_config=types.ImageConfig(aspect_ratio=ratio),
            ),
        )
        image = _image_of(response)
        # The SDK read and decoded the answer itself: counted now, before it is stored.
        await ctx.hold_memory(len(image.data or b""))
        return image

    async def _imagen(self, ctx: RunContext, task: Task, key: str) -> list[Output]:
        ratio = nearest_aspect_ratio(Size(task.width, task.height), IMAGEN_RATIOS)
        parameters: dict[str, Any] = {"sampleCount": task.n, "aspectRatio": ratio}
        if "person_generation" in task.params:
            parameters["personGeneration"] = task.params["person_generation"]
        async with ctx.http.stream(
            "POST",
            f"{self._base_url}/{API_VERSION}/models/{task.model}:predict",
            headers={"x-goog-api-key": key},
            json={"instances": [{"prompt": task.prompt}], "parameters": parameters},
            timeout=self._timeout,
        ) as response:
            if response.status_code >= 400:
                await response.aread()
                raise _http_error(response)
            await read_body(response, ctx)
        predictions = [
            p for p in response.json().get("predictions", []) if "bytesBase64Encoded" in p
        ]
        if not predictions:
            raise ContentRejected("Imagen filtered every image of this prompt")
        if len(predictions) < task.n:
            raise ContentRejected(
                f"Imagen filtered {task.n - len(predictions)} of the {task.n} images"
            )
        return [
            Output(
                data=base64.b64decode(p["bytesBase64Encoded"]),
                content_type=p.get("mimeType", "image/png"),
            )
            for p in predictions
        ]


def sdk_client(settings: Settings) -> genai.Client | None:
    """An SDK client on the configured key (its own retries off: the worker retries), or
    ``None`` without a key."""
    if not settings.gemini_api_key:
        return None
    from google import genai
    from google.genai import types

    return genai.Client(
        api_key=settings.gemini_api_key.get_secret_value(),
        http_options=types.HttpOptions(
            base_url=(settings.gemini_base_url or DEFAULT_BASE_URL).rstrip("/"),
            api_version=API_VERSION,
            timeout=int(settings.provider_timeout_seconds * 1000),
            retry_options=types.HttpRetryOptions(attempts=1),
        ),
    )


def _transport_errors() -> tuple[type[Exception], ...]:
    """The connection errors of the SDK's async transport: aiohttp's where it is installed
    (the SDK then uses it), none besides httpx's otherwise."""
    try:
        from aiohttp import ClientError
    except ImportError:  # pragma: no cover
        return ()
    return (ClientError,)


def _image_of(response: types.GenerateContentResponse) -> Output:
    """The image in a ``generateContent`` answer, or why there is none."""
    feedback = response.prompt_feedback
    if feedback is not None and feedback.block_reason is not None:
        raise ContentRejected(f"Gemini blocked the prompt ({feedback.block_reason})")
    for candidate in response.candidates or []:
        for part in (candidate.content.parts if candidate.content else None) or []:
            if part.inline_data is not None and part.inline_data.data:
                return Output(data=part.inline_data.data, content_type=part.inline_data.mime_type)
        reason = str(candidate.finish_reason.value) if candidate.finish_reason else ""
        if reason in BLOCKED_FINISH_REASONS:
            raise ContentRejected(f"Gemini withheld the image ({reason})")
    raise ProviderError("Gemini answered without an image", retryable=True)


def _http_error(response: httpx.Response) -> ProviderError:
    try:
        error = response.json().get("error", {})
    except ValueError:
        error = {}
    message = f"Gemini: {error.get('message') or f'HTTP {response.status_code}'}"
    return _status_error(
        response.status_code, message, retry_after_seconds(response.headers.get("retry-after"))
    )


def _status_error(status: int, message: str, retry_after: float | None) -> ProviderError:
    if status == 429:
        return RateLimited(message, retry_after=retry_after)
    if status in (401, 403) or "API_KEY" in message or "API key" in message:
        return AuthError(f"Gemini refused the API key ({status})")
    if status in (400, 404):
        return ProviderInputError(message)
    return ProviderError(message, retryable=status >= 500 or status == 408)


@contextmanager
def translated_errors(secret: str) -> Iterator[None]:
    """The SDK's and httpx's exceptions, as imagemill's error tree (the key blanked out)."""
    from google.genai import errors as genai_errors

    unreachable: tuple[type[Exception], ...] = (httpx.TransportError, *_transport_errors(), OSError)
    try:
        yield
    except genai_errors.APIError as exc:
        headers = getattr(exc.response, "headers", None) or {}
        retry_after = retry_after_seconds(headers.get("Retry-After"))
        message = redact(f"Gemini: {exc.message or exc.status or exc.code}", secret)
        raise _status_error(exc.code, message, retry_after) from exc
    except (TimeoutError, httpx.TimeoutException) as exc:
        raise ProviderTimeout("Gemini did not answer in time") from exc
    except unreachable as exc:
        # aiohttp's text names the TLS context as a Python repr: plain words instead.
        reason = redact(describe(exc), secret)
        raise ProviderUnavailable(f"could not reach Gemini: {reason}") from exc
    except (json.JSONDecodeError, binascii.Error, ValueError) as exc:
        raise ProviderError(
            "Gemini sent a response imagemill could not read", retryable=True
        ) from exc
