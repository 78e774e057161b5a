"""OpenAI-compatible ``POST /v1/images/generations`` and ``/v1/images/edits``: the
official openai SDK works unchanged.

The request runs as an ordinary job (stored, cached, counted), and the call waits for
it, as long as the SDK itself waits (its ``x-stainless-read-timeout``, 10 minutes by
default; at most ``IMAGEMILL_OPENAI_WAIT_SECONDS``). ``url`` answers are signed links to
imagemill's own permanent copy, not a provider URL that expires in an hour.

Errors come in OpenAI's shape and statuses (``api/openai_errors.py``). A call the SDK
retries never starts a second generation: with an ``Idempotency-Key`` it is that key's
job, and a retry (``x-stainless-retry-count`` > 0) joins the job its first try made.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import pybase64
from fastapi import APIRouter, Request, Response
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    WithJsonSchema,
    field_validator,
)
from starlette.datastructures import FormData, UploadFile

from imagemill import boundary
from imagemill.api import openai_errors
from imagemill.api.deps import CurrentOwner, IdempotencyKey, Links, LinksDep, RuntimeDep
from imagemill.api.responses import PiecesResponse
from imagemill.api.routes.assets import read_upload
from imagemill.api.routing import CheckedRoute, read_form
from imagemill.api.schemas import OpenAIImagesResponse
from imagemill.boundary import quoted
from imagemill.db.accounts import Owner
from imagemill.domain import Job, JobStatus, Submission, TaskKind
from imagemill.errors import InvalidInput
from imagemill.fields import (
    MAX_PROMPT_CHARS,
    Count,
    json_integer,
)
from imagemill.jobs.service import request_fingerprint, utcnow
from imagemill.runtime import Runtime
from imagemill.specs import ModelSpec
from imagemill.storage.blobs import content_key

# The options of OpenAI's two endpoints (its API reference), passed to the model as params.
GENERATION_OPTIONS = (
    "quality",
    "style",
    "background",
    "output_format",
    "output_compression",
    "moderation",
)
EDIT_OPTIONS = ("quality", "background", "output_format", "output_compression", "input_fidelity")
OPENAI_OPTIONS = tuple(dict.fromkeys((*GENERATION_OPTIONS, *EDIT_OPTIONS)))
RETRY_WINDOW_SECONDS = 3600.0  # how far back a retried call looks for its first try's job
ANSWER_MARGIN_SECONDS = 2.0  # answer this long before the client would give up waiting
MAX_EDIT_IMAGES = 16
MAX_USER_CHARS = 200  # OpenAI's ``user``: an end user's id
FORM_TEXT_BYTES = 256 * 1024  # a text field of the edits form (a prompt is the longest)
_IMAGE_FIELD = re.compile(r"image(\[[0-9]*\])?")


class OpenAIRoute(CheckedRoute):
    """Answers every error in OpenAI's shape and status (``openai_errors``)."""

    upload_files = MAX_EDIT_IMAGES + 1  # the images and a mask

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def openai_shaped(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:
                if (runtime := getattr(request.app.state, "runtime", None)) is not None:
                    runtime.metrics.refused(exc)
                return openai_errors.for_exception(exc)

        return openai_shaped


router = APIRouter(prefix="/v1/images", tags=["openai-compatible"], route_class=OpenAIRoute)


Compression = Annotated[
    int,
    BeforeValidator(json_integer),
    Field(ge=0, le=100),
    WithJsonSchema({"type": "integer", "minimum": 0, "maximum": 100}),
]
NoPartialImages = Annotated[
    int,
    BeforeValidator(json_integer),
    Field(ge=0, le=0),
    WithJsonSchema({"type": "integer", "const": 0}),
]


class OpenAIImageRequest(BaseModel):
    """The body of OpenAI's ``POST /images/generations``. An option the chosen model does
    not take (``style`` for gpt-image-1, say) is a 400 naming it, unless its value asks for
    nothing (``quality: "auto"``); so is a field OpenAI does not define."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    model: str = Field("placeholder", max_length=200)
    n: Count = 1
    size: str | None = Field(None, description="'WxH' or 'auto'.")
    response_format: Literal["url", "b64_json"] | None = None
    quality: str | None = None
    style: str | None = None
    background: str | None = None
    output_format: str | None = None
    output_compression: Compression | None = None
    moderation: str | None = None
    user: str | None = Field(
        None,
        max_length=MAX_USER_CHARS,
        description="Your end user's id; kept in the job's metadata.",
    )
    stream: Annotated[
        StrictBool | None, WithJsonSchema({"anyOf": [{"const": False}, {"type": "null"}]})
    ] = Field(None, description="Streaming is not supported: false or left out.")
    partial_images: NoPartialImages | None = Field(
        None, description="Only with streaming: 0 or left out."
    )

    @field_validator("stream")
    @classmethod
    def _no_streaming(cls, value: bool | None) -> bool | None:
        if value:
            raise ValueError("streaming is not supported; leave 'stream' out")
        return value


@router.post(
    "/generations",
    response_model=OpenAIImagesResponse,
    responses=openai_errors.RESPONSES,
)
async def create_images(
    body: OpenAIImageRequest,
    request: Request,
    owner: CurrentOwner,
    runtime: RuntimeDep,
    links: LinksDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Generate images and wait for them, answering in OpenAI's response shape."""
    spec = runtime.registry.resolve(body.model)[1]
    options = {k: getattr(body, k) for k in GENERATION_OPTIONS}
    submission = _submission(
        model=spec.id,
        prompt=body.prompt,
        n=body.n,
        size=body.size,
        params=_params(options, spec, TaskKind.IMAGE),
        metadata={"openai_user": body.user} if body.user else {},
    )
    call = _Call(runtime, owner, links, body.response_format)
    return await call.run(request, submission, "openai.generations", idempotency_key)


EDIT_FORM = {
    "multipart/form-data": {
        "encoding": {
            "image": {"contentType": "image/png, image/jpeg, image/webp"},
            "mask": {"contentType": "image/png"},
        },
        "schema": {
            "type": "object",
            "required": ["image", "prompt"],
            "properties": {
                "image": {
                    "description": "One image, or several as `image[]` (up to 16).",
                    "type": "string",
                    "format": "binary",
                },
                "mask": {"type": "string", "format": "binary"},
                "prompt": {"type": "string", "minLength": 1, "maxLength": MAX_PROMPT_CHARS},
                "model": {"type": "string"},
                "n": {"type": "integer", "minimum": 1, "maximum": 10},
                "size": {"type": "string"},
                "response_format": {"enum": ["url", "b64_json"]},
                **{name: {"type": "string"} for name in EDIT_OPTIONS},
                "user": {"type": "string", "maxLength": MAX_USER_CHARS},
            },
            "additionalProperties": False,
        },
    }
}


@router.post(
    "/edits",
    response_model=OpenAIImagesResponse,
    responses=openai_errors.RESPONSES,
    openapi_extra={"requestBody": {"required": True, "content": EDIT_FORM}},
)
async def edit_images(
    request: Request,
    owner: CurrentOwner,
    runtime: RuntimeDep,
    links: LinksDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Edit images (multipart, as OpenAI's): one or several ``image``s, an optional
    ``mask`` (OpenAI's: transparent where to edit), a ``prompt``; waits and answers in
    OpenAI's response shape. A form field OpenAI does not define is a 400 naming it."""
    limit = runtime.settings.max_upload_bytes
    form = await read_form(request, max_files=MAX_EDIT_IMAGES + 1, max_part_size=FORM_TEXT_BYTES)
    try:
        fields = _text_fields(form)
        images = [f for key, f in form.multi_items() if _IMAGE_FIELD.fullmatch(key)]
        if not images:
            raise InvalidInput("send one or more image files as 'image'", field="image")
        spec = runtime.registry.resolve(fields.get("model") or "openai/gpt-image-1", "model")[1]
        inputs = [await _upload(runtime, owner, f, "image", limit) for f in images]
        mask_file = form.get("mask")
        mask = await _upload(runtime, owner, mask_file, "mask", limit) if mask_file else None
    finally:
        await form.close()
    prompt = fields.get("prompt", "")
    if not boundary.has_words(prompt):
        raise InvalidInput("a prompt is required", field="prompt")
    submission = _submission(
        kind=TaskKind.EDIT,
        model=spec.id,
        prompt=prompt,
        n=_int(fields.get("n", "1"), "n"),
        size=fields.get("size"),
        input_assets=inputs,
        mask=mask,
        params=_params({k: fields.get(k) for k in EDIT_OPTIONS}, spec, TaskKind.EDIT),
        metadata={"openai_user": fields["user"]} if fields.get("user") else {},
    )
    response_format = fields.get("response_format")
    if response_format not in (None, "url", "b64_json"):
        raise InvalidInput("response_format is 'url' or 'b64_json'", field="response_format")
    call = _Call(runtime, owner, links, response_format)
    return await call.run(request, submission, "openai.edits", idempotency_key)


EDIT_TEXT_FIELDS = {
    "prompt",
    "model",
    "n",
    "size",
    "response_format",
    "user",
    "stream",
    "partial_images",
    *EDIT_OPTIONS,
}


def _text_fields(form: FormData) -> dict[str, str]:
    """The form's text fields, each known, given once, and storable; else a 400."""
    fields: dict[str, str] = {}
    for key, value in form.multi_items():
        if _IMAGE_FIELD.fullmatch(key) or key == "mask":
            if not isinstance(value, UploadFile):
                raise InvalidInput(f"'{key}' must be a file", field=key)
            if key == "mask" and len(form.getlist(key)) > 1:
                raise InvalidInput("'mask' is given more than once", field=key)
            continue
        if key not in EDIT_TEXT_FIELDS:
            raise InvalidInput(f"unknown field {boundary.quoted(key)}", field=key)
        if not isinstance(value, str):
            raise InvalidInput(f"'{key}' must be text, not a file", field=key)
        if value == "":  # what forms send for a field left empty: as if not sent
            continue
        if key in fields:
            raise InvalidInput(f"'{key}' is given more than once", field=key)
        if problem := boundary.text_problem(value):
            raise InvalidInput(f"{key} {problem}", field=key)
        if key == "user" and len(value) > MAX_USER_CHARS:
            raise InvalidInput(f"user is at most {MAX_USER_CHARS} characters", field=key)
        fields[key] = value
    if fields.get("stream", "false").lower() not in ("false", "0"):
        raise InvalidInput("streaming is not supported; leave 'stream' out", field="stream")
    if fields.get("partial_images", "0") != "0":
        raise InvalidInput(
            "partial_images needs streaming, which is not supported", field="partial_images"
        )
    return fields


async def _upload(
    runtime: Runtime, owner: Owner, file: UploadFile | str, field: str, limit: int
) -> str:
    """Store an uploaded file as the owner's asset (checked as any upload); its id."""
    if not isinstance(file, UploadFile):
        raise InvalidInput(f"'{field}' must be a file", field=field)
    blob = await runtime.assets.ingest(await read_upload(file, limit, field), field)
    return (await runtime.repo.add_asset(owner.id, blob, utcnow())).id


# Values of OpenAI's options that ask for nothing a model would not do anyway.
NO_REQUEST = {"quality": {"auto", "standard"}, "background": {"auto"}, "moderation": {"auto"}}


def _params(options: dict[str, Any], spec: ModelSpec, kind: TaskKind) -> dict[str, Any]:
    """The OpenAI options given, as the model's params for ``kind`` (typed as its schema
    has them). One it does not take is a 400 naming it, as OpenAI answers, unless its
    value asks for nothing (``quality: auto``): a request is never quietly made without
    what it asked."""
    accepted = spec.params_for(kind)
    params = {}
    for key, value in options.items():
        if value is None or (key not in accepted and value in NO_REQUEST.get(key, ())):
            continue
        if key not in accepted:
            raise InvalidInput(f"model {quoted(spec.id)} does not take {key}", field=key)
        if accepted[key].get("type") == "integer" and isinstance(value, str):
            value = _int(value, key)
        params[key] = value
    return params


def _int(value: str, field: str) -> int:
    if not re.fullmatch(r"[0-9]{1,9}", value):
        raise InvalidInput(f"{field} must be a whole number written in ASCII digits", field=field)
    return int(value)


def _submission(*, size: str | None, **fields: Any) -> Submission:
    try:
        return Submission(size=None if size in (None, "auto") else size, **fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "size"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise InvalidInput(message, field=field) from exc


@dataclass(frozen=True, slots=True)
class _Call:
    """One OpenAI-compatible call: its job run (or joined) and waited for, then answered."""

    runtime: Runtime
    owner: Owner
    links: Links
    response_format: str | None

    async def run(
        self,
        request: Request,
        submission: Submission,
        endpoint: str,
        idempotency_key: str | None,
    ) -> Response:
        """The call's job, finished or as far as it got in the time the client waits (the
        key's job, the first try's job for a retry, or a new one), as OpenAI answers."""
        runtime, owner = self.runtime, self.owner
        fingerprint = request_fingerprint(endpoint, submission)
        job = None
        if not idempotency_key and _retry_count(request) > 0:
            earlier = await runtime.service.find_retried(
                owner.id, fingerprint, RETRY_WINDOW_SECONDS
            )
            job = earlier[0] if earlier else None
        if job is None:
            made = await runtime.service.submit(
                owner.id,
                submission,
                idempotency_key,
                fingerprint=fingerprint,
                key_id=owner.key_id,
                limits=owner.limits,
            )
            job = made[0]
        wait = _wait_seconds(request, runtime.settings.openai_wait_seconds)
        with runtime.assets.handoff.expect(job.id) as arrived:
            [job] = await runtime.service.wait(
                owner.id, [job.id], wait, known=[job], finished=arrived.finished
            )
            return await self.answer(job, arrived.outputs)

    async def answer(self, job: Job, fresh: dict[str, bytes]) -> Response:
        """The finished job as OpenAI answers; an unfinished or failed one as its error.
        Images stored by this process a moment ago come from ``fresh`` (their bytes by
        sha256), others from storage."""
        if job.status is not JobStatus.SUCCEEDED:
            return _unfinished(job)
        # The answer is written out here, not by a model: an image's base64 (plain ASCII,
        # nothing to escape) goes out as it is, never copied, instead of a pass over every
        # character. Base64 of PNG/WebP barely compresses: gzipping it burns
        # CPU for ~25% fewer bytes.
        parts: list[bytes] = [b'{"created":%d,"data":[' % int(time.time())]
        for index, output in enumerate(job.outputs):
            parts.append(b"," if index else b"")
            if self.response_format == "url":
                image = {"url": self.links.signed_asset(self.owner, output.asset_id)}
                if output.revised_prompt is not None:
                    image["revised_prompt"] = output.revised_prompt
                parts.append(json.dumps(image).encode())
                continue
            raw = fresh.pop(output.sha256, None)  # let go as soon as it is used
            if raw is None:
                raw = await self.runtime.blobs.get(content_key(output.sha256))
            parts += [b'{"b64_json":"', pybase64.b64encode(raw), b'"']
            del raw
            if output.revised_prompt is not None:
                parts.append(b',"revised_prompt":' + json.dumps(output.revised_prompt).encode())
            parts.append(b"}")
        parts.append(b"]}")
        return PiecesResponse(  # sent as these parts: the base64 never copied (responses.py)
            parts, media_type="application/json", headers={"Content-Encoding": "identity"}
        )


def _unfinished(job: Job) -> Response:
    """A job that did not succeed, as OpenAI answers such a call."""
    if not job.status.terminal:
        return openai_errors.answer(
            504,
            f"job {job.id} is still {job.status}; a retry of this call waits for it "
            f"again, or follow it at /v1/jobs/{job.id}",
            kind="server_error",
            code="timeout",
            retry=True,
        )
    if job.error is None:  # canceled
        return openai_errors.answer(
            409, f"job {job.id} was {job.status}", kind="invalid_request_error", retry=False
        )
    return openai_errors.for_job_error(job.error)


def _retry_count(request: Request) -> int:
    value = request.headers.get("x-stainless-retry-count", "0")
    return int(value) if value.isascii() and value.isdigit() else 0


def _wait_seconds(request: Request, limit: float) -> float:
    """As long as the client waits (what the SDK says its read timeout is), at most
    ``limit``."""
    try:
        client = float(request.headers.get("x-stainless-read-timeout", ""))
    except ValueError:
        return limit
    if client != client or client <= 0:  # NaN or nonsense: the server's own limit
        return limit
    return max(1.0, min(limit, client - ANSWER_MARGIN_SECONDS))
