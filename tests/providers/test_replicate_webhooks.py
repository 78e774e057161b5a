"""Replicate's webhooks, sent by the fake to a served imagemill: a webhook finishes the job
at once instead of at the next poll (however far apart polls are), racing polls and
duplicated it stores the output exactly once, and forged, stale or unsigned calls are
refused. In another process than the job's worker: ``tests/system/test_callbacks.py``."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from standardwebhooks import Webhook

from fakes.faults import Faults
from fakes.replicate import FakeReplicate
from fakes.replicate_webhooks import WebhookDelivery
from fakes.server import free_port, serve, serve_here
from imagemill.api.app import create_app
from imagemill.config import Settings
from imagemill.domain import Job, JobStatus
from imagemill.providers.registry import Registry
from imagemill.providers.replicate import Polling, Replicate
from imagemill.runtime import Runtime
from providers.running import ProviderRuntime, saved_ref, submit, warm_webhooks

TOKEN = "r8_test_webhooks"
MODEL = "replicate/ideogram-ai/ideogram-v2"
POLLS_FAR_APART = Polling(first=30.0, most=30.0)  # no poll within any of these tests


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[FakeReplicate, str]]:
    fake = FakeReplicate(token=TOKEN, run_seconds=0.1)
    with serve(fake.app) as url:
        yield fake, url


@pytest.fixture
def fake(served: tuple[FakeReplicate, str]) -> FakeReplicate:
    fake = served[0]
    fake.faults = Faults()
    fake.webhooks_enabled = True
    fake.webhook_duplicates = 0
    fake.webhook_delay_seconds = 0.0
    return fake


Serving = Callable[[Polling], Awaitable[Runtime]]


@pytest.fixture
async def serving(
    settings: Settings, served: tuple[FakeReplicate, str], fake: FakeReplicate
) -> AsyncIterator[Serving]:
    """``await serving(polling)``: a stepped runtime (``worker.run_one``) served on a socket
    the fake calls back, whose Replicate adapter polls as ``polling`` says. The webhook
    secret is configured and the route warm (``warm_webhooks``), so what a webhook waits for is
    only what every webhook does."""
    async with AsyncExitStack() as stack:

        async def serve_with(polling: Polling) -> Runtime:
            port = free_port()
            configured = Settings(
                **{
                    **settings.model_dump(),
                    "replicate_api_token": TOKEN,
                    "replicate_base_url": served[1],
                    "replicate_webhook_secret": fake.webhook_secret,
                    "public_url": f"http://127.0.0.1:{port}",
                    "provider_timeout_seconds": 10.0,
                }
            )
            registry = Registry([Replicate(configured, polling)])
            runtime = Runtime(configured, registry=registry, run_workers=False, sweep=False)
            await stack.enter_async_context(runtime)
            app = create_app(runtime=runtime)
            await stack.enter_async_context(app.router.lifespan_context(app))
            url = await stack.enter_async_context(serve_here(app, port))
            await warm_webhooks(url, "replicate")
            return runtime

        yield serve_with


async def _answered(fake: FakeReplicate, prediction_id: str, count: int) -> list[WebhookDelivery]:
    """The first ``count`` deliveries of the prediction's webhook, once answered."""
    for _ in range(1000):  # 20 s
        found = [d for d in fake.webhook_deliveries if d.prediction_id == prediction_id]
        if len(found) >= count:
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"{prediction_id}: {count} webhook deliveries were not answered")


def _downloads(fake: FakeReplicate, prediction_id: str) -> int:
    return sum(n for path, n in fake.downloads.items() if path.startswith(f"{prediction_id}/"))


def _polls(fake: FakeReplicate) -> int:
    return sum(1 for endpoint, _ in fake.faults.log if endpoint == "get")


async def _run_to_the_webhook(runtime: Runtime, fake: FakeReplicate) -> tuple[Job, str]:
    """Run a job whose prediction ends when the test says, end it, and return the job
    once its attempt is over, with its prediction's id."""
    fake.queue_run_seconds(math.inf)
    job = await submit(runtime, model=MODEL, prompt="called back")
    running = asyncio.create_task(runtime.worker.run_one(job.id))
    prediction_id = (await saved_ref(runtime, job.id)).split(" ", 1)[1]
    await asyncio.to_thread(fake.complete_now, prediction_id)  # and its webhook is sent
    await asyncio.wait_for(running, 20)
    return await runtime.repo.get_job(job.id), prediction_id


async def test_a_webhook_finishes_the_job_at_once_not_at_the_next_poll(
    serving: Serving, fake: FakeReplicate
) -> None:
    runtime = await serving(POLLS_FAR_APART)

    job, prediction_id = await _run_to_the_webhook(runtime, fake)

    assert job.status is JobStatus.SUCCEEDED, job.error
    [delivery] = await _answered(fake, prediction_id, 1)
    assert delivery.status_code == 204
    assert delivery.url.endswith(f"/v1/providers/replicate/webhook?job={job.id}")
    assert job.finished_at is not None
    latency = (job.finished_at - delivery.sent_at).total_seconds()
    print(f"\nwebhook sent -> job succeeded: {latency * 1000:.0f} ms (polls 30 s apart)")
    assert latency < 2.0, "woken by the webhook, not by a poll"
    assert _polls(fake) == 1, "one look at the prediction: the one the webhook asked for"
    assert _downloads(fake, prediction_id) == 1


