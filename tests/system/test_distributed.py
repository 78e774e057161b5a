"""The distributed mode, in one test process: PostgreSQL for the record, RabbitMQ or Redis
for delivery, an S3 bucket (SeaweedFS) for blobs, API and worker runtimes apart (each
with its own bus, as processes are).
A job submitted to one runs on the other; an SSE client of the API sees its events
live, in order, and resumes with Last-Event-ID."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from httpx_sse import ServerSentEvent, aconnect_sse

from fakes.server import serve_here
from imagemill.api.app import create_app
from imagemill.config import Settings
from imagemill.domain import JobStatus, Output, Submission, Task
from imagemill.jobs import service
from imagemill.providers.base import RunContext
from imagemill.providers.placeholder import render
from imagemill.providers.registry import Registry
from imagemill.runtime import Runtime
from imagemill.specs import ModelSpec


@pytest.fixture
async def api_and_worker(
    postgres_url: str, broker_url: str, s3_bucket: tuple[str, dict[str, object]], tmp_path: Path
) -> AsyncIterator[tuple[str, Runtime]]:
    """An API runtime (no workers) served on a socket, and a worker runtime beside it,
    sharing PostgreSQL, the broker and an S3 bucket."""
    bucket, options = s3_bucket
    shared = {
        "database_url": postgres_url,
        "broker_url": broker_url,
        "broker_queue": f"imagemill.test.{uuid.uuid4().hex[:8]}",
        "storage_url": bucket,
        "storage_options": options,
        "lease_seconds": 3,
    }
    api_settings = Settings(data_dir=tmp_path / "api", workers=False, **shared)
    worker_settings = Settings(data_dir=tmp_path / "worker", **shared)
    async with Runtime(api_settings) as api, Runtime(worker_settings, sweep=False) as worker:
        app = create_app(runtime=api)
        async with app.router.lifespan_context(app), serve_here(app) as url:
            yield url, worker


async def test_the_api_streams_a_job_run_by_another_process_live_and_resumably(
    api_and_worker: tuple[str, Runtime],
) -> None:
    url, _worker = api_and_worker
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        body = {
            "model": "placeholder",
            "prompt": "far away",
            "size": "32x32",
            "params": {"latency_ms": 1200},
        }
        job_id = (await http.post("/v1/jobs", json=body)).json()["id"]
        first: list[ServerSentEvent] = []
        async with aconnect_sse(http, "GET", f"/v1/jobs/{job_id}/events") as source:
            async for event in source.aiter_sse():
                first.append(event)
                if sum(e.event == "progress" for e in first) == 3:
                    break
        rest: list[ServerSentEvent] = []
        headers = {"Last-Event-ID": first[-1].id}
        async with aconnect_sse(http, "GET", f"/v1/jobs/{job_id}/events", headers=headers) as s:
            async for event in s.aiter_sse():
                rest.append(event)

        every = [*first, *rest]
        stored = [e for e in every if not e.json().get("live")]
        assert [int(e.id) for e in stored] == list(range(1, len(stored) + 1))
        # Progress came live from the worker's process (announced, not stored), each
        # report carrying the position of the stored event before it.
        reports = [e.json() for e in every if e.json().get("live")]
        assert reports and all(r["type"] == "progress" and r["id"] is None for r in reports)
        last = 0
        for event in every:
            data = event.json()
            if data.get("live"):
                assert data["seq"] == last
            else:
                last = data["seq"]
        assert rest[-1].event == "done"
        job = (await http.get(f"/v1/jobs/{job_id}")).json()
        assert job["status"] == "succeeded" and len(job["outputs"]) == 1
        image = await http.get(job["outputs"][0]["url"].removeprefix(url))
        assert image.status_code == 200


async def test_prefer_wait_on_the_api_returns_when_the_worker_finishes(
    api_and_worker: tuple[str, Runtime], monkeypatch: pytest.MonkeyPatch
) -> None:
    # No safety-net poll within the wait: only the worker's notification can end it early.
    monkeypatch.setattr(service, "WAIT_POLL_SECONDS", 60.0)
    url, _worker = api_and_worker
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        body = {"model": "placeholder", "prompt": "quick", "size": "16x16"}
        response = await http.post("/v1/jobs", json=body, headers={"Prefer": "wait=10"})
    assert response.status_code == 200
    assert response.json()["status"] == "succeeded"
    assert response.elapsed.total_seconds() < 9, "woken by the worker's notification"


class Gated:
    """A provider whose calls wait for a release, counting how many run at once."""

    name = "gated"

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0
        self.release = asyncio.Event()

    def models(self) -> list[ModelSpec]:
        return [ModelSpec(id="gated", provider="gated", name="gated", params_schema={})]

    async def run(self, task: Task, ctx: RunContext) -> list[Output]:
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await self.release.wait()
            return [Output(data=render(task.prompt, "gated", 1, task.width, task.height))]
        finally:
            self.running -= 1


async def test_a_providers_limit_holds_across_worker_processes(
    postgres_url: str, tmp_path: Path
) -> None:
    gated = Gated()
    settings = Settings(
        data_dir=tmp_path,
        database_url=postgres_url,
        provider_concurrency={"gated": 2},
        worker_concurrency=8,
    )
    registry = Registry([gated])
    async with (
        Runtime(settings, registry=registry, run_workers=False, sweep=False) as first,
        Runtime(settings, registry=registry, run_workers=False, sweep=False) as second,
    ):
        owner = await first.local_owner()
        job_ids = [
            (await first.service.submit(owner.id, Submission(model="gated", prompt=str(i))))[0].id
            for i in range(6)
        ]
        pairs = zip([first, second] * 3, job_ids, strict=True)
        handling = asyncio.gather(*(runtime.worker.handle(job_id) for runtime, job_id in pairs))
        try:
            for _ in range(1500):  # 30 s
                if gated.running == 2:
                    break
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.3)  # time for any job not held back to reach the provider
            assert gated.running == 2, "two runtimes, one limit of 2"
            jobs = await first.repo.get_jobs(job_ids)
            statuses = [job.status for job in jobs]
            assert statuses.count(JobStatus.RUNNING) == 2, "running: only at the provider"
            assert statuses.count(JobStatus.QUEUED) == 4, "the others wait queued"
        finally:
            gated.release.set()
            await asyncio.wait_for(handling, 20)
        assert gated.peak == 2
        assert all(j.status is JobStatus.SUCCEEDED for j in await first.repo.get_jobs(job_ids))


async def test_a_batchs_concurrency_holds_across_worker_processes(
    postgres_url: str, tmp_path: Path
) -> None:
    """Six items, concurrency 2, handed to two worker processes: two run, four wait
    queued, however the wake-ups were shared out."""
    gated = Gated()
    settings = Settings(data_dir=tmp_path, database_url=postgres_url, worker_concurrency=8)
    registry = Registry([gated])
    async with (
        Runtime(settings, registry=registry, run_workers=False, sweep=False) as first,
        Runtime(settings, registry=registry, run_workers=False, sweep=False) as second,
    ):
        owner = await first.local_owner()
        requests = [Submission(model="gated", prompt=str(i)) for i in range(6)]
        batch = await first.batches.create(owner.id, requests, concurrency=2, metadata={})
        job_ids = [job.id for job in batch.jobs]
        pairs = zip([first, second] * 3, job_ids, strict=True)
        handling = asyncio.gather(*(runtime.worker.handle(job_id) for runtime, job_id in pairs))
        try:
            for _ in range(1500):  # 30 s
                if gated.running == 2:
                    break
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.3)  # time for any item not held back to reach the provider
            assert gated.running == 2, "two processes, one batch limit of 2"
            counts = (await first.batches.get(owner.id, batch.id)).counts
            assert (counts["running"], counts["queued"]) == (2, 4)
        finally:
            gated.release.set()
            await asyncio.wait_for(handling, 20)
        assert gated.peak == 2
        assert (await first.batches.get(owner.id, batch.id)).status is JobStatus.SUCCEEDED


async def test_the_stream_of_all_jobs_misses_nothing_from_concurrent_processes(
    api_and_worker: tuple[str, Runtime], postgres_url: str
) -> None:
    url, worker = api_and_worker
    received: list[int] = []
    jobs = 30
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:

        async def follow() -> None:
            done = 0
            async with aconnect_sse(http, "GET", "/v1/events") as source:
                async for event in source.aiter_sse():
                    if not event.data or event.json().get("live"):
                        continue  # live progress has no position of its own
                    received.append(int(event.id))
                    done += event.event == "done"
                    if done == jobs:
                        return

        follower = asyncio.create_task(follow())
        await asyncio.sleep(0.3)
        body = {"model": "placeholder", "size": "16x16", "params": {"latency_ms": 150}}
        await asyncio.gather(
            *(http.post("/v1/jobs", json={**body, "prompt": f"c{i}"}) for i in range(jobs))
        )
        await asyncio.wait_for(follower, 60)

    assert received == sorted(set(received)), "in log order, none twice"
    owner = await worker.local_owner()
    logged = [e["id"] for e in await worker.repo.owner_events_after(owner.id, received[0] - 1)]
    assert received == logged[: len(received)], "every logged event reached the stream"
