"""The SDK's event streams against a running server: ``jobs.events`` (sync and async)
until ``done``, ``events()`` across jobs, and resuming after the connection drops."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from fakes.server import serve_here
from imagemill.api.app import create_app
from imagemill.client import AsyncClient, Client, Event, NotFoundError
from imagemill.runtime import Runtime


@pytest.fixture
async def url(runtime: Runtime) -> AsyncIterator[str]:
    app = create_app(runtime=runtime)
    async with app.router.lifespan_context(app), serve_here(app) as base:
        yield base


def _body(latency_ms: int) -> dict[str, object]:
    return {
        "model": "placeholder",
        "prompt": "events",
        "size": "32x32",
        "params": {"latency_ms": latency_ms},
    }


async def test_async_job_events_run_until_done(url: str) -> None:
    async with AsyncClient(url) as client:
        job = await client.jobs.create(**_body(600))
        events = [event async for event in client.jobs.events(job.id)]

    stored = [e for e in events if not e.live]
    assert [e.seq for e in stored] == list(range(1, len(stored) + 1))
    assert events[0].type == "status" and events[-1].type == "done"
    assert any(e.type == "progress" and e.live and e.id is None for e in events)
    assert all(isinstance(e, Event) and e.job_id == job.id for e in events)


async def test_sync_job_events_resume_after_a_position(url: str) -> None:
    def follow() -> tuple[list[Event], list[Event]]:
        with Client(url) as client:
            job = client.jobs.create(**_body(300))
            every = list(client.jobs.events(job.id))
            later = list(client.jobs.events(job.id, after=2))
            return every, later

    every, later = await asyncio.to_thread(follow)
    stored = [e.seq for e in every if not e.live]
    assert [e.seq for e in later if not e.live] == stored[2:]


class Dropping(httpx.AsyncBaseTransport):
    """Passes requests on, but cuts the first event stream after a few bytes of events."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.cut = False
        self.resumed_from: list[str | None] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if not request.url.path.endswith("/events"):
            return response
        self.resumed_from.append(request.headers.get("last-event-id"))
        if self.cut:
            return response
        self.cut = True
        return httpx.Response(
            response.status_code, headers=response.headers, stream=_Truncated(response)
        )


class _Truncated(httpx.AsyncByteStream):
    def __init__(self, response: httpx.Response) -> None:
        self.response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        events = 0
        async for chunk in self.response.aiter_raw():
            yield chunk
            events += chunk.count(b"\n\n")
            if events >= 3:
                break
        await self.response.aclose()
        raise httpx.RemoteProtocolError("peer closed connection")


async def test_a_dropped_stream_is_resumed_without_loss_or_repeats(url: str) -> None:
    transport = Dropping()
    async with AsyncClient(url, transport=transport) as client:
        job = await client.jobs.create(**_body(800))
        events = [event async for event in client.jobs.events(job.id)]

    stored = [e.seq for e in events if not e.live]
    assert stored == list(range(1, len(stored) + 1))
    assert events[-1].type == "done"
    assert transport.resumed_from[0] == "0" and transport.resumed_from[1] not in (None, "0")


async def test_the_owner_stream_spans_jobs(url: str) -> None:
    async with AsyncClient(url) as client:
        seen: list[Event] = []

        async def follow() -> None:
            async for event in client.events():
                seen.append(event)
                if sum(e.type == "done" for e in seen) == 2:
                    return

        follower = asyncio.create_task(follow())
        await asyncio.sleep(0.2)
        first = await client.jobs.create(**_body(0))
        second = await client.jobs.create(**_body(0))
        await asyncio.wait_for(follower, 10)

    assert {e.job_id for e in seen} == {first.id, second.id}
    assert [e.id for e in seen] == sorted(e.id for e in seen)


async def test_an_unknown_job_stream_raises_not_found(url: str) -> None:
    async with AsyncClient(url) as client:
        with pytest.raises(NotFoundError):
            async for _ in client.jobs.events("job_missing"):
                pass
