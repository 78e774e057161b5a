"""``POST /v1/providers/{provider}/webhook``: a verified callback nudges the job named in
its URL, whose attempt then looks at the provider's work at once, in this process or in
another (PostgreSQL); refused, stray and repeated callbacks do nothing more.

``Calling`` is a provider that only ever learns of its work by being called back: its
``run`` waits a minute at a time for a nudge, so a job that ends within seconds was woken
by the callback, not by a poll."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import httpx
import pytest

from imagemill.api.app import create_app
from imagemill.config import Settings
from imagemill.domain import JobStatus, Output, Submission, Task
from imagemill.errors import Unauthorized
from imagemill.providers.base import RunContext
from imagemill.providers.placeholder import render
from imagemill.providers.registry import Registry
from imagemill.runtime import Runtime
from imagemill.specs import ModelSpec

BASE_URL = "http://imagemill.test"
SIGNED = {"x-signed": "yes"}
WOKEN_WITHIN = 10.0  # seconds; the provider itself would wait 60 without a callback


class Calling:
    """A provider that waits for its callback (see the module docstring)."""

    name = "calling"

    def __init__(self) -> None:
        self.go = asyncio.Event()  # cleared: ``run`` holds before it waits for a callback
        self.go.set()
        self.started = asyncio.Event()
        self.urls: list[str | None] = []

    def models(self) -> list[ModelSpec]:
        return [ModelSpec(id="calling", provider="calling", name="calling", params_schema={})]

    async def run(self, task: Task, ctx: RunContext) -> list[Output]:
        self.urls.append(ctx.webhook_url(self.name))
        self.started.set()
        await self.go.wait()
        while not await ctx.nudged(60.0):
            pass
        return [Output(data=render(task.prompt, "calling", 1, task.width, task.height))]

    async def webhook(self, headers: Mapping[str, str], body: bytes) -> None:
        if headers.get("x-signed") != "yes":
            raise Unauthorized("the callback is not signed")


@pytest.fixture
def calling() -> Calling:
    return Calling()


@pytest.fixture
async def server(
    settings: Settings, calling: Calling
) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient]]:
    """A stepped runtime (``worker.run_one``) with a public URL, and a client of its app."""
    configured = settings.model_copy(update={"public_url": BASE_URL})
    registry = Registry([calling])
    async with Runtime(configured, registry=registry, run_workers=False, sweep=False) as runtime:
        app = create_app(runtime=runtime)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as http,
        ):
            yield runtime, http


async def _start(runtime: Runtime, calling: Calling) -> tuple[str, asyncio.Task[object]]:
    """Submit a job and start its attempt; its id and the attempt, once the provider runs."""
    owner = await runtime.local_owner()
    [job] = await runtime.service.submit(owner.id, Submission(model="calling", prompt="hi"))
    attempt = asyncio.create_task(runtime.worker.run_one(job.id))
    await asyncio.wait_for(calling.started.wait(), WOKEN_WITHIN)
    return job.id, attempt


async def test_a_verified_callback_wakes_the_job_at_once(
    server: tuple[Runtime, httpx.AsyncClient], calling: Calling
) -> None:
    runtime, http = server
    job_id, attempt = await _start(runtime, calling)
    assert calling.urls == [f"{BASE_URL}/v1/providers/calling/webhook?job={job_id}"]

    response = await http.post(f"/v1/providers/calling/webhook?job={job_id}", headers=SIGNED)

    assert response.status_code == 204
    assert await asyncio.wait_for(attempt, WOKEN_WITHIN) is JobStatus.SUCCEEDED


async def test_a_callback_before_the_provider_waits_is_kept_for_it(
    server: tuple[Runtime, httpx.AsyncClient], calling: Calling
) -> None:
    """As a prediction that ends before its id is saved: the callback comes first."""
    runtime, http = server
    calling.go.clear()
    job_id, attempt = await _start(runtime, calling)

    response = await http.post(f"/v1/providers/calling/webhook?job={job_id}", headers=SIGNED)
    assert response.status_code == 204
    calling.go.set()

    assert await asyncio.wait_for(attempt, WOKEN_WITHIN) is JobStatus.SUCCEEDED


async def test_only_a_verified_callback_nudges(
    server: tuple[Runtime, httpx.AsyncClient], calling: Calling
) -> None:
    runtime, http = server
    calling.go.clear()  # the provider does not wait yet, so nothing takes a nudge meanwhile
    job_id, attempt = await _start(runtime, calling)
    nudge = runtime.worker.nudges.of(job_id)

    response = await http.post(f"/v1/providers/calling/webhook?job={job_id}")
    assert response.status_code == 401
    assert not nudge.is_set()

    response = await http.post(f"/v1/providers/calling/webhook?job={job_id}", headers=SIGNED)
    assert response.status_code == 204
    assert nudge.is_set()
    calling.go.set()
    assert await asyncio.wait_for(attempt, WOKEN_WITHIN) is JobStatus.SUCCEEDED


async def test_repeated_and_stray_callbacks_do_nothing_more(
    server: tuple[Runtime, httpx.AsyncClient], calling: Calling
) -> None:
    runtime, http = server
    job_id, attempt = await _start(runtime, calling)
    webhook = f"/v1/providers/calling/webhook?job={job_id}"

    answers = await asyncio.gather(*(http.post(webhook, headers=SIGNED) for _ in range(3)))
    assert [r.status_code for r in answers] == [204, 204, 204]
    assert await asyncio.wait_for(attempt, WOKEN_WITHIN) is JobStatus.SUCCEEDED

    # The job ended; a job that runs nowhere; no job named: received, nothing to wake.
    unknown = "job_" + "0" * 26
    for url in (webhook, f"/v1/providers/calling/webhook?job={unknown}", webhook.split("?")[0]):
        assert (await http.post(url, headers=SIGNED)).status_code == 204
    job = await runtime.repo.get_job(job_id)
    assert (job.status, job.attempt, len(job.outputs)) == (JobStatus.SUCCEEDED, 1, 1)
    events = await runtime.repo.events_after(job_id, 0)
    assert [e["type"] for e in events].count("done") == 1

    refused = await http.post("/v1/providers/calling/webhook?job=nonsense", headers=SIGNED)
    assert refused.status_code == 422
    assert refused.json()["error"]["field"] == "job"


async def test_a_callback_to_one_process_wakes_the_job_in_another(
    postgres_url: str, tmp_path: Path, calling: Calling
) -> None:
    """Two runtimes on one PostgreSQL database, as an API process and a worker process:
    the callback reaches the API, the nudge reaches the worker by NOTIFY."""
    shared = {"database_url": postgres_url, "storage_url": (tmp_path / "blobs").as_uri()}
    api_settings = Settings(data_dir=tmp_path / "api", public_url=BASE_URL, **shared)
    worker_settings = Settings(data_dir=tmp_path / "worker", public_url=BASE_URL, **shared)
    registry = Registry([calling])
    async with (
        Runtime(api_settings, registry=registry, run_workers=False, sweep=False) as api,
        Runtime(worker_settings, registry=registry, run_workers=False, sweep=False) as worker,
    ):
        owner = await api.local_owner()
        [job] = await api.service.submit(owner.id, Submission(model="calling", prompt="far"))
        attempt = asyncio.create_task(worker.worker.run_one(job.id))
        await asyncio.wait_for(calling.started.wait(), WOKEN_WITHIN)
        app = create_app(runtime=api)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as http,
        ):
            response = await http.post(
                f"/v1/providers/calling/webhook?job={job.id}", headers=SIGNED
            )

        assert response.status_code == 204
        assert await asyncio.wait_for(attempt, WOKEN_WITHIN) is JobStatus.SUCCEEDED
