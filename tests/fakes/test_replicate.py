"""The Replicate fake, driven through the official ``replicate`` SDK (and httpx for the rest).

These tests pin the SDK behaviours imagemill relies on: which calls it retries, what its
errors carry, how ``wait=`` reaches ``Prefer: wait``, and how webhooks are verified.
"""

from __future__ import annotations

import asyncio
import base64
import io
import itertools
import json
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from PIL import Image
from replicate.client import Client, RetryTransport
from replicate.exceptions import ModelError, ReplicateError
from replicate.prediction import Prediction
from replicate.webhook import Webhooks
from standardwebhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from fakes.faults import Faults
from fakes.replicate import CRASH_ERROR, MODELS, NSFW_ERROR, STEPS, FakeReplicate
from fakes.server import serve

TOKEN = "r8_test"
SCHNELL = "black-forest-labs/flux-schnell"
ESRGAN = "nightmareai/real-esrgan"


class Switch:
    """One server for the module, a fresh fake per test: the server calls the current app."""

    app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.app is not None
        await self.app(scope, receive, send)


@dataclass
class Receiver:
    """A webhook endpoint: records each POST, answers the queued statuses, then 200."""

    url: str = ""
    requests: list[tuple[dict[str, str], str, str]] = field(default_factory=list)
    statuses: deque[int] = field(default_factory=deque)

    async def hook(self, request: Request) -> Response:
        body = (await request.body()).decode()
        self.requests.append((dict(request.headers), body, request.url.query))
        return Response(status_code=self.statuses.popleft() if self.statuses else 200)

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body, _ in self.requests]


@pytest.fixture(scope="module")
def switch() -> Iterator[tuple[Switch, str]]:
    app = Switch()
    with serve(app) as url:
        yield app, url


@pytest.fixture(scope="module")
def receiver_server() -> Iterator[tuple[Switch, str]]:
    app = Switch()
    with serve(app) as url:
        yield app, url


@pytest.fixture
def fake(switch: tuple[Switch, str]) -> FakeReplicate:
    made = FakeReplicate(token=TOKEN, run_seconds=0.05, faults=Faults(retry_after=0))
    switch[0].app = made.app
    return made


@pytest.fixture
def base_url(switch: tuple[Switch, str], fake: FakeReplicate) -> str:
    return switch[1]


@pytest.fixture
async def client(base_url: str) -> AsyncIterator[Client]:
    made = Client(api_token=TOKEN, base_url=base_url)
    made.poll_interval = 0.02
    yield made
    await made._async_client.aclose()


@pytest.fixture
def receiver(receiver_server: tuple[Switch, str]) -> Receiver:
    made = Receiver(url=f"{receiver_server[1]}/hook")
    receiver_server[0].app = Starlette(routes=[Route("/hook", made.hook, methods=["POST"])])
    return made


def data_uri(size: tuple[int, int]) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 40, 40)).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