async def test_a_webhook_before_the_attempt_waits_is_kept_for_it(
    serving: Serving, fake: FakeReplicate
) -> None:
    """A prediction that ends as it is created calls back while the attempt may still be
    saving its id: the nudge waits for the attempt's first look, not 30 s for a poll."""
    runtime = await serving(POLLS_FAR_APART)
    fake.queue_run_seconds(0.0)
    job = await submit(runtime, model=MODEL, prompt="quick")

    outcome = await asyncio.wait_for(runtime.worker.run_one(job.id), 20)

    assert outcome is JobStatus.SUCCEEDED
    done = await runtime.repo.get_job(job.id)
    prediction_id = (done.provider_ref or "").split(" ", 1)[1]
    assert _downloads(fake, prediction_id) == 1


async def test_duplicated_webhooks_racing_fast_polls_store_each_output_once(
    serving: Serving, fake: FakeReplicate
) -> None:
    """Twenty rounds of one job whose webhook comes twice while polls run every 10 ms:
    on even rounds the webhook leaves as the prediction ends (racing the next poll), on
    odd ones 50 ms later (a poll most likely first). Whatever the order, one completion,
    one download, and every webhook delivery answered 204."""
    runtime = await serving(Polling(first=0.01, most=0.01))
    fake.webhook_duplicates = 1
    for round_ in range(20):
        fake.webhook_delay_seconds = 0.05 if round_ % 2 else 0.0

        job, prediction_id = await _run_to_the_webhook(runtime, fake)

        assert (job.status, job.attempt) == (JobStatus.SUCCEEDED, 1), (round_, job.error)
        events = await runtime.repo.events_after(job.id, 0)
        statuses = [e["data"]["status"] for e in events if e["type"] == "status"]
        assert statuses.count("succeeded") == 1, (round_, statuses)
        assert [e["type"] for e in events].count("done") == 1, round_
        assert _downloads(fake, prediction_id) == 1, round_
        deliveries = await _answered(fake, prediction_id, 2)
        assert [d.status_code for d in deliveries] == [204, 204], round_
        assert deliveries[0].webhook_id == deliveries[1].webhook_id


# -- refusals ---------------------------------------------------------------------------------


@pytest.fixture
async def hooked(
    provider_runtime: ProviderRuntime, served: tuple[FakeReplicate, str], fake: FakeReplicate
) -> AsyncIterator[tuple[Runtime, str]]:
    """A runtime with background workers, served on a socket the fake can call back; the
    webhook secret is fetched from Replicate."""
    port = free_port()
    runtime = await provider_runtime(
        replicate_api_token=TOKEN,
        replicate_base_url=served[1],
        public_url=f"http://127.0.0.1:{port}",
    )
    runtime.run_workers = True
    app = create_app(runtime=runtime)
    async with app.router.lifespan_context(app), serve_here(app, port) as url:
        yield runtime, url


async def test_a_forged_or_stale_webhook_is_refused(
    hooked: tuple[Runtime, str], fake: FakeReplicate
) -> None:
    runtime, url = hooked
    owner = await runtime.local_owner()
    job = await submit(runtime, model=MODEL, prompt="x")
    [job] = await runtime.service.wait(owner.id, [job.id], timeout=30)
    assert job.provider_ref is not None
    prediction_id = job.provider_ref.split(" ", 1)[1]
    webhook = f"{url}/v1/providers/replicate/webhook?job={job.id}"

    assert await fake.send_forged_webhook(prediction_id, webhook) == 401

    body = json.dumps({"id": prediction_id, "status": "succeeded"})
    stale = datetime.now(UTC) - timedelta(hours=1)
    signature = Webhook(fake.webhook_secret).sign("msg_stale", stale, body)
    async with httpx.AsyncClient() as http:
        response = await http.post(
            webhook,
            content=body,
            headers={
                "webhook-id": "msg_stale",
                "webhook-timestamp": str(int(stale.timestamp())),
                "webhook-signature": signature,
            },
        )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


def _secret_fetches(fake: FakeReplicate) -> int:
    return sum(1 for endpoint, _ in fake.faults.log if endpoint == "secret")


async def test_an_unsigned_webhook_is_refused_before_any_call_to_replicate(
    hooked: tuple[Runtime, str], fake: FakeReplicate
) -> None:
    """Anyone can call the route: a call without signature headers must cost nothing,
    least of all a request to Replicate with the operator's token."""
    _, url = hooked
    async with httpx.AsyncClient() as http:
        for _ in range(3):
            response = await http.post(f"{url}/v1/providers/replicate/webhook")
            assert response.status_code == 401
            assert "not signed" in response.json()["error"]["message"]
    assert _secret_fetches(fake) == 0


async def test_a_failed_secret_fetch_is_remembered_for_a_while(
    hooked: tuple[Runtime, str], fake: FakeReplicate
) -> None:
    _, url = hooked
    fake.faults.queue("500")
    signed = {"webhook-id": "msg_1", "webhook-timestamp": "1", "webhook-signature": "v1,x"}
    async with httpx.AsyncClient() as http:
        answers = [
            (await http.post(f"{url}/v1/providers/replicate/webhook", headers=signed)).status_code
            for _ in range(3)
        ]
    assert answers == [503, 503, 503], "Replicate retries a webhook that got a 5xx"
    assert _secret_fetches(fake) == 1, "one fetch, then the failure is remembered"


async def test_a_server_without_a_public_url_takes_no_provider_webhooks(
    provider_runtime: ProviderRuntime, served: tuple[FakeReplicate, str], fake: FakeReplicate
) -> None:
    """Without IMAGEMILL_PUBLIC_URL no provider is given a URL to call: the route is 404."""
    runtime = await provider_runtime(replicate_api_token=TOKEN, replicate_base_url=served[1])
    app = create_app(runtime=runtime)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://im") as http,
    ):
        response = await http.post("/v1/providers/replicate/webhook", content=b"{}")
    assert response.status_code == 404
    assert _secret_fetches(fake) == 0
