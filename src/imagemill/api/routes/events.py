"""Server-sent events: ``GET /v1/jobs/{id}/events`` (one job, ending after ``done``),
``GET /v1/events`` (every job of the caller, including ones submitted later) and
``GET /v1/batches/{id}/events`` (a batch's jobs, its tally, ending after its ``done``).

Each event's SSE ``id`` is its position: the job's sequence number on a job stream,
the log-wide position on the others (a batch's own events carry none, nor do live
progress reports, ``"live": true``, which are not stored: a job's latest progress is
stored every few seconds). A client
reconnecting with ``Last-Event-ID`` (browsers do it on their own) gets every later
event exactly once, in order. Streams are never compressed or buffered
(``text/event-stream``, ``X-Accel-Buffering: no``) and carry keep-alive comments when
quiet.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query
from fastapi.sse import EventSourceResponse
from prometheus_client import Gauge

from imagemill.api.deps import CurrentOwner, RuntimeDep
from imagemill.api.routing import CheckedRoute
from imagemill.api.schemas import ErrorOut
from imagemill.domain import Job
from imagemill.errors import InvalidInput
from imagemill.events.bus import Event
from imagemill.events.stream import batch_events, job_events, owner_events
from imagemill.runtime import Runtime

router = APIRouter(tags=["events"], route_class=CheckedRoute)
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut},
    404: {"model": ErrorOut},
    422: {"model": ErrorOut},
}
STREAM: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Server-sent events: `id`, `event` (the type) and `data` (JSON).",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    },
    **ERRORS,
}
MAX_EVENT_ID = 2**63 - 1  # event ids are 64-bit
RETRY_MS = 2000  # how soon a disconnected EventSource reconnects
KEEPALIVE_SECONDS = 15.0  # a comment this often when quiet, so proxies keep the line open
KEEPALIVE = b": ping\n\n"


async def owned_job(job_id: str, owner: CurrentOwner, runtime: RuntimeDep) -> Job:
    """The job, checked before the stream starts: 404 (not an empty stream) if not yours."""
    return await runtime.service.get(owner.id, job_id)


async def resume_position(
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            pattern=r"^ *[0-9]{0,18} *$",
            description="Resume after this event (EventSource sends it itself).",
        ),
    ] = None,
    after: Annotated[
        int | None,
        Query(
            ge=0, le=MAX_EVENT_ID, description="Resume after this event id, if no Last-Event-ID."
        ),
    ] = None,
) -> int | None:
    """Where to resume: the ``Last-Event-ID`` header, else ``after``; checked before the
    stream starts, so a bad one is a 422."""
    if last_event_id is None or not last_event_id.strip():
        return after
    try:
        position = int(last_event_id)
    except ValueError as exc:
        raise InvalidInput("Last-Event-ID must be an event id", field="Last-Event-ID") from exc
    if position < 0:
        raise InvalidInput("Last-Event-ID must be an event id", field="Last-Event-ID")
    return position


Position = Annotated[int | None, Depends(resume_position)]


@router.get("/v1/jobs/{job_id}/events", responses=STREAM)
async def stream_job_events(
    job: Annotated[Job, Depends(owned_job)], runtime: RuntimeDep, position: Position
) -> EventSourceResponse:
    """The job's events (`status`, `progress`, `preview`, `output`, `log`, `error`,
    `done`) from the start or after `Last-Event-ID`; the stream ends after `done`."""
    batches = job_events(runtime.repo, runtime.bus, job.id, position or 0)
    return _streaming(_encoded(batches, by="seq"), runtime)


@router.get("/v1/events", responses=STREAM)
async def stream_events(
    owner: CurrentOwner, runtime: RuntimeDep, position: Position
) -> EventSourceResponse:
    """Every event of all your jobs, from now on (or after `Last-Event-ID`), including
    jobs submitted after connecting. It does not end."""
    batches = owner_events(runtime.repo, runtime.bus, owner.id, position)
    return _streaming(_encoded(batches, by="id"), runtime)


@router.get("/v1/batches/{batch_id}/events", responses=STREAM)
async def stream_batch_events(
    batch_id: str, owner: CurrentOwner, runtime: RuntimeDep, position: Position
) -> EventSourceResponse:
    """Every event of the batch's jobs (from the start, or after `Last-Event-ID`), a
    `batch` event whenever its `counts`, `progress` or `status` change (it carries no
    id), and a final `done` (`batch_id`, `status`) once every item ended; then the stream
    ends. Reconnecting with `Last-Event-ID` resumes the jobs' events without a gap."""
    batch = await runtime.batches.get(owner.id, batch_id)  # 404 unless yours
    batches = batch_events(
        runtime.repo,
        runtime.bus,
        batch.id,
        {job.id for job in batch.jobs},
        lambda: runtime.batches.tally(batch.id),
        position or 0,
    )
    return _streaming(_encoded(batches, by="id"), runtime)


def _streaming(body: AsyncIterator[bytes], runtime: Runtime) -> EventSourceResponse:
    # Bytes straight to the response: one write per batch of events, each event encoded
    # once for every subscriber (FastAPI's per-item SSE path costs several hand-offs a
    # message, which 200 subscribers of a busy job turn into most of a core).
    return EventSourceResponse(
        _subscribed(body, runtime.metrics.sse_subscribers),
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _subscribed(body: AsyncIterator[bytes], subscribers: Gauge) -> AsyncIterator[bytes]:
    """``body``, counted among the open streams while it is sent."""
    subscribers.inc()
    try:
        async for chunk in body:
            yield chunk
    finally:
        subscribers.dec()


async def _encoded(batches: AsyncIterator[list[Event]], by: str) -> AsyncIterator[bytes]:
    retry = f"retry: {RETRY_MS}\n".encode()  # rides with the first event
    quiet_since = time.monotonic()
    async for batch in batches:
        if batch:
            yield retry + b"".join(_frame(event, by) for event in batch)
            retry, quiet_since = b"", time.monotonic()
        elif time.monotonic() - quiet_since >= KEEPALIVE_SECONDS:
            yield KEEPALIVE
            quiet_since = time.monotonic()


def _frame(event: Event, by: str) -> bytes:
    """The event as an SSE message with ``by`` (``seq`` or ``id``) as its id; encoded once
    per event and shared by every stream that sends it."""
    if "id" not in event:  # the batch's own: not in the log, no position to resume from
        data = json.dumps(event["data"], separators=(",", ":"))
        return f"event: {event['type']}\ndata: {data}\n\n".encode()
    live = bool(event.get("live"))
    key = "_sse_live" if live else f"_sse_{by}"
    framed: bytes | None = event.get(key)
    if framed is None:
        shown = {
            "id": event["id"],
            "job_id": event["job_id"],
            "seq": event["seq"],
            "type": event["type"],
            "data": event["data"],
            "created_at": event["created_at"].isoformat(),
        }
        if live:  # not stored: no SSE id, so a client resumes after the last stored one
            shown["live"] = True
        data = json.dumps(shown, separators=(",", ":"))
        position = "" if live else f"id: {event[by]}\n"
        framed = f"{position}event: {event['type']}\ndata: {data}\n\n".encode()
        event[key] = framed
    return framed
