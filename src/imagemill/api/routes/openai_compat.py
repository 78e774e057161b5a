"""OpenAI-compatible ``POST /v1/images/generations`` and ``/v1/images/edits``: the
official openai SDK works unchanged.

The request runs as an ordinary job (stored, cached, counted), and the call waits for
it. ``url`` answers are signed links to imagemill's own permanent copy, not a
provider URL that expires in an hour.
"""

from __future__ import annotations

import base64
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from imagemill.api.deps import CurrentOwner, Links, LinksDep, RuntimeDep
from imagemill.api.schemas import ErrorOut, OpenAIImage, OpenAIImageRequest, OpenAIImagesResponse
from imagemill.db.accounts import Owner
from imagemill.domain import JobStatus, Submission, TaskKind
from imagemill.errors import ImagemillError, InvalidInput, ProviderTimeout
from imagemill.jobs.service import utcnow
from imagemill.runtime import Runtime

router = APIRouter(prefix="/v1/images", tags=["openai-compatible"])
OPENAI_OPTIONS = ("quality", "style", "background", "output_format")


class _JobFailed(ImagemillError):
    def __init__(self, code: str, message: str, status_code: int) -> None:
        super().__init__(message)
        self.code = code  # type: ignore[misc]
        self.status_code = status_code  # type: ignore[misc]


@router.post(
    "/generations",
    response_model=OpenAIImagesResponse,
    responses={422: {"model": ErrorOut}, 502: {"model": ErrorOut}, 504: {"model": ErrorOut}},
)
async def create_images(
    body: OpenAIImageRequest, owner: CurrentOwner, runtime: RuntimeDep, links: LinksDep
) -> JSONResponse:
    """Generate images and wait for them, answering in OpenAI's response shape."""
    spec = runtime.registry.resolve(body.model)[1]
    options = {k: getattr(body, k) for k in OPENAI_OPTIONS}
    submission = _submission(
        model=spec.id,
        prompt=body.prompt,
        n=body.n,
        size=body.size,
        params=_params(options, spec.params_schema),
    )
    return await _answer(runtime, owner, links, submission, body.response_format)


@router.post(
    "/edits",
    response_model=OpenAIImagesResponse,
    responses={422: {"model": ErrorOut}, 502: {"model": ErrorOut}, 504: {"model": ErrorOut}},
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["image", "prompt"],
                        "properties": {
                            "image": {"type": "string", "format": "binary"},
                            "mask": {"type": "string", "format": "binary"},
                            "prompt": {"type": "string"},
                            "model": {"type": "string"},
                            "n": {"type": "integer"},
                            "size": {"type": "string"},
                            "response_format": {"enum": ["url", "b64_json"]},
                        },
                    }
                }
            }
        }
    },
)
async def edit_images(
    request: Request, owner: CurrentOwner, runtime: RuntimeDep, links: LinksDep
) -> JSONResponse:
    """Edit images (multipart, as OpenAI's): one or several ``image``s, an optional
    ``mask``, a ``prompt``; waits and answers in OpenAI's response shape."""
    limit = runtime.settings.max_upload_bytes
    async with request.form(max_files=17, max_part_size=limit) as form:
        images = [f for key in ("image", "image[]") for f in form.getlist(key)]
        if not images:
            raise InvalidInput("send one or more image files as 'image'", field="image")
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        model = fields.get("model") or "openai/gpt-image-1"
        spec = runtime.registry.resolve(model)[1]
        inputs = [await _upload(runtime, owner, f, "image") for f in images]
        mask_file = form.get("mask")
        mask = await _upload(runtime, owner, mask_file, "mask") if mask_file else None
    prompt = fields.get("prompt", "")
    if not prompt.strip():
        raise InvalidInput("a prompt is required", field="prompt")
    submission = _submission(
        kind=TaskKind.EDIT,
        model=spec.id,
        prompt=prompt,
        n=_int(fields.get("n", "1"), "n"),
        size=fields.get("size"),
        input_assets=inputs,
        mask=mask,
        params=_params(
            {k: fields.get(k) for k in (*OPENAI_OPTIONS, "input_fidelity")}, spec.params_schema
        ),
    )
    response_format = fields.get("response_format")
    if response_format not in (None, "url", "b64_json"):
        raise InvalidInput("response_format is 'url' or 'b64_json'", field="response_format")
    return await _answer(runtime, owner, links, submission, response_format)


async def _upload(runtime: Runtime, owner: Owner, file: UploadFile | str, field: str) -> str:
    """Store an uploaded file as the owner's asset; its id."""
    if not isinstance(file, UploadFile):
        raise InvalidInput(f"'{field}' must be a file", field=field)
    blob = await runtime.assets.ingest(await file.read(), field)
    return (await runtime.repo.add_asset(owner.id, blob, utcnow())).id


def _params(options: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """The OpenAI options this model takes; the rest are ignored, as the OpenAI API would
    for options a model lacks."""
    accepted = schema.get("properties", {})
    return {k: v for k, v in options.items() if v is not None and k in accepted}


def _int(value: str, field: str) -> int:
    try:
        return int(value)
    except ValueError as exc:
        raise InvalidInput(f"{field} must be a whole number", field=field) from exc


def _submission(*, size: str | None, **fields: Any) -> Submission:
    try:
        return Submission(size=None if size in (None, "auto") else size, **fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "size"
        raise InvalidInput(str(first["msg"]), field=field) from exc


async def _answer(
    runtime: Runtime,
    owner: Owner,
    links: Links,
    submission: Submission,
    response_format: str | None,
) -> JSONResponse:
    """Run the job, wait for it, and answer as OpenAI does."""
    job_id = (await runtime.service.submit(owner.id, submission))[0].id
    job = (await runtime.service.wait(owner.id, [job_id], runtime.settings.max_wait_seconds))[0]
    if job.status is not JobStatus.SUCCEEDED:
        if not job.status.terminal:
            raise ProviderTimeout(
                f"job {job.id} is still {job.status}; follow it at /v1/jobs/{job.id}"
            )
        error = job.error
        raise _JobFailed(
            error.code if error else "job_failed",
            error.message if error else f"job {job.id} {job.status}",
            502,
        )
    data = []
    for output in job.outputs:
        if response_format == "url":
            data.append(
                OpenAIImage(
                    url=links.signed_asset(owner, output.asset_id),
                    revised_prompt=output.revised_prompt,
                )
            )
        else:
            asset = await runtime.repo.get_asset(output.asset_id)
            encoded = base64.b64encode(await runtime.blobs.get(asset.storage_key)).decode()
            data.append(OpenAIImage(b64_json=encoded, revised_prompt=output.revised_prompt))
    payload = OpenAIImagesResponse(created=int(time.time()), data=data)
    # base64 of PNG/WebP barely compresses: gzipping it burns CPU for ~25% fewer bytes.
    return JSONResponse(
        payload.model_dump(exclude_none=True), headers={"Content-Encoding": "identity"}
    )
