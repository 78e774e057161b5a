"""SSE against a running server, read with a real SSE client (httpx-sse): progress is not
buffered (while gzip is on for JSON), ``Last-Event-ID`` resumes without loss or repeats,
``/v1/events`` follows every job of the caller."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from httpx_sse import ServerSentEvent, aconnect_sse

from fakes.server import serve_here
from imagemill.api.app import create_app
from imagemill.runtime import Runtime


@pytest.fixture
async def server(runtime: Runtime) -> AsyncIterator[str]:
    app = create_app(runtime=runtime)
    async with app.router.lifespan_context(app), serve_here(app) as url:
        yield url


@pytest.fixture
async def http(server: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server, timeout=30) as client:
        yield client


async def _submit(http: httpx.AsyncClient, latency_ms: int, **fields: Any) -> str:
    body = {"model": "placeholder", "prompt": "sse", "size": "64x64", **fields}
    body["params"] = {"latency_ms": latency_ms}
    response = await http.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


async def test_progress_streams_as_it_happens_while_json_is_gzipped(
    http: httpx.AsyncClient,
) -> None:
    job_id = await _submit(http, latency_ms=3000)
    started = time.monotonic()
    arrivals: list[tuple[float, ServerSentEvent]] = []

    async with aconnect_sse(
        http, "GET", f"/v1/jobs/{job_id}/events", headers={"Accept-Encoding": "gzip"}
    ) as source:
        assert source.response.headers["content-type"].startswith("text/event-stream")
        assert "content-encoding" not in source.response.headers
        assert source.response.headers["x-accel-buffering"] == "no"
        async for event in source.aiter_sse():
            arrivals.append((time.monotonic() - started, event))

    first_progress = next(t for t, e in arrivals if e.event == "progress")
    done_at = next(t for t, e in arrivals if e.event == "done")
    assert first_progress < 1.0, "the first progress event came late: buffered?"
    assert done_at > 2.5
    assert [e.event for _, e in arrivals][-1] == "done"
    listing = await http.get("/v1/models", headers={"Accept-Encoding": "gzip"})
    assert listing.headers["content-encoding"] == "gzip"  # JSON is compressed


async def test_reconnecting_with_last_event_id_gets_each_later_event_once(
    http: httpx.AsyncClient,
) -> None:
    job_id = await _submit(http, latency_ms=1500)
    url = f"/v1/jobs/{job_id}/events"
    before: list[ServerSentEvent] = []
    async with aconnect_sse(http, "GET", url) as source:
        async for event in source.aiter_sse():
            before.append(event)
            if event.event == "progress" and len(before) >= 4:
                break  # the client drops mid-job

    after: list[ServerSentEvent] = []
    async with aconnect_sse(http, "GET", url, headers={"Last-Event-ID": before[-1].id}) as source:
        async for event in source.aiter_sse():
            after.append(event)

    every = [*before, *after]
    stored = [e for e in every if not e.json().get("live")]
    seqs = [int(e.id) for e in stored]
    assert seqs == list(range(1, len(seqs) + 1)), "every stored event exactly once, in order"
    # Live progress reports (not stored) carry no SSE id of their own, so a client resumes
    # after the stored event before them, whose position each report carries.
    last = 0
    for event in every:
        if event.json().get("live"):
            assert event.json()["seq"] == last and event.json()["id"] is None
        else:
            last = event.json()["seq"]
    assert any(e.json().get("live") for e in every)
    assert after[-1].event == "done"
    log = (await http.get(f"/v1/jobs/{job_id}")).json()
    assert log["status"] == "succeeded"
    full = [e.json()["type"] for e in [*before, *after]]
    assert full[0] == "status" and full.count("output") == 1


async def test_the_event_data_is_the_logged_event(http: httpx.AsyncClient) -> None:
    job_id = await _submit(http, latency_ms=0)
    async with aconnect_sse(http, "GET", f"/v1/jobs/{job_id}/events") as source:
        events = [e async for e in source.aiter_sse()]
    output = next(e.json() for e in events if e.event == "output")
    assert output["job_id"] == job_id and output["type"] == "output"
    assert output["data"]["asset_id"].startswith("ast_")
    assert isinstance(output["id"], int) and isinstance(output["seq"], int)


async def test_the_owner_stream_follows_jobs_submitted_after_connecting(
    http: httpx.AsyncClient,
) -> None:
    seen: list[ServerSentEvent] = []
    jobs: list[str] = []

    async def follow() -> None:
        async with aconnect_sse(http, "GET", "/v1/events") as source:
            async for event in source.aiter_sse():
                seen.append(event)
                if sum(e.event == "done" for e in seen) == 2:
                    return

    follower = asyncio.create_task(follow())
    await asyncio.sleep(0.2)
    jobs.append(await _submit(http, latency_ms=200))
    jobs.append(await _submit(http, latency_ms=200))
    await asyncio.wait_for(follower, 10)

    assert {e.json()["job_id"] for e in seen} == set(jobs)
    assert any(e.json().get("live") for e in seen), "progress went live"
    stored = [e for e in seen if not e.json().get("live")]  # live reports have no position
    positions = [int(e.id) for e in stored]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)

    # Resuming the owner stream from the middle replays the rest of the log exactly once.
    middle = stored[len(stored) // 2]
    resumed: list[ServerSentEvent] = []
    async with aconnect_sse(http, "GET", "/v1/events", headers={"Last-Event-ID": middle.id}) as s:
        async for event in s.aiter_sse():
            resumed.append(event)
            if len(resumed) == len(stored) - len(stored) // 2 - 1:
                break
    assert [e.id for e in resumed] == [e.id for e in stored[len(stored) // 2 + 1 :]]


async def test_another_owners_job_stream_is_404_and_a_bad_position_422(
    http: httpx.AsyncClient, owners: Any
) -> None:
    job = await owners.alice.post(
        "/v1/jobs", json={"model": "placeholder", "prompt": "x", "size": "16x16"}
    )
    job_id = job.json()["id"]
    assert (await owners.bob.get(f"/v1/jobs/{job_id}/events")).status_code == 404
    bad = await owners.alice.get(f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": "x"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "Last-Event-ID"
