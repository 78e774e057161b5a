"""``/v1/jobs``: submit, list, read, cancel, retry and delete jobs."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Response, status

from imagemill.api.deps import CurrentOwner, IdempotencyKey, LinksDep, RuntimeDep
from imagemill.api.routing import CheckedRoute, QueryFamily
from imagemill.api.schemas import ErrorOut, GroupOut, JobOut, JobPage, Moment
from imagemill.db.queries import JobFilter
from imagemill.domain import JobStatus, Submission, TaskKind
from imagemill.ids import id_pattern

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], route_class=CheckedRoute)
# RFC 7240: a preference's name in any case, its value a token or a quoted string.
_PREFER_WAIT = re.compile(r'(?:^|[,;\s])wait\s*=\s*"?([0-9]+(?:\.[0-9]+)?)"?', re.IGNORECASE)
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut},
    404: {"model": ErrorOut},
    422: {"model": ErrorOut},
}
MAX_METADATA_FILTERS = 10
MetadataFilters = Annotated[dict[str, str], Depends(QueryFamily("metadata.", MAX_METADATA_FILTERS))]


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut | GroupOut,
    responses={**ERRORS, 200: {"model": JobOut, "description": "Finished within `Prefer: wait`."}},
)
async def submit_job(
    submission: Submission,
    owner: CurrentOwner,
    runtime: RuntimeDep,
    links: LinksDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
    prefer: Annotated[
        str | None,
        Header(alias="Prefer", description="`wait=N`: hold up to N s for the result."),
    ] = None,
) -> JobOut | GroupOut:
    """Submit a request. Answers 202 at once, or 200 when it finished within `Prefer: wait=N`."""
    jobs = await runtime.service.submit(
        owner.id, submission, idempotency_key, key_id=owner.key_id, limits=owner.limits
    )
    wait = _wait_seconds(prefer, runtime.settings.max_wait_seconds)
    if wait:
        jobs = await runtime.service.wait(owner.id, [j.id for j in jobs], wait)
        response.headers["Preference-Applied"] = f"wait={wait:g}"
    if all(job.status.terminal for job in jobs):
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = f"/v1/jobs/{jobs[0].id}"
    if submission.models is None:
        return JobOut.of(jobs[0], links)
    return GroupOut(group_id=jobs[0].group_id or "", jobs=[JobOut.of(j, links) for j in jobs])


def _aware(moment: datetime | None) -> datetime | None:
    """A time without a zone is UTC (as every stored time is)."""
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


def _wait_seconds(prefer: str | None, limit: float) -> float:
    match = _PREFER_WAIT.search(prefer or "")
    return min(float(match[1]), limit) if match else 0.0


@router.get("", response_model=JobPage, responses=ERRORS)
async def list_jobs(
    owner: CurrentOwner,
    runtime: RuntimeDep,
    links: LinksDep,
    status: JobStatus | None = None,
    model: str | None = None,
    kind: TaskKind | None = None,
    q: Annotated[
        str | None,
        Query(
            max_length=500,
            description="Text the prompt contains, or the enhanced prompt, or a text the job "
            "wrote (a caption, a description).",
        ),
    ] = None,
    group_id: str | None = None,
    batch_id: Annotated[str | None, Query(description="The items of one batch.")] = None,
    favourite: Annotated[
        bool, Query(description="Only jobs with an output marked a favourite.")
    ] = False,
    collection_id: Annotated[
        str | None, Query(max_length=40, description="Only jobs with an output in it.")
    ] = None,
    created_after: Annotated[
        Moment | None,
        Query(description="Created at or after: a date (UTC) or a time with its zone (RFC 3339)."),
    ] = None,
    created_before: Annotated[
        Moment | None,
        Query(description="Created before: a date (UTC) or a time with its zone (RFC 3339)."),
    ] = None,
    cursor: Annotated[
        str | None,
        Query(pattern=id_pattern("job"), description="`next_cursor` of the previous page."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    *,
    metadata: MetadataFilters,
) -> JobPage:
    """Your jobs, newest first.

    `metadata.KEY=VALUE` (up to 10, all must match) finds the jobs whose `metadata` has
    that top-level key with that value: a string as written, anything else as compact
    JSON (`metadata.page=3` finds `3` and `"3"`; `metadata.final=true` finds `true`).
    """
    where = JobFilter(
        status=status,
        model=model,
        kind=kind,
        text=q,
        group_id=group_id,
        batch_id=batch_id,
        favourite=favourite,
        collection_id=collection_id,
        created_after=_aware(created_after),
        created_before=_aware(created_before),
        before=cursor,
        metadata=tuple(metadata.items()),
    )
    jobs = await runtime.service.list(owner.id, where, limit + 1)
    page = jobs[:limit]
    next_cursor = page[-1].id if len(jobs) > limit else None
    data = [JobOut.of(j, links, runtime.worker.position(j.id)) for j in page]
    return JobPage(data=data, next_cursor=next_cursor)


@router.get("/{job_id}", response_model=JobOut, responses=ERRORS)
async def get_job(job_id: str, owner: CurrentOwner, runtime: RuntimeDep, links: LinksDep) -> JobOut:
    """One job, with its outputs, cost, timings and error."""
    job = await runtime.service.get(owner.id, job_id)
    return JobOut.of(job, links, runtime.worker.position(job.id))


@router.post(
    "/{job_id}/cancel", response_model=JobOut, responses={**ERRORS, 409: {"model": ErrorOut}}
)
async def cancel_job(
    job_id: str, owner: CurrentOwner, runtime: RuntimeDep, links: LinksDep
) -> JobOut:
    """Cancel a queued or running job; 409 if it already finished."""
    return JobOut.of(await runtime.service.cancel(owner.id, job_id), links)


@router.post(
    "/{job_id}/retry",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut,
    responses={**ERRORS, 409: {"model": ErrorOut}},
)
async def retry_job(
    job_id: str, owner: CurrentOwner, runtime: RuntimeDep, links: LinksDep
) -> JobOut:
    """Run a failed or canceled job again: the same job (id, request, history), queued
    with its attempts counted afresh and a new deadline; its events go on from where
    they were. 409 for a job that is queued, running or succeeded."""
    retried = await runtime.service.retry(
        owner.id, job_id, key_id=owner.key_id, limits=owner.limits
    )
    return JobOut.of(retried, links)


@router.delete(
    "/{job_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**ERRORS, 409: {"model": ErrorOut}},
)
async def delete_job(job_id: str, owner: CurrentOwner, runtime: RuntimeDep) -> Response:
    """Delete a finished job, its events and the outputs no other job shares (their
    links then answer 404); 409 while it is queued or running (cancel it first)."""
    await runtime.service.delete(owner.id, job_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
