"""A fake of the OpenAI API (Images, and Chat Completions for the text kinds), written
from OpenAI's public API reference.

Owns ``FakeOpenAI``: an ASGI app serving ``POST /v1/images/generations`` (JSON) and
``POST /v1/images/edits`` (multipart) for ``gpt-image-1``, ``dall-e-3`` and ``dall-e-2``,
with OpenAI's bearer auth and error bodies, real decodable images (an edit repaints its
input), token usage, and DALL·E style signed download URLs that expire; and
``POST /v1/chat/completions`` for ``gpt-4o-mini`` and ``gpt-4.1-mini`` (``fakes.openai_chat``:
vision, structured outputs, refusals), so one base URL serves an SDK client for both.

What each model accepts, and the checks a request goes through, are in
``fakes.openai_models``; the plumbing shared with the other image fakes is in
``fakes.images``, ``fakes.blobs``, ``fakes.calls``, ``fakes.faults`` and ``fakes.server``.
"""

from __future__ import annotations

import base64
import hmac
import json
import math
import time
from typing import Any

from PIL import Image
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fakes.blobs import BlobStore, Clock
from fakes.calls import RecordedCall, UploadedFile, bearer_token
from fakes.faults import Faults, inject_fault
from fakes.hosted import ServesImageUrls
from fakes.images import encode_image, render_image, seed_colours
from fakes.openai_chat import complete
from fakes.openai_messages import redacted
from fakes.openai_models import (
    ImageRequest,
    OpenAIError,
    attach_edit_files,
    has_alpha,
    unknown_parameter,
    validate,
)
from fakes.server import Plug as Plug  # re-exported: tests plug fakes in from here

# Output tokens per image by quality and size (the image generation guide's cost table).
OUTPUT_TOKENS = {
    "low": {"1024x1024": 272, "1024x1536": 408, "1536x1024": 400},
    "medium": {"1024x1024": 1056, "1024x1536": 1584, "1536x1024": 1568},
    "high": {"1024x1024": 4160, "1024x1536": 6240, "1536x1024": 6208},
}
IMAGE_INPUT_TOKENS = 323  # per input image of an edit; a plausible figure, not a billed one
MISSING_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization "
    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY). "
    "You can obtain an API key from https://platform.openai.com/account/api-keys."
)
UNPARSABLE_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
    "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
    "sent was not valid JSON.)"
)


# ---------------------------------------------------------------- the answer's images


def render_edit(request: ImageRequest, index: int, width: int, height: int) -> bytes:
    """The first image, resized, with its clear part (by mask or own alpha) repainted."""
    base = request.sources[0].convert("RGBA").resize((width, height))
    keyed = request.mask if request.mask is not None else request.sources[0]
    if has_alpha(keyed):  # a mask always has alpha
        alpha = keyed.convert("RGBA").getchannel("A").resize((width, height))
        region = alpha.point(lambda a: 255 if a == 0 else 0)
    else:  # nothing marked: the whole picture is edited
        region = Image.new("L", (width, height), 255)
    _, accent = seed_colours(f"{request.prompt}\x00{index}")
    painted = Image.composite(Image.new("RGBA", (width, height), (*accent, 255)), base, region)
    if request.background != "transparent":
        painted = painted.convert("RGB")
    return encode_image(painted, request.output_format, request.output_compression)


def output_size(request: ImageRequest) -> tuple[int, int]:
    if request.size != "auto":
        width, height = request.size.split("x")
        return int(width), int(height)
    if not request.sources:
        return 1024, 1024
    ratio = request.sources[0].width / request.sources[0].height  # nearest supported shape
    return min(
        ((1024, 1024), (1536, 1024), (1024, 1536)), key=lambda s: abs(math.log(ratio * s[1] / s[0]))
    )


# ---------------------------------------------------------------- the fake


