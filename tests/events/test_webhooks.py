"""Outgoing webhooks against a real receiver: signed per Standard Webhooks (verified with
the ``standardwebhooks`` library), retried on 5xx and 429 (Retry-After), 410 disabling
the target, every attempt visible, private targets refused unless allowed; a batch's
completion sent once per round, after a restart too."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fakes.server import serve
from imagemill.api.app import create_app
from imagemill.auth import webhook_secret
from imagemill.config import Settings
from imagemill.domain import Submission
from imagemill.runtime import Runtime


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]
    at: float


@dataclass
class Receiver:
    """A webhook target answering from a script (then 200), recording every request."""

    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: Request) -> Response:
        self.received.append(
            Received(await request.body(), dict(request.headers), time.monotonic())
        )
        status, headers = self.answers.pop(0) if self.answers else (200, {})
        return Response(status_code=status, headers=headers)

    async def wait_for(self, count: int, within: float = 10) -> list[Received]:
        deadline = time.monotonic() + within
        while len(self.received) < count:
            assert time.monotonic() < deadline, f"{len(self.received)} of {count} deliveries"
            await asyncio.sleep(0.02)
        return self.received


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    target = Receiver()
    app = Starlette(routes=[Route("/hook", target.handle, methods=["POST"])])
    with serve(app) as url:
        target.url = f"{url}/hook"
        yield target


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    configured = settings.model_copy(
        update={
            "allowed_private_networks": ["127.0.0.0/8"],
            "webhook_retry_base_seconds": 0.05,
            "webhook_retry_max_seconds": 2.0,
        }
    )
    async with Runtime(configured) as runtime:
        app = create_app(runtime=runtime)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://im") as http,
        ):
            yield http


@pytest.fixture
async def strict_api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A server that allows no private network (the default)."""
    async with Runtime(settings) as runtime:
        app = create_app(runtime=runtime)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://im") as http,
        ):
            yield http


async def _submit(api: httpx.AsyncClient, **fields: Any) -> str:
    body = {"model": "placeholder", "prompt": "hooked", "size": "32x32", **fields}
    response = await api.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


async def _secret(api: httpx.AsyncClient) -> str:
    key: str = (await api.get("/v1/webhooks/default/secret")).json()["key"]
    assert key.startswith("whsec_")
    return key


async def test_a_delivery_is_retried_after_two_500s_and_verifies(
    api: httpx.AsyncClient, receiver: Receiver
) -> None:
    receiver.answers = [(500, {}), (500, {})]
    job_id = await _submit(api, webhook_url=receiver.url)

    third = (await receiver.wait_for(3))[2]

    payload = Webhook(await _secret(api)).verify(third.body, third.headers)
    assert payload["type"] == "job.done"
    assert payload["data"]["job_id"] == job_id and payload["data"]["job"]["status"] == "succeeded"
    assert payload["data"]["job"]["outputs"][0]["asset_id"].startswith("ast_")
    ids = {r.headers["webhook-id"] for r in receiver.received}
    assert len(ids) == 1, "one delivery, one webhook-id on every attempt"
    forged = {**third.headers, "webhook-signature": "v1,bm90IHRoZSByaWdodCBzaWduYXR1cmU="}
    with pytest.raises(WebhookVerificationError):
        Webhook(await _secret(api)).verify(third.body, forged)
    with pytest.raises(WebhookVerificationError):
        Webhook(await _secret(api)).verify(third.body.replace(b"done", b"dune"), third.headers)

    # The receiver has answered; the sender records it just after: wait for the record.
    for _ in range(1000):  # 10 s
        [delivery] = (await api.get(f"/v1/jobs/{job_id}/deliveries")).json()["data"]
        if delivery["status"] != "pending":
            break
        await asyncio.sleep(0.01)
    assert delivery["status"] == "delivered"
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 500, 200]
    assert delivery["id"] == ids.pop()
    metrics = (await api.get("/metrics")).text
    assert 'imagemill_webhook_attempts_total{outcome="pending"} 2.0' in metrics
    assert 'imagemill_webhook_attempts_total{outcome="delivered"} 1.0' in metrics


async def test_retry_after_is_honoured(api: httpx.AsyncClient, receiver: Receiver) -> None:
    receiver.answers = [(429, {"Retry-After": "1"})]
    await _submit(api, webhook_url=receiver.url)

    first, second = await receiver.wait_for(2)

    assert second.at - first.at >= 0.9


