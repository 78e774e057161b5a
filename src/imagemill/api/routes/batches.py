"""``/v1/batches``: job requests submitted as one (``jobs/batches.py``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, status

from imagemill.api.batch_schemas import BatchIn, BatchOut, BatchPage
from imagemill.api.deps import CurrentOwner, RuntimeDep
from imagemill.api.routing import CheckedRoute
from imagemill.api.schemas import ErrorOut
from imagemill.ids import id_pattern

router = APIRouter(prefix="/v1/batches", tags=["batches"], route_class=CheckedRoute)
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut},
    404: {"model": ErrorOut},
    422: {"model": ErrorOut},
}


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=BatchOut, responses=ERRORS)
async def create_batch(body: BatchIn, owner: CurrentOwner, runtime: RuntimeDep) -> BatchOut:
    """Submit job requests as one: every request is checked first (a refusal names
    `requests.N.<field>` and nothing is created), then the items are queued, at most
    `concurrency` running at once. Each item is an ordinary job with `batch_id`. With a
    `webhook_url`, one `batch.done` is sent each time every item has ended. A batch
    whose estimate does not fit the caller's budget is refused whole (402)."""
    batch = await runtime.batches.create(
        owner.id,
        body.requests,
        concurrency=body.concurrency,
        metadata=body.metadata,
        webhook_url=body.webhook_url,
        deadline_seconds=body.deadline_seconds,
        key_id=owner.key_id,
        limits=owner.limits,
    )
    return BatchOut.of(batch)


@router.get("", response_model=BatchPage, responses=ERRORS)
async def list_batches(
    owner: CurrentOwner,
    runtime: RuntimeDep,
    cursor: Annotated[
        str | None,
        Query(pattern=id_pattern("bat"), description="`next_cursor` of the previous page."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> BatchPage:
    """Your batches, newest first."""
    found = await runtime.batches.list(owner.id, cursor, limit + 1)
    page = found[:limit]
    next_cursor = page[-1].id if len(found) > limit else None
    return BatchPage(data=[BatchOut.of(b) for b in page], next_cursor=next_cursor)


@router.get("/{batch_id}", response_model=BatchOut, responses=ERRORS)
async def get_batch(batch_id: str, owner: CurrentOwner, runtime: RuntimeDep) -> BatchOut:
    """The batch: its status, counts per item status, progress and items in order."""
    return BatchOut.of(await runtime.batches.get(owner.id, batch_id))


@router.post("/{batch_id}/cancel", response_model=BatchOut, responses=ERRORS)
async def cancel_batch(batch_id: str, owner: CurrentOwner, runtime: RuntimeDep) -> BatchOut:
    """Cancel every item not finished yet: once all have ended, the batch is complete
    (and its `webhook_url` gets `batch.done`)."""
    return BatchOut.of(await runtime.batches.cancel(owner.id, batch_id))


@router.post("/{batch_id}/retry", response_model=BatchOut, responses=ERRORS)
async def retry_batch(batch_id: str, owner: CurrentOwner, runtime: RuntimeDep) -> BatchOut:
    """Run the failed and canceled items again (each the same job, queued afresh). This
    re-opens the batch: when every item has ended again, its `webhook_url` gets one more
    `batch.done`, with the next `round`."""
    retried = await runtime.batches.retry(
        owner.id, batch_id, key_id=owner.key_id, limits=owner.limits
    )
    return BatchOut.of(retried)