class FakeOpenAI(ServesImageUrls):
    """The OpenAI Images API, in process: ``app`` is the ASGI app to serve.

    ``calls`` records every request; ``blobs`` holds the files behind issued URLs and
    ``downloads`` counts their successful GETs by blob id (``downloads_of(url)``).
    ``clock`` is the fake's time, for URL expiry and ``created``. ``faults`` may fail
    the endpoints named ``"generations"``, ``"edits"``, ``"chat"`` (chat completions) and
    ``"files"`` (URL downloads). A chat call is recorded with its images' sizes in place
    of their data URLs.
    """

    def __init__(
        self,
        api_key: str = "sk-test",
        url_ttl_seconds: float = 3600.0,
        faults: Faults | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.api_key = api_key
        self.faults = faults if faults is not None else Faults()
        self.calls: list[RecordedCall] = []
        self.base_url: str | None = None
        self.blobs = BlobStore(url_ttl_seconds, clock, prefix="/private/org-fake/user-fake")
        self._clock = clock
        self.app = Starlette(
            routes=[
                Route("/v1/images/generations", self._generations, methods=["POST"]),
                Route("/v1/images/edits", self._edits, methods=["POST"]),
                Route("/v1/chat/completions", self._chat_completions, methods=["POST"]),
                Route("/private/{org}/{user}/{name}", self._download, methods=["GET"]),
            ],
            exception_handlers={HTTPException: self._http_error},
        )

    async def _generations(self, request: Request) -> Response:
        raw = await request.body()
        fields = _json_object(raw)
        self._record("generations", request, fields or {}, {})
        try:
            self._authorize(request)
            if (fault := await inject_fault(self.faults, "generations", request)) is not None:
                return fault
            if fields is None:
                raise OpenAIError(UNPARSABLE_JSON)
            return self._respond(validate(fields), request)
        except OpenAIError as error:
            return error.response()

    async def _edits(self, request: Request) -> Response:
        fields: dict[str, Any] = {}
        contents: dict[str, list[bytes]] = {}
        files: dict[str, list[UploadedFile]] = {}
        for key, value in (await request.form()).multi_items():
            if isinstance(value, str):
                fields[key] = value
                continue
            contents.setdefault(key, []).append(data := await value.read())
            files.setdefault(key, []).append(
                UploadedFile(value.filename, value.content_type, len(data))
            )
        self._record("edits", request, fields, files)
        try:
            self._authorize(request)
            if (fault := await inject_fault(self.faults, "edits", request)) is not None:
                return fault
            files_ok = ("image", "image[]", "mask")
            if unknown := next((name for name in contents if name not in files_ok), None):
                raise unknown_parameter(unknown)
            edit = validate(fields, editing=True)
            masks = contents.get("mask", [])
            images = contents.get("image", []) + contents.get("image[]", [])
            attach_edit_files(edit, images, masks[0] if masks else None)
            return self._respond(edit, request)
        except OpenAIError as error:
            return error.response()

    async def _chat_completions(self, request: Request) -> Response:
        fields = _json_object(await request.body())
        self._record("chat", request, redacted(fields or {}), {})
        try:
            self._authorize(request)
            if (fault := await inject_fault(self.faults, "chat", request)) is not None:
                return fault
            if fields is None:
                raise OpenAIError(UNPARSABLE_JSON)
            body = complete(fields, int(self._clock()))
        except OpenAIError as error:
            return error.response()
        return JSONResponse(body, headers={"x-request-id": f"req_{body['id'][9:]}"})

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        # Unknown paths and wrong methods alike: OpenAI's 404 "Invalid URL"
        message = f"Invalid URL ({request.method} {request.url.path})"
        return OpenAIError(message, status=404).response()

    def _authorize(self, request: Request) -> None:
        token = bearer_token(request)
        if token is None:
            raise OpenAIError(MISSING_KEY, status=401)
        if not hmac.compare_digest(token, self.api_key):
            message = (
                f"Incorrect API key provided: {_masked(token)}. "
                "You can find your API key at https://platform.openai.com/account/api-keys."
            )
            raise OpenAIError(message, None, "invalid_api_key", status=401)

    def _record(
        self, endpoint: str, request: Request, fields: dict[str, Any], files: dict[str, Any]
    ) -> None:
        if self.base_url is None:  # served by someone else's serve(app)
            self.base_url = str(request.base_url).rstrip("/")
        self.calls.append(RecordedCall(endpoint, fields, files, dict(request.headers)))

    def _respond(self, job: ImageRequest, request: Request) -> Response:
        width, height = output_size(job)
        transparent = job.background == "transparent"
        data: list[dict[str, str]] = []
        for index in range(job.n):
            if job.sources:
                content = render_edit(job, index, width, height)
            else:
                seed, compression = f"{job.prompt}\x00{index}", job.output_compression
                content = render_image(
                    seed, width, height, job.output_format, transparent, compression
                )
            if job.response_format == "url":
                item = {"url": self.blobs.put(content, job.output_format, str(request.base_url))}
            else:
                item = {"b64_json": base64.b64encode(content).decode()}
            if job.style is not None:  # dall-e-3 rewrites every prompt
                item["revised_prompt"] = f"{job.prompt}, rendered in a {job.style} style."
            data.append(item)
        body: dict[str, Any] = {"created": int(self._clock()), "data": data}
        if job.spec.gpt_image:
            quality = "medium" if job.quality == "auto" else job.quality
            body |= {
                "background": "transparent" if transparent else "opaque",
                "output_format": job.output_format,
                "quality": quality,
                "size": f"{width}x{height}",
                "usage": _usage(job, quality, f"{width}x{height}"),
            }
        return JSONResponse(body)


def _usage(request: ImageRequest, quality: str, size: str) -> dict[str, Any]:
    text_tokens = max(1, math.ceil(len(request.prompt) / 4))
    image_tokens = IMAGE_INPUT_TOKENS * len(request.sources)
    output_tokens = OUTPUT_TOKENS[quality][size] * request.n
    return {
        "input_tokens": text_tokens + image_tokens,
        "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": image_tokens},
        "output_tokens": output_tokens,
        "total_tokens": text_tokens + image_tokens + output_tokens,
    }


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        parsed = json.loads(raw)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _masked(key: str) -> str:
    """How OpenAI echoes a wrong key: its ends, the middle starred."""
    if len(key) <= 12:
        return key
    return f"{key[:8]}{'*' * (len(key) - 12)}{key[-4:]}"