async def test_only_the_chosen_events_are_sent_in_order(
    api: httpx.AsyncClient, receiver: Receiver
) -> None:
    await _submit(api, webhook_url=receiver.url, webhook_events=["status", "done"])

    received = await receiver.wait_for(4)
    await asyncio.sleep(0.2)

    secret = await _secret(api)
    kinds = [Webhook(secret).verify(r.body, r.headers)["type"] for r in received]
    assert sorted(kinds) == ["job.done", "job.status", "job.status", "job.status"]
    assert len(receiver.received) == 4


async def test_410_gone_cancels_and_disables_the_default_endpoint(
    api: httpx.AsyncClient, receiver: Receiver
) -> None:
    put = await api.put("/v1/webhooks/default", json={"url": receiver.url, "events": ["done"]})
    assert put.status_code == 200, put.text
    receiver.answers = [(410, {})]

    job_id = await _submit(api)  # no webhook_url of its own: the default applies
    await receiver.wait_for(1)
    await asyncio.sleep(0.3)

    [delivery] = (await api.get(f"/v1/jobs/{job_id}/deliveries")).json()["data"]
    assert delivery["status"] == "canceled" and delivery["last_status_code"] == 410
    endpoint = (await api.get("/v1/webhooks/default")).json()
    assert endpoint["disabled_at"] is not None
    later = await _submit(api)
    await asyncio.sleep(0.3)
    assert (await api.get(f"/v1/jobs/{later}/deliveries")).json()["data"] == []
    assert len(receiver.received) == 1


async def test_a_private_target_is_refused_unless_its_network_is_allowed(
    strict_api: httpx.AsyncClient, receiver: Receiver
) -> None:
    http = strict_api
    for url in (receiver.url, "http://169.254.169.254/latest", "http://[::1]:9/x"):
        response = await http.post(
            "/v1/jobs", json={"model": "placeholder", "prompt": "x", "webhook_url": url}
        )
        assert response.status_code == 422, url
        assert response.json()["error"]["field"] == "webhook_url"
    bad = await http.put("/v1/webhooks/default", json={"url": "ftp://example.com/x"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "url"


async def test_webhook_events_need_a_url_and_must_be_known(api: httpx.AsyncClient) -> None:
    lone = await api.post(
        "/v1/jobs", json={"model": "placeholder", "prompt": "x", "webhook_events": ["done"]}
    )
    assert lone.status_code == 422 and lone.json()["error"]["field"] == "webhook_events"
    unknown = await api.post(
        "/v1/jobs",
        json={
            "model": "placeholder",
            "prompt": "x",
            "webhook_url": "https://example.com/hook",
            "webhook_events": ["finished"],
        },
    )
    assert unknown.status_code == 422 and "webhook_events" in unknown.json()["error"]["field"]


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("https://example.com/hook\x00evil", "NUL"),
        ("https://example.com/hook\x07bell", "control characters"),
        ("https://example.com/a hook", "spaces"),
        ("http://[::127.0.0.1]/hook", "private address"),  # IPv4-compatible IPv6
        ("http://[::ffff:0:127.0.0.1]/hook", "private address"),  # IPv4-translated
        ("http://[64:ff9b::a9fe:a9fe]/latest", "private address"),  # NAT64 of 169.254.169.254
        ("http://[2002:7f00:1::]/hook", "private address"),  # 6to4 of 127.0.0.1
        ("https://example.com:70000/hook", "port"),
    ],
)
async def test_a_webhook_url_that_cannot_be_called_is_refused_at_submit(
    strict_api: httpx.AsyncClient, url: str, says: str
) -> None:
    http = strict_api
    body = {"model": "placeholder", "prompt": "x", "webhook_url": url}
    response = await http.post("/v1/jobs", json=body)
    assert response.status_code == 422, url
    error = response.json()["error"]
    assert error["field"] == "webhook_url" and says in error["message"], error
    put = await http.put("/v1/webhooks/default", json={"url": url})
    assert put.status_code == 422 and put.json()["error"]["field"] == "url"
    assert (await http.get("/v1/jobs")).json()["data"] == []


