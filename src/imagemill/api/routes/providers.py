"""``POST /v1/providers/{provider}/webhook``: providers calling back (Replicate's predictions).

No API key here: the provider cannot send one. The provider checks the request's own
signature (and its age) and answers 401 when it does not hold. A verified call nudges
the job named in the URL (``?job=``, put there by the worker when it gave the provider
the URL): the job's attempt, in this process or in another, asks the provider for its
work at once instead of at its next poll. The call carries no result into the job, so
duplicates, a call before the provider's request id is saved, or one about a job that
runs nowhere are all harmless: at most one more look at the provider.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from imagemill.api.deps import RuntimeDep
from imagemill.api.routing import CheckedRoute
from imagemill.api.schemas import ErrorOut
from imagemill.boundary import quoted
from imagemill.errors import NotFound
from imagemill.ids import id_pattern

router = APIRouter(prefix="/v1/providers", tags=["providers"], route_class=CheckedRoute)
MAX_WEBHOOK_BYTES = 1024 * 1024


@router.post(
    "/{provider}/webhook",
    status_code=204,
    responses={401: {"model": ErrorOut}, 404: {"model": ErrorOut}},
)
async def provider_webhook(
    provider: str,
    request: Request,
    runtime: RuntimeDep,
    job: Annotated[
        str | None,
        Query(
            pattern=id_pattern("job"),
            description="The job the call is about: part of the URL imagemill gives the provider.",
        ),
    ] = None,
) -> Response:
    """A provider's signed callback; 204 once verified and handed over (the job's attempt,
    wherever it runs, looks at the provider's work at once). 404 where the server gives
    providers no URL to call (no `IMAGEMILL_PUBLIC_URL`): nothing to receive. 401 for a
    call whose signature does not hold (at once when it has none)."""
    found = runtime.registry.providers.get(provider)
    handler = getattr(found, "webhook", None)
    if handler is None or not runtime.settings.public_url:
        raise NotFound(f"this server takes no webhooks from {quoted(provider)}")
    body = await request.body()
    if len(body) > MAX_WEBHOOK_BYTES:
        return Response(status_code=413)
    await handler(request.headers, body)
    if job is not None:
        await runtime.nudge(job)
    return Response(status_code=204)
