"""OpenAI-compatible ``POST /v1/images/generations``: the official openai SDK works unchanged.

The request runs as an ordinary job (stored, cached, counted), and the call waits for
it. ``url`` answers are signed links to imagemill's own permanent copy, not a
provider URL that expires in an hour.
"""

from __future__ import annotations

import base64
import time

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from imagemill.api.deps import CurrentOwner, LinksDep, RuntimeDep
from imagemill.api.schemas import ErrorOut, OpenAIImage, OpenAIImageRequest, OpenAIImagesResponse
from imagemill.domain import JobStatus, Submission
from imagemill.errors import ImagemillError, InvalidInput, ProviderTimeout

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
    accepted = spec.params_schema.get("properties", {})
    params = {
        k: getattr(body, k)
        for k in OPENAI_OPTIONS
        if getattr(body, k) is not None and k in accepted
    }
    size = None if body.size in (None, "auto") else body.size
    try:
        submission = Submission(
            model=spec.id, prompt=body.prompt, n=body.n, size=size, params=params
        )
    except ValueError as exc:
        raise InvalidInput(str(exc), field="size") from exc
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
        if body.response_format == "url":
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