async def test_any_failure_while_delivering_is_an_attempt_toward_the_limit(
    settings: Settings,
) -> None:
    """Whatever goes wrong while sending (here an exception no HTTP client documents),
    the attempt is recorded in plain words and counted: after the last, the delivery has
    failed, instead of staying pending and being tried forever."""
    configured = settings.model_copy(
        update={
            "allowed_private_networks": ["127.0.0.0/8"],
            "webhook_max_attempts": 3,
            "webhook_retry_base_seconds": 0.05,
            "webhook_retry_max_seconds": 0.2,
        }
    )

    def explode(request: httpx.Request) -> httpx.Response:
        raise RuntimeError(f"boom in {object()!r}")

    async with Runtime(configured) as runtime:
        app = create_app(runtime=runtime)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://im") as http,
            httpx.AsyncClient(transport=httpx.MockTransport(explode)) as exploding,
        ):
            runtime.sender.http = exploding
            job_id = await _submit(http, webhook_url="http://127.0.0.1:9/hook")
            deadline = time.monotonic() + 20
            while True:
                deliveries = (await http.get(f"/v1/jobs/{job_id}/deliveries")).json()["data"]
                if deliveries and deliveries[0]["status"] != "pending":
                    break
                assert time.monotonic() < deadline, deliveries
                await asyncio.sleep(0.05)

    [delivery] = deliveries
    assert delivery["status"] == "failed"
    assert [a["attempt"] for a in delivery["attempts"]] == [1, 2, 3]
    for attempt in delivery["attempts"]:
        assert attempt["status_code"] is None
        assert "boom" in attempt["error"] and "0x" not in attempt["error"]


# -- a batch's completion -----------------------------------------------------------------------

QUICK = {"model": "placeholder", "size": "32x32"}
COUNTS = ("queued", "running", "succeeded", "failed", "canceled")


