"""A provider's callback landing on one process finishes a job that a worker in another
process runs (the distributed mode, in one test process as ``test_distributed.py`` does
it: PostgreSQL, Redis for delivery, API and worker runtimes apart, each with its own bus).

Replicate's webhook reaches the API runtime (``serve --no-workers``); the nudge travels by
PostgreSQL's NOTIFY to the worker runtime, whose attempt polls Replicate at once, though
its polls are 30 s apart."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from fakes.replicate import FakeReplicate
from fakes.server import free_port, serve, serve_here
from imagemill.api.app import create_app
from imagemill.config import Settings
from imagemill.domain import JobStatus
from imagemill.providers.registry import Registry
from imagemill.providers.replicate import Polling, Replicate
from imagemill.runtime import Runtime
from providers.running import saved_ref, warm_webhooks

TOKEN = "r8_test_callbacks"
MODEL = "replicate/ideogram-ai/ideogram-v2"


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[FakeReplicate, str]]:
    fake = FakeReplicate(token=TOKEN)
    with serve(fake.app) as url:
        yield fake, url


@pytest.fixture
async def api_and_worker(
    postgres_url: str, redis_url: str, fake: tuple[FakeReplicate, str], tmp_path: Path
) -> AsyncIterator[tuple[str, Runtime, Runtime]]:
    """An API runtime without workers, served where Replicate calls back, and a worker
    runtime whose Replicate adapter polls every 30 s; their URL and both runtimes."""
    port = free_port()
    shared = {
        "database_url": postgres_url,
        "broker_url": redis_url,
        "broker_queue": f"imagemill.test.{uuid.uuid4().hex[:8]}",
        "storage_url": (tmp_path / "blobs").as_uri(),
        "public_url": f"http://127.0.0.1:{port}",
        "replicate_api_token": TOKEN,
        "replicate_base_url": fake[1],
        "replicate_webhook_secret": fake[0].webhook_secret,
        "provider_timeout_seconds": 10.0,
    }
    api_settings = Settings(data_dir=tmp_path / "api", workers=False, **shared)
    worker_settings = Settings(data_dir=tmp_path / "worker", **shared)
    polling = Polling(first=30.0, most=30.0)
    registry = Registry([Replicate(worker_settings, polling)])
    async with (
        Runtime(api_settings, sweep=False) as api,
        Runtime(worker_settings, registry=registry, sweep=False) as worker,
    ):
        app = create_app(runtime=api)

        async with app.router.lifespan_context(app), serve_here(app, port) as url:
            await warm_webhooks(url, "replicate")
            yield url, api, worker


async def test_a_webhook_on_the_api_process_finishes_the_workers_job_at_once(
    api_and_worker: tuple[str, Runtime, Runtime], fake: tuple[FakeReplicate, str]
) -> None:
    url, api, _worker = api_and_worker
    replicate = fake[0]
    replicate.queue_run_seconds(math.inf)  # it ends when the test says
    polls_before = sum(1 for endpoint, _ in replicate.faults.log if endpoint == "get")
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        response = await http.post("/v1/jobs", json={"model": MODEL, "prompt": "far away"})
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        prediction_id = (await saved_ref(api, job_id, within=20)).split(" ", 1)[1]

        await asyncio.to_thread(replicate.complete_now, prediction_id)  # the webhook leaves
        owner = await api.local_owner()
        [job] = await api.service.wait(owner.id, [job_id], timeout=20)

    assert job.status is JobStatus.SUCCEEDED, job.error
    for _ in range(1000):  # a delivery is logged once answered
        delivered = [d for d in replicate.webhook_deliveries if d.prediction_id == prediction_id]
        if delivered:
            break
        await asyncio.sleep(0.02)
    [delivery] = delivered
    assert delivery.status_code == 204
    assert job.finished_at is not None
    latency = (job.finished_at - delivery.sent_at).total_seconds()
    print(f"\nwebhook to the API -> job succeeded in the worker: {latency * 1000:.0f} ms")
    assert latency < 2.0, "woken through PostgreSQL, not by a poll (30 s apart)"
    polls = sum(1 for endpoint, _ in replicate.faults.log if endpoint == "get") - polls_before
    assert polls == 1, "one look at the prediction: the one the webhook asked for"
    downloads = [n for path, n in replicate.downloads.items() if path.startswith(prediction_id)]
    assert downloads == [1]