async def eventually(condition: Callable[[], bool], seconds: float = 3.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def finished(prediction: Prediction) -> Prediction:
    await asyncio.wait_for(prediction.async_wait(), 5)
    return prediction


# --- models and runs -------------------------------------------------------------------


async def test_model_json_carries_the_cog_schema(client: Client) -> None:
    pro = await client.models.async_get("black-forest-labs/flux-1.1-pro")
    assert (pro.owner, pro.name, pro.visibility) == ("black-forest-labs", "flux-1.1-pro", "public")
    assert pro.latest_version is not None
    schemas = pro.latest_version.openapi_schema["components"]["schemas"]
    props = schemas["Input"]["properties"]
    assert props["aspect_ratio"]["enum"][0] == "custom"  # inline enum (newer Cog)
    assert (props["width"]["minimum"], props["width"]["maximum"]) == (256, 1440)
    assert props["output_format"]["default"] == "webp"
    assert schemas["Output"] == {"title": "Output", "type": "string", "format": "uri"}

    schnell = await client.models.async_get(SCHNELL)
    assert schnell.latest_version is not None
    schemas = schnell.latest_version.openapi_schema["components"]["schemas"]
    ref = schemas["Input"]["properties"]["aspect_ratio"]["allOf"][0]["$ref"]
    assert ref == "#/components/schemas/aspect_ratio"  # enum by reference (older Cog)
    assert "9:21" in schemas["aspect_ratio"]["enum"]
    assert schemas["Output"]["type"] == "array"

    version = await schnell.versions.async_get(MODELS[SCHNELL].version_id)
    assert version.id == MODELS[SCHNELL].version_id


RUNS = [
    (
        "black-forest-labs/flux-1.1-pro",
        {"prompt": "a fox", "aspect_ratio": "16:9"},
        [(1344, 768)],
        "image/webp",
    ),
    (
        "black-forest-labs/flux-1.1-pro",
        {"prompt": "a fox", "aspect_ratio": "custom", "width": 500, "height": 300},
        [(512, 288)],
        "image/webp",
    ),
    (
        SCHNELL,
        {"prompt": "a fox", "num_outputs": 2, "megapixels": "0.25", "output_format": "jpg"},
        [(512, 512), (512, 512)],
        "image/jpeg",
    ),
    (
        "ideogram-ai/ideogram-v2",
        {"prompt": "a sign", "resolution": "1280x768"},
        [(1280, 768)],
        "image/png",
    ),
    ("bytedance/seedream-3", {"prompt": "a city", "size": "small"}, [(910, 512)], "image/jpeg"),
    (
        "black-forest-labs/flux-kontext-pro",
        {"prompt": "make it blue", "input_image": data_uri((300, 200))},
        [(1248, 832)],
        "image/png",
    ),
    (ESRGAN, {"image": data_uri((300, 200)), "scale": 2}, [(600, 400)], "image/png"),
]


@pytest.mark.parametrize(("ref", "payload", "sizes", "content_type"), RUNS)
async def test_each_model_runs_to_success(
    client: Client,
    fake: FakeReplicate,
    ref: str,
    payload: dict[str, Any],
    sizes: list[tuple[int, int]],
    content_type: str,
) -> None:
    model = MODELS[ref]
    if model.official:
        prediction = await client.models.predictions.async_create(model=ref, input=payload)
        assert prediction.version == "hidden"
    else:
        prediction = await client.predictions.async_create(version=model.version_id, input=payload)
        assert prediction.version == model.version_id
    assert (prediction.status, prediction.output, prediction.model) == ("starting", None, ref)
    assert prediction.urls is not None and prediction.urls["get"].endswith(prediction.id)

    await finished(prediction)
    assert prediction.status == "succeeded", prediction.error
    assert prediction.completed_at is not None and prediction.metrics is not None
    assert prediction.metrics["predict_time"] > 0
    urls = prediction.output if isinstance(prediction.output, list) else [prediction.output]
    assert isinstance(prediction.output, list) == (len(sizes) > 1 or ref == SCHNELL)
    async with httpx.AsyncClient() as http:
        for url, size in zip(urls, sizes, strict=True):
            response = await http.get(url)
            assert response.headers["content-type"] == content_type
            assert Image.open(io.BytesIO(response.content)).size == size
    assert fake.created == 1


async def test_video_model_outputs_an_mp4(client: Client) -> None:
    prediction = await client.models.predictions.async_create(
        model="kwaivgi/kling-v2.1",
        input={"prompt": "the fox runs", "start_image": data_uri((320, 180)), "duration": 10},
    )
    await finished(prediction)
    assert isinstance(prediction.output, str) and prediction.output.endswith(".mp4")
    async with httpx.AsyncClient() as http:
        response = await http.get(prediction.output)
    assert response.headers["content-type"] == "video/mp4"
    assert response.content[4:8] == b"ftyp" and b"1280x720 10s" in response.content


async def test_version_endpoint_takes_an_id_or_a_model_reference(client: Client) -> None:
    model = MODELS[SCHNELL]
    for version in (model.version_id, f"{SCHNELL}:{model.version_id}", SCHNELL):
        prediction = await client.predictions.async_create(version=version, input={"prompt": "x"})
        assert prediction.version == model.version_id

    with pytest.raises(ReplicateError) as caught:
        await client.predictions.async_create(version="f" * 64, input={"prompt": "x"})
    assert (caught.value.status, caught.value.title) == (422, "Invalid version or not permitted")


async def test_model_endpoint_refuses_community_and_unknown_models(
    client: Client,
) -> None:
    with pytest.raises(ReplicateError) as caught:
        await client.models.predictions.async_create(model=ESRGAN, input={"image": "x"})
    assert caught.value.status == 422
    assert caught.value.detail is not None and "version does not exist" in caught.value.detail

    with pytest.raises(ReplicateError) as caught:
        await client.models.predictions.async_create(model="nobody/nothing", input={})
    assert caught.value.status == 404
    with pytest.raises(ReplicateError) as caught:
        await client.models.async_get("nobody/nothing")
    assert caught.value.status == 404


async def test_invalid_input_is_422_with_the_fields(client: Client, fake: FakeReplicate) -> None:
    with pytest.raises(ReplicateError) as caught:
        await client.models.predictions.async_create(
            model=SCHNELL, input={"prompt": "x", "num_outputs": 5, "aspect_ratio": "7:3"}
        )
    error = caught.value
    assert (error.status, error.title) == (422, "Input validation failed")
    assert error.detail is not None
    assert "- input.num_outputs: Must be less than or equal to 4\n" in error.detail
    assert '- input.aspect_ratio: aspect_ratio must be one of the following: "1:1",' in error.detail

    with pytest.raises(ReplicateError) as caught:
        await client.models.predictions.async_create(model=SCHNELL, input={})
    assert caught.value.detail == "- input: prompt is required\n"
    assert fake.created == 0


async def test_a_wrong_token_is_401(base_url: str) -> None:
    stranger = Client(api_token="r8_wrong", base_url=base_url)
    with pytest.raises(ReplicateError) as caught:
        await stranger.models.async_get(SCHNELL)
    assert (caught.value.status, caught.value.title) == (401, "Unauthenticated")
    assert caught.value.detail == "You did not pass a valid authentication token"
    await stranger._async_client.aclose()

    async with httpx.AsyncClient(base_url=base_url) as http:  # the older "Token" scheme
        response = await http.get(
            f"/v1/models/{SCHNELL}", headers={"authorization": f"Token {TOKEN}"}
        )
    assert response.status_code == 200


# --- Prefer: wait ------------------------------------------------------------------------


async def test_prefer_wait_returns_the_finished_prediction(client: Client) -> None:
    prediction = await client.models.predictions.async_create(
        model=SCHNELL, input={"prompt": "x"}, wait=5
    )
    assert prediction.status == "succeeded" and isinstance(prediction.output, list)


async def test_prefer_wait_gives_up_after_its_seconds(client: Client, fake: FakeReplicate) -> None:
    fake.queue_run_seconds(math.inf)
    started = time.monotonic()
    prediction = await client.models.predictions.async_create(
        model=SCHNELL, input={"prompt": "x"}, wait=1
    )
    assert 1.0 <= time.monotonic() - started < 2.0
    assert prediction.status == "processing" and prediction.output is None


async def test_sdk_drops_wait_when_predictions_create_is_given_a_model(
    client: Client, fake: FakeReplicate
) -> None:
    # replicate 1.0.x pops ``wait`` before delegating to models.predictions: no Prefer header.
    fake.queue_run_seconds(math.inf)
    started = time.monotonic()
    create = client.predictions.async_create(model=SCHNELL, input={"prompt": "x"}, wait=True)
    prediction = await asyncio.wait_for(create, 3)
    assert time.monotonic() - started < 1.0 and prediction.status == "starting"


async def test_async_run_uses_wait_and_raises_model_errors(client: Client) -> None:
    output = await client.async_run(SCHNELL, input={"prompt": "x"})
    assert isinstance(output, list) and output[0].startswith("http://")  # http: not FileOutput

    with pytest.raises(ModelError) as caught:
        await client.async_run(SCHNELL, input={"prompt": "forbidden fruit"})
    assert caught.value.prediction.error == NSFW_ERROR


# --- lifecycle ---------------------------------------------------------------------------


async def test_logs_grow_with_progress_the_sdk_parses(client: Client) -> None:
    prediction = await client.models.predictions.async_create(
        model=SCHNELL, input={"prompt": "x", "seed": 7}
    )
    await finished(prediction)
    assert prediction.logs is not None and prediction.logs.startswith("Using seed: 7\n")
    progress = prediction.progress
    assert progress is not None and (progress.percentage, progress.current) == (1.0, STEPS)


async def test_cancel_ends_without_output(client: Client, fake: FakeReplicate) -> None:
    fake.queue_run_seconds(math.inf)
    prediction = await client.models.predictions.async_create(model=SCHNELL, input={"prompt": "x"})
    canceled = await client.predictions.async_cancel(prediction.id)
    assert (canceled.status, canceled.output) == ("canceled", None)
    assert canceled.completed_at is not None
    again = await client.predictions.async_get(prediction.id)
    assert again.status == "canceled"


@pytest.mark.parametrize(("prompt", "error"), [("forbidden", NSFW_ERROR), ("explode", CRASH_ERROR)])
async def test_failed_predictions_carry_the_error(client: Client, prompt: str, error: str) -> None:
    prediction = await client.models.predictions.async_create(
        model=SCHNELL, input={"prompt": prompt}
    )
    await finished(prediction)
    assert (prediction.status, prediction.error, prediction.output) == ("failed", error, None)


async def test_complete_now_finishes_at_once(client: Client, fake: FakeReplicate) -> None:
    fake.queue_run_seconds(math.inf)
    prediction = await client.models.predictions.async_create(model=SCHNELL, input={"prompt": "x"})
    fake.complete_now(prediction.id)
    done = await client.predictions.async_get(prediction.id)
    assert done.status == "succeeded" and isinstance(done.output, list) and len(done.output) == 1


async def test_output_urls_expire_to_403(client: Client, fake: FakeReplicate) -> None:
    prediction = await finished(
        await client.models.predictions.async_create(
            model="ideogram-ai/ideogram-v2", input={"prompt": "x"}
        )
    )
    assert isinstance(prediction.output, str)
    async with httpx.AsyncClient() as http:
        assert (await http.get(prediction.output)).status_code == 200
        assert sum(fake.downloads.values()) == 1
        fake.expire_urls()
        assert (await http.get(prediction.output)).status_code == 403
    removed = await client.predictions.async_get(prediction.id)
    assert (removed.output, removed.input, removed.status) == (None, {}, "succeeded")

    fake.url_ttl_seconds = 0.05  # and by the clock
    later = await finished(
        await client.models.predictions.async_create(
            model="ideogram-ai/ideogram-v2", input={"prompt": "y"}
        )
    )
    assert isinstance(later.output, str)
    await asyncio.sleep(0.1)
    async with httpx.AsyncClient() as http:
        assert (await http.get(later.output)).status_code == 403


# --- webhooks ----------------------------------------------------------------------------


async def test_webhooks_are_signed_with_the_default_secret(
    client: Client, fake: FakeReplicate, receiver: Receiver
) -> None:
    secret = await client.webhooks.default.async_secret()
    assert secret.key == fake.webhook_secret and secret.key.startswith("whsec_")
    prediction = await client.models.predictions.async_create(
        model=SCHNELL,
        input={"prompt": "x"},
        webhook=f"{receiver.url}?job=42",
        webhook_events_filter=["start", "completed"],
    )
    await eventually(lambda: len(receiver.requests) == 2)

    assert [body["status"] for body in receiver.bodies()] == ["starting", "succeeded"]
    for headers, body, query in receiver.requests:
        assert query == "job=42"
        assert Webhook(secret.key).verify(body, headers)["id"] == prediction.id
        Webhooks.validate(
            headers=headers, body=body, secret=secret, tolerance=60
        )  # the SDK's check
    assert receiver.requests[0][0]["webhook-id"] != receiver.requests[1][0]["webhook-id"]


async def test_default_events_are_output_then_completed(
    client: Client, fake: FakeReplicate, receiver: Receiver
) -> None:
    await client.models.predictions.async_create(
        model=SCHNELL, input={"prompt": "x"}, webhook=receiver.url
    )
    await eventually(lambda: len(receiver.requests) == 2)
    output, completed = receiver.bodies()
    assert (output["status"], completed["status"]) == ("processing", "succeeded")
    assert output["output"] == completed["output"] is not None
    await eventually(lambda: len(fake.webhook_deliveries) == 2)  # logged once answered
    assert [d.event for d in fake.webhook_deliveries] == ["output", "completed"]


async def test_logs_events_follow_each_log_line(
    client: Client, fake: FakeReplicate, receiver: Receiver
) -> None:
    await client.models.predictions.async_create(
        model=SCHNELL, input={"prompt": "x"}, webhook=receiver.url, webhook_events_filter=["logs"]
    )
    await eventually(lambda: len(receiver.requests) == STEPS + 1)
    logs = [body["logs"] for body in receiver.bodies()]
    assert all(earlier in later for earlier, later in itertools.pairwise(logs))


async def test_a_failing_receiver_gets_retries_with_the_same_id(
    client: Client, fake: FakeReplicate, receiver: Receiver
) -> None:
    receiver.statuses.extend([500, 503])
    await client.models.predictions.async_create(
        model=SCHNELL,
        input={"prompt": "x"},
        webhook=receiver.url,
        webhook_events_filter=["completed"],
    )
    await eventually(lambda: len(fake.webhook_deliveries) == 3)
    assert len({headers["webhook-id"] for headers, _, _ in receiver.requests}) == 1
    assert [(d.attempt, d.status_code) for d in fake.webhook_deliveries] == [
        (1, 500),
        (2, 503),
        (3, 200),
    ]


async def test_duplicates_and_forgeries(
    client: Client, fake: FakeReplicate, receiver: Receiver
) -> None:
    fake.webhook_duplicates = 1
    prediction = await client.models.predictions.async_create(
        model=SCHNELL,
        input={"prompt": "x"},
        webhook=receiver.url,
        webhook_events_filter=["completed"],
    )
    await eventually(lambda: len(receiver.requests) == 2)
    first, second = receiver.requests
    assert first[1] == second[1] and first[0]["webhook-id"] == second[0]["webhook-id"]

    assert await fake.send_forged_webhook(prediction.id) == 200  # this receiver trusts anyone
    headers, body, _ = receiver.requests[-1]
    with pytest.raises(WebhookVerificationError):
        Webhook(fake.webhook_secret).verify(body, headers)
    assert fake.webhook_deliveries[-1].forged


async def test_the_webhook_races_a_poll(
    client: Client, fake: FakeReplicate, receiver: Receiver
) -> None:
    fake.queue_run_seconds(math.inf, math.inf)
    events = ["completed"]
    first = await client.models.predictions.async_create(
        model=SCHNELL, input={"prompt": "x"}, webhook=receiver.url, webhook_events_filter=events
    )
    fake.complete_now(first.id)  # the state is visible first, the webhook is on its way
    polled = await client.predictions.async_get(first.id)
    await eventually(lambda: len(receiver.requests) == 1)
    assert receiver.bodies()[0]["output"] == polled.output

    fake.webhook_delay_seconds = 0.2  # a late webhook: polls see the end first
    second = await client.models.predictions.async_create(
        model=SCHNELL, input={"prompt": "x"}, webhook=receiver.url, webhook_events_filter=events
    )
    fake.complete_now(second.id)
    assert (await client.predictions.async_get(second.id)).status == "succeeded"
    await eventually(lambda: any(d.prediction_id == second.id for d in fake.webhook_deliveries))
    [late] = [d for d in fake.webhook_deliveries if d.prediction_id == second.id]
    ended = fake.predictions[second.id].completed_at
    assert ended is not None and (late.sent_at - ended).total_seconds() >= 0.19
    assert len(receiver.requests) == 2


async def test_webhooks_can_be_switched_off(
    client: Client, fake: FakeReplicate, receiver: Receiver
) -> None:
    fake.webhooks_enabled = False
    prediction = await client.models.predictions.async_create(
        model=SCHNELL, input={"prompt": "x"}, webhook=receiver.url
    )
    await finished(prediction)
    await asyncio.sleep(0.05)
    assert receiver.requests == [] and fake.webhook_deliveries == []


# --- faults and the SDK's retries ------------------------------------------------------


async def test_sdk_retries_a_429_on_get_after_retry_after(
    client: Client, fake: FakeReplicate
) -> None:
    prediction = await client.models.predictions.async_create(model=SCHNELL, input={"prompt": "x"})
    fake.faults.queue("429", "503")
    again = await client.predictions.async_get(prediction.id)
    assert again.id == prediction.id
    assert fake.faults.log[-3:] == [("get", "429"), ("get", "503"), ("get", "ok")]


async def test_sdk_does_not_retry_posts_or_500s(client: Client, fake: FakeReplicate) -> None:
    fake.faults.queue("429")
    with pytest.raises(ReplicateError) as caught:
        await client.models.predictions.async_create(model=SCHNELL, input={"prompt": "x"})
    error = caught.value
    assert (error.status, error.title) == (429, "Request was throttled")
    assert error.detail == "Request was throttled. Expected available in 0 seconds."
    assert set(vars(error)) == {"type", "title", "status", "detail", "instance"}  # no headers
    assert fake.created == 0

    prediction = await client.models.predictions.async_create(model=SCHNELL, input={"prompt": "x"})
    fake.faults.queue("500", "ok")
    with pytest.raises(ReplicateError) as caught:
        await client.predictions.async_get(prediction.id)
    assert caught.value.status == 500
    assert fake.faults.log[-1] == ("get", "500")


async def test_sdk_retries_can_be_turned_off(client: Client, fake: FakeReplicate) -> None:
    transport = client._async_client._transport
    assert isinstance(transport, RetryTransport) and transport.max_attempts == 10
    transport.max_attempts = 1  # no public switch: the wrapped transport is private
    fake.faults.queue("503")
    with pytest.raises(ReplicateError) as caught:
        await client.models.async_get(SCHNELL)
    assert caught.value.status == 503


async def test_a_malformed_body_is_a_json_error(client: Client, fake: FakeReplicate) -> None:
    fake.faults.queue("malformed")
    with pytest.raises(json.JSONDecodeError):
        await client.models.async_get(SCHNELL)


async def test_a_hang_is_cut_by_the_client_timeout_except_on_create(
    base_url: str, fake: FakeReplicate
) -> None:
    impatient = Client(api_token=TOKEN, base_url=base_url, timeout=httpx.Timeout(0.5))
    fake.faults.queue("hang")
    with pytest.raises(httpx.ReadTimeout):
        await impatient.models.async_get(SCHNELL)

    # Without ``wait=`` the SDK sends create with ``timeout=None``: no timeout at all, the
    # client's included. Only the caller's own deadline ends it.
    fake.faults.queue("hang")
    create = impatient.models.predictions.async_create(model=SCHNELL, input={"prompt": "x"})
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(create, 0.2)
    assert fake.created == 0
    prediction = await impatient.models.predictions.async_create(
        model=SCHNELL, input={"prompt": "x"}
    )
    assert prediction.status == "starting"
    await impatient._async_client.aclose()