async def _batch(api: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await api.post("/v1/batches", json=body)
    assert response.status_code == 202, response.text
    batch: dict[str, Any] = response.json()
    return batch


async def _settled(api: httpx.AsyncClient, path: str, count: int) -> list[dict[str, Any]]:
    """``GET {path}/deliveries`` once it lists ``count`` and none is pending (10 s at most):
    the receiver has answered before the sender records it."""
    deadline = time.monotonic() + 10
    while True:
        found: list[dict[str, Any]] = (await api.get(f"{path}/deliveries")).json()["data"]
        if len(found) >= count and all(d["status"] != "pending" for d in found):
            return found
        assert time.monotonic() < deadline, found
        await asyncio.sleep(0.02)


async def test_a_batch_sends_one_signed_batch_done_once_every_item_ended(
    api: httpx.AsyncClient, receiver: Receiver
) -> None:
    """Items that succeed, fail and send their own job webhook: when the last ends, one
    ``batch.done`` (verified), with the batch's counts as it completed and the batch as
    ``GET /v1/batches/{id}`` shows it."""
    requests = [
        {**QUICK, "prompt": "page 1"},
        {**QUICK, "prompt": "page 2", "params": {"fail": "permanent"}},
        {**QUICK, "prompt": "page 3", "webhook_url": f"{receiver.url}?item=3"},
    ]
    batch = await _batch(api, requests=requests, webhook_url=receiver.url)
    assert batch["webhook_url"] == receiver.url and batch["completions"] == 0

    received = await receiver.wait_for(2)

    secret = await _secret(api)
    verified = [(Webhook(secret).verify(r.body, r.headers), r.headers) for r in received]
    (done, headers), (item, _) = sorted(verified, key=lambda pair: str(pair[0]["type"]))
    assert (item["type"], item["data"]["job_id"]) == ("job.done", batch["job_ids"][2])
    assert done["type"] == "batch.done"
    assert (done["data"]["batch_id"], done["data"]["round"]) == (batch["id"], 1)
    counts = dict(zip(COUNTS, (0, 0, 2, 1, 0), strict=True))
    assert done["data"]["event"] == {"status": "failed", "counts": counts}
    shown = (await api.get(f"/v1/batches/{batch['id']}")).json()
    assert done["data"]["batch"] == shown
    assert (shown["status"], shown["completions"], shown["progress"]) == ("failed", 1, 1.0)
    [delivery] = await _settled(api, f"/v1/batches/{batch['id']}", 1)
    assert (delivery["status"], delivery["round"], delivery["event_id"]) == ("delivered", 1, None)
    assert delivery["id"] == headers["webhook-id"]
    assert len(receiver.received) == 2, "one batch.done, one job.done of the item"


async def test_a_retry_sends_the_next_round_and_a_cancel_sends_one(
    api: httpx.AsyncClient, receiver: Receiver
) -> None:
    failing = {**QUICK, "prompt": "bad page", "params": {"fail": "permanent"}}
    retried = await _batch(api, requests=[failing], webhook_url=receiver.url)
    await receiver.wait_for(1)

    assert (await api.post(f"/v1/batches/{retried['id']}/retry")).status_code == 200
    await receiver.wait_for(2)
    endless = {**QUICK, "prompt": "slow page", "params": {"latency_ms": 60_000}}
    canceled = await _batch(api, requests=[endless, endless], webhook_url=receiver.url)
    stopped = (await api.post(f"/v1/batches/{canceled['id']}/cancel")).json()
    assert (stopped["status"], stopped["completions"]) == ("canceled", 1)
    received = await receiver.wait_for(3)

    secret = await _secret(api)
    first, second, third = (Webhook(secret).verify(r.body, r.headers) for r in received)
    assert [p["data"]["round"] for p in (first, second)] == [1, 2]
    assert {p["data"]["batch_id"] for p in (first, second)} == {retried["id"]}
    assert second["data"]["event"]["status"] == "failed"
    assert second["data"]["batch"]["completions"] == 2
    assert (third["data"]["batch_id"], third["data"]["round"]) == (canceled["id"], 1)
    assert third["data"]["event"]["counts"]["canceled"] == 2
    rounds = await _settled(api, f"/v1/batches/{retried['id']}", 2)
    assert [d["round"] for d in rounds] == [1, 2]
    assert len(await _settled(api, f"/v1/batches/{canceled['id']}", 1)) == 1
    assert len(receiver.received) == 3


async def test_a_completion_stored_by_a_stopped_process_is_sent_by_the_next_one(
    settings: Settings, receiver: Receiver
) -> None:
    """The items end in a process that sends nothing (no sender runs there) and stops;
    the completion is a row committed with the last item, so the next process sends it,
    once."""
    configured = settings.model_copy(
        update={"allowed_private_networks": ["127.0.0.0/8"], "webhook_retry_base_seconds": 0.05}
    )
    async with Runtime(configured, run_workers=False, sweep=False) as first:
        owner = await first.local_owner()
        requests = [Submission(**QUICK, prompt=f"page {i}") for i in range(2)]
        batch = await first.batches.create(
            owner.id, requests, concurrency=1, metadata={}, webhook_url=receiver.url
        )
        await first.batches.cancel(owner.id, batch.id)
        [(delivery, attempts)] = await first.webhooks.of_batch(batch.id)
        assert (delivery.status, attempts) == ("pending", [])
    assert receiver.received == []

    async with Runtime(configured) as second:
        [received] = await receiver.wait_for(1)
        deadline = time.monotonic() + 10
        while (await second.webhooks.of_batch(batch.id))[0][0].status == "pending":
            assert time.monotonic() < deadline, "the attempt was never recorded"
            await asyncio.sleep(0.02)
        [(delivery, attempts)] = await second.webhooks.of_batch(batch.id)
        secret = webhook_secret((await second.accounts.get_owner(owner.id)).secret)

    payload = Webhook(secret).verify(received.body, received.headers)
    assert (payload["type"], payload["data"]["batch_id"]) == ("batch.done", batch.id)
    assert (delivery.status, [a.status_code for a in attempts]) == ("delivered", [200])
    assert len(receiver.received) == 1


async def test_a_batch_webhook_url_is_checked_as_a_jobs_is(
    strict_api: httpx.AsyncClient, receiver: Receiver
) -> None:
    requests = [{**QUICK, "prompt": "x"}]
    for url, says in (
        (receiver.url, "private address"),
        ("http://169.254.169.254/latest", "private address"),
        ("ftp://example.com/hook", "http"),
        ("https://example.com/a hook", "spaces"),
    ):
        body = {"requests": requests, "webhook_url": url}
        response = await strict_api.post("/v1/batches", json=body)
        assert response.status_code == 422, url
        error = response.json()["error"]
        assert error["field"] == "webhook_url" and says in error["message"], error
    assert (await strict_api.get("/v1/batches")).json()["data"] == []
    assert (await strict_api.get("/v1/jobs")).json()["data"] == []
