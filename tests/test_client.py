"""The SDK: ``AsyncClient`` against the real app in-process, ``Client`` against a real server.

httpx's ASGI transport is async only, so the sync client talks to uvicorn on a free
loopback port in a background thread: both clients run the same requests over a real
transport. Error translation is pinned down with ``httpx.MockTransport``.
"""

from __future__ import annotations

import asyncio
import io
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

import imagemill
from fakes.server import serve
from imagemill.api.app import create_app
from imagemill.auth import new_key
from imagemill.client import (
    APIConnectionError,
    APIError,
    AsyncClient,
    AuthenticationError,
    Client,
    ConflictError,
    InvalidRequestError,
    Job,
    JobFailed,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    WaitTimeout,
)
from imagemill.config import Settings
from imagemill.domain import JobStatus, TaskKind
from imagemill.jobs.service import utcnow
from imagemill.runtime import Runtime

BASE_URL = "http://imagemill.test"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def image_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


class Recorder(httpx.AsyncBaseTransport):
    """Passes requests on to the app and keeps them, to check what the SDK sent."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return await self.inner.handle_async_request(request)


@pytest.fixture
async def recorder(runtime: Runtime) -> AsyncIterator[Recorder]:
    app = create_app(runtime=runtime)
    async with app.router.lifespan_context(app):
        yield Recorder(httpx.ASGITransport(app=app))


@pytest.fixture
async def sdk(recorder: Recorder) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(BASE_URL, transport=recorder) as client:
        yield client


# -- AsyncClient against the app in-process ---------------------------------------------------


async def test_create_wait_and_download(sdk: AsyncClient) -> None:
    job = await sdk.jobs.create(model="placeholder", prompt="a red fox", n=2, size="64x48", seed=7)
    assert isinstance(job, Job) and job.id.startswith("job_")
    assert job.request.prompt == "a red fox" and job.request.n == 2

    done = await sdk.jobs.wait(job.id, timeout=10, poll_interval=0.02)
    assert done.status is JobStatus.SUCCEEDED and done.kind is TaskKind.IMAGE
    assert [o.index for o in done.outputs] == [0, 1]
    assert [o.seed for o in done.outputs] == [7, 8]
    first = done.outputs[0]
    assert (first.width, first.height, first.content_type, first.extension) == (
        64,
        48,
        "image/png",
        ".png",
    )

    data = await sdk.assets.download(first.asset_id)
    assert data.startswith(PNG_SIGNATURE) and image_size(data) == (64, 48)
    assert len(data) == first.byte_size
    thumbnail = await sdk.assets.thumbnail(first.asset_id)
    assert thumbnail[:4] == b"RIFF" and thumbnail[8:12] == b"WEBP"
    assert (await sdk.jobs.get(job.id)).outputs == done.outputs


async def test_upload_an_input_from_bytes_or_a_path(sdk: AsyncClient, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 24), (10, 200, 90)).save(buffer, format="PNG")
    path = tmp_path / "green.png"
    path.write_bytes(buffer.getvalue())

    from_bytes = await sdk.assets.upload(buffer.getvalue())
    from_path = await sdk.assets.upload(path)

    assert (from_bytes.width, from_bytes.height, from_bytes.content_type) == (40, 24, "image/png")
    assert from_path.id == from_bytes.id  # the same bytes are one asset
    assert await sdk.assets.download(from_bytes.id) == buffer.getvalue()
    with pytest.raises(InvalidRequestError) as refused:
        await sdk.assets.upload(b"not an image")
    assert refused.value.field == "file"


async def test_save_outputs_names_files_by_job_and_index(sdk: AsyncClient, tmp_path: Path) -> None:
    job = await sdk.generate("two foxes", n=2, size="32x32", seed=1)
    paths = await sdk.jobs.save_outputs(job, tmp_path / "new" / "dir")
    assert [p.name for p in paths] == [f"{job.id}-0.png", f"{job.id}-1.png"]
    assert paths[0].read_bytes() != paths[1].read_bytes()  # seeds 1 and 2
    single = await sdk.assets.save(job.outputs[1].asset_id, tmp_path / "one.png")
    assert single.read_bytes() == paths[1].read_bytes()


async def test_generate_holds_one_call_with_prefer_wait(
    sdk: AsyncClient, recorder: Recorder
) -> None:
    job = await sdk.generate("quick", size="32x32", seed=3)
    assert job.status is JobStatus.SUCCEEDED and len(job.outputs) == 1
    assert [(r.method, r.url.path) for r in recorder.requests] == [("POST", "/v1/jobs")]
    assert recorder.requests[0].headers["Prefer"] == "wait=60"


async def test_wait_reports_progress_to_an_async_callback(sdk: AsyncClient) -> None:
    seen: list[Job] = []

    async def on_update(job: Job) -> None:
        await asyncio.sleep(0)
        seen.append(job)

    job = await sdk.jobs.create(
        model="placeholder", prompt="slow", size="32x32", params={"latency_ms": 600}
    )
    done = await sdk.jobs.wait(job.id, timeout=10, poll_interval=0.02, on_update=on_update)
    assert done.status is JobStatus.SUCCEEDED
    progress = [j.progress for j in seen]
    assert progress == sorted(progress), "progress never goes back"
    assert any(0 < p < 1 for p in progress), f"no progress seen between 0 and 1: {progress}"
    states = [(j.status, j.progress, j.progress_message) for j in seen]
    assert len(states) == len(set(states)), "called only when something changed"
    assert seen[-1].status is JobStatus.SUCCEEDED


async def test_generate_raises_job_failed(sdk: AsyncClient) -> None:
    with pytest.raises(JobFailed) as caught:
        await sdk.generate("doomed", size="32x32", params={"fail": "permanent"})
    job = caught.value.job
    assert job.status is JobStatus.FAILED and job.error is not None
    assert job.error.code == "provider_error" and not job.error.retryable
    assert "simulated permanent failure" in str(caught.value) and job.id in str(caught.value)
    retried = await sdk.jobs.retry(job.id)
    assert (retried.id, retried.status, retried.attempt) == (job.id, JobStatus.QUEUED, 0)


async def test_wait_timeout_then_cancel(sdk: AsyncClient) -> None:
    job = await sdk.jobs.create(
        model="placeholder", prompt="slow", size="32x32", params={"latency_ms": 5000}
    )
    with pytest.raises(WaitTimeout) as caught:
        await sdk.jobs.wait(job.id, timeout=0.1, poll_interval=0.02)
    assert caught.value.job.id == job.id and not caught.value.job.done
    assert isinstance(caught.value, TimeoutError)

    canceled = await sdk.jobs.cancel(job.id)
    assert canceled.status is JobStatus.CANCELED
    with pytest.raises(ConflictError) as conflict:
        await sdk.jobs.cancel(job.id)
    assert conflict.value.status_code == 409


async def test_generate_raises_when_the_job_is_canceled(sdk: AsyncClient) -> None:
    started = asyncio.Event()

    def on_update(job: Job) -> None:
        if job.status is JobStatus.RUNNING:
            started.set()

    generating = asyncio.create_task(
        sdk.generate(
            "never",
            size="32x32",
            params={"latency_ms": 5000},
            poll_interval=0.02,
            on_update=on_update,
        )
    )
    await asyncio.wait_for(started.wait(), 5)
    running = [job async for job in sdk.jobs.iter(status="running")]
    await sdk.jobs.cancel(running[0].id)
    with pytest.raises(JobFailed, match="canceled") as caught:
        await generating
    assert caught.value.job.status is JobStatus.CANCELED and caught.value.job.id == running[0].id


async def test_idempotency_key_returns_the_same_job(sdk: AsyncClient) -> None:
    first = await sdk.jobs.create(model="placeholder", prompt="once", idempotency_key="k-1")
    again = await sdk.jobs.create(model="placeholder", prompt="once", idempotency_key="k-1")
    other = await sdk.jobs.create(model="placeholder", prompt="once", idempotency_key="k-2")
    assert first.id == again.id != other.id
    for job in (first, other):  # let them finish before the runtime stops
        await sdk.jobs.wait(job.id, timeout=10, poll_interval=0.02)


async def test_create_with_wait_returns_the_finished_job(sdk: AsyncClient) -> None:
    job = await sdk.jobs.create(model="placeholder", prompt="now", size="32x32", wait=10)
    assert job.status is JobStatus.SUCCEEDED and job.outputs


async def test_create_group(sdk: AsyncClient) -> None:
    group = await sdk.jobs.create_group(
        ["placeholder"], prompt="side by side", size="32x32", wait=10
    )
    assert [(job.model, job.status) for job in group.jobs] == [("placeholder", JobStatus.SUCCEEDED)]
    with pytest.raises(InvalidRequestError) as caught:
        await sdk.jobs.create_group(["placeholder", "placeholder"], prompt="twice")
    assert caught.value.field == "models.1"


async def test_list_pages_and_iterates(sdk: AsyncClient) -> None:
    made = [
        (await sdk.jobs.create(model="placeholder", prompt=f"page {i}", size="16x16", wait=10)).id
        for i in range(5)
    ]
    failed = await sdk.jobs.create(
        model="placeholder", prompt="page x", params={"fail": "permanent"}, wait=10
    )
    page = await sdk.jobs.list(limit=2)
    assert [job.id for job in page.data] == [failed.id, made[4]]
    assert page.next_cursor == made[4]
    following = await sdk.jobs.list(limit=2, cursor=page.next_cursor)
    assert [job.id for job in following.data] == [made[3], made[2]]

    everything = [job.id async for job in sdk.jobs.iter(limit=2, status="succeeded")]
    assert everything == made[::-1]
    assert [job.id async for job in sdk.jobs.iter(status="failed")] == [failed.id]
    assert [job.id async for job in sdk.jobs.iter(limit=2, cursor=made[2])] == [made[1], made[0]]


async def test_models(sdk: AsyncClient) -> None:
    models = await sdk.models.list()
    placeholder = next(m for m in models if m.id == "placeholder")
    assert placeholder.available and placeholder.kinds[0] is TaskKind.IMAGE
    assert TaskKind.CAPTION in placeholder.kinds
    assert "latency_ms" in placeholder.params_schema["properties"]
    assert (await sdk.models.get("placeholder")) == placeholder
    with pytest.raises(NotFoundError):
        await sdk.models.get("nobody/nothing")


async def test_presets_crud(sdk: AsyncClient) -> None:
    preset = await sdk.presets.create(
        "poster", prompt_template="a poster of {prompt}", model="placeholder", size="64x32"
    )
    assert preset.name == "poster" and preset.size == "64x32"
    listed = await sdk.presets.list()
    assert [p.id for p in listed if not p.builtin] == [preset.id]
    assert {p.name for p in listed if p.builtin} >= {"cinematic", "watercolor"}
    assert (await sdk.presets.get("poster")).id == preset.id

    updated = await sdk.presets.update(
        "poster", description="for the lobby", params={"latency_ms": 0}
    )
    assert (
        updated.description == "for the lobby" and updated.prompt_template == "a poster of {prompt}"
    )
    job = await sdk.jobs.create(preset="poster", prompt="a fox", wait=10)
    assert job.request.prompt == "a poster of a fox" and job.outputs[0].width == 64

    with pytest.raises(ConflictError):
        await sdk.presets.create("poster")
    with pytest.raises(InvalidRequestError) as bad:
        await sdk.presets.create("bad", size="huge")
    assert bad.value.field == "size" and bad.value.status_code == 422

    await sdk.presets.delete(preset.id)
    with pytest.raises(NotFoundError):
        await sdk.presets.get("poster")
    copy = await sdk.presets.copy("cinematic", name="my cinematic")
    assert (copy.builtin, copy.name, copy.size) == (False, "my cinematic", "1536x864")


async def test_api_errors_are_typed(sdk: AsyncClient) -> None:
    with pytest.raises(NotFoundError) as missing:
        await sdk.jobs.get("job_missing")
    assert (missing.value.status_code, missing.value.code) == (404, "not_found")
    with pytest.raises(InvalidRequestError) as unknown:
        await sdk.jobs.create(model="nobody/nothing", prompt="x")
    assert unknown.value.field == "model" and "unknown model" in unknown.value.message
    with pytest.raises(InvalidRequestError) as bad_param:
        await sdk.jobs.create(model="placeholder", prompt="x", params={"latency_ms": "soon"})
    assert bad_param.value.field is not None and bad_param.value.field.startswith("params")
    with pytest.raises(NotFoundError):
        await sdk.assets.download("ast_missing")


async def test_api_keys(tmp_path: Path) -> None:
    """A server that requires keys: none is 401, a valid one works, another owner's job is 404."""
    settings = Settings(data_dir=tmp_path / "keyed", require_keys=True)
    async with Runtime(settings) as runtime:
        keys = {}
        for name in ("alice", "bob"):
            owner = await runtime.accounts.owner_named(name, utcnow())
            key = new_key()
            await runtime.accounts.add_key(owner.id, "test", key.prefix, key.key_hash, utcnow())
            keys[name] = key.plaintext
        app = create_app(runtime=runtime)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with AsyncClient(BASE_URL, transport=transport) as anonymous:
                with pytest.raises(AuthenticationError) as caught:
                    await anonymous.jobs.list()
                assert caught.value.status_code == 401
            async with AsyncClient(BASE_URL, api_key="im_wrong", transport=transport) as wrong:
                with pytest.raises(AuthenticationError, match="not valid"):
                    await wrong.models.list()
            async with (
                AsyncClient(BASE_URL, api_key=keys["alice"], transport=transport) as alice,
                AsyncClient(BASE_URL, api_key=keys["bob"], transport=transport) as bob,
            ):
                job = await alice.generate("mine", size="16x16")
                with pytest.raises(NotFoundError):
                    await bob.jobs.get(job.id)
                with pytest.raises(NotFoundError):
                    await bob.assets.download(job.outputs[0].asset_id)


# -- error translation, with a fake transport -------------------------------------------------


def answering(response: httpx.Response) -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: response)


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, InvalidRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (409, ConflictError),
        (422, InvalidRequestError),
        (429, RateLimitError),
        (500, ServerError),
        (503, ServerError),
        (418, APIError),
    ],
)
def test_status_codes_map_to_error_classes(status: int, error_class: type[APIError]) -> None:
    body = {"error": {"code": "some_code", "message": "it went wrong", "field": "prompt"}}
    transport = answering(httpx.Response(status, json=body))
    with Client("http://fake", transport=transport) as client, pytest.raises(error_class) as caught:
        client.jobs.get("job_1")
    error = caught.value
    assert type(error) is error_class
    assert (error.status_code, error.code, error.message, error.field) == (
        status,
        "some_code",
        "it went wrong",
        "prompt",
    )
    assert str(error) == "it went wrong (field: prompt)"


def test_rate_limit_carries_retry_after() -> None:
    response = httpx.Response(
        429,
        headers={"Retry-After": "7"},
        json={"error": {"code": "rate_limited", "message": "slow down"}},
    )
    with (
        Client("http://fake", transport=answering(response)) as client,
        pytest.raises(RateLimitError) as caught,
    ):
        client.models.list()
    assert caught.value.retry_after == 7.0 and caught.value.field is None


def test_a_non_json_error_page_still_raises_typed() -> None:
    response = httpx.Response(502, text="<html>Bad Gateway</html>")
    with (
        Client("http://fake", transport=answering(response)) as client,
        pytest.raises(ServerError) as caught,
    ):
        client.models.list()
    assert caught.value.code == "http_error" and "Bad Gateway" in caught.value.message


@pytest.mark.parametrize("failure", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow")])
async def test_transport_failures_become_connection_errors(failure: httpx.TransportError) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise failure

    async with AsyncClient("http://fake", transport=httpx.MockTransport(fail)) as client:
        with pytest.raises(APIConnectionError) as caught:
            await client.jobs.get("job_1")
    assert caught.value.__cause__ is failure


def test_defaults_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGEMILL_URL", "http://from-env:9000")
    monkeypatch.setenv("IMAGEMILL_API_KEY", "im_from_env")
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"data": []})

    with Client(transport=httpx.MockTransport(handler)) as client:
        assert client.base_url == "http://from-env:9000"
        assert client.models.list() == []
    assert str(seen[0].url) == "http://from-env:9000/v1/models"
    assert seen[0].headers["Authorization"] == "Bearer im_from_env"
    assert seen[0].headers["User-Agent"] == f"imagemill-python/{imagemill.__version__}"

    monkeypatch.delenv("IMAGEMILL_URL")
    monkeypatch.delenv("IMAGEMILL_API_KEY")
    with Client(transport=httpx.MockTransport(handler)) as client:
        client.models.list()
    assert str(seen[1].url) == "http://127.0.0.1:8000/v1/models"
    assert "Authorization" not in seen[1].headers


def test_package_exports_the_clients() -> None:
    assert imagemill.Client is Client and imagemill.AsyncClient is AsyncClient


# -- the sync Client against a real server ------------------------------------------------------


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app (with its own runtime) on a free loopback port, in a thread."""
    with serve(
        create_app(Settings(data_dir=tmp_path_factory.mktemp("server"))), lifespan="on"
    ) as url:
        yield url


@pytest.fixture
def sync_client(server_url: str) -> Iterator[Client]:
    with Client(server_url) as client:
        yield client


def test_sync_generate_and_save(sync_client: Client, tmp_path: Path) -> None:
    job = sync_client.generate("a sync fox", n=2, size="64x48", seed=11)
    assert job.status is JobStatus.SUCCEEDED and [o.seed for o in job.outputs] == [11, 12]
    assert job.outputs[0].url.startswith(sync_client.base_url)
    paths = sync_client.jobs.save_outputs(job, tmp_path)
    assert [p.name for p in paths] == [f"{job.id}-0.png", f"{job.id}-1.png"]
    assert all(image_size(p.read_bytes()) == (64, 48) for p in paths)
    assert sync_client.assets.download(job.outputs[0].asset_id) == paths[0].read_bytes()


def test_sync_wait_reports_progress(sync_client: Client) -> None:
    seen: list[Job] = []
    job = sync_client.jobs.create(
        model="placeholder", prompt="slow sync", size="16x16", params={"latency_ms": 600}
    )
    done = sync_client.jobs.wait(job.id, timeout=10, poll_interval=0.02, on_update=seen.append)
    assert done.status is JobStatus.SUCCEEDED and seen[-1].status is JobStatus.SUCCEEDED
    assert any(0 < j.progress < 1 for j in seen)


def test_sync_list_iter_and_cancel(sync_client: Client) -> None:
    tag = uuid.uuid4().hex
    made = [
        sync_client.jobs.create(model="placeholder", prompt=f"{tag} {i}", size="16x16", wait=10).id
        for i in range(3)
    ]
    assert [j.id for j in sync_client.jobs.iter(q=tag, limit=2)] == made[::-1]
    page = sync_client.jobs.list(q=tag, limit=1)
    assert [j.id for j in page.data] == [made[2]] and page.next_cursor == made[2]

    slow = sync_client.jobs.create(
        model="placeholder", prompt=f"{tag} slow", params={"latency_ms": 5000}
    )
    assert sync_client.jobs.cancel(slow.id).status is JobStatus.CANCELED
    with pytest.raises(ConflictError):
        sync_client.jobs.cancel(slow.id)
    slower = sync_client.jobs.create(
        model="placeholder", prompt=f"{tag} w", params={"latency_ms": 3000}
    )
    with pytest.raises(WaitTimeout):
        sync_client.jobs.wait(slower.id, timeout=0.05)
    sync_client.jobs.cancel(slower.id)


def test_sync_presets_models_and_errors(sync_client: Client) -> None:
    name = f"p-{uuid.uuid4().hex[:8]}"
    preset = sync_client.presets.create(name, prompt_template="{prompt}, in ink")
    assert sync_client.presets.update(name, name=f"{name}-2").name == f"{name}-2"
    assert sync_client.presets.get(preset.id).prompt_template == "{prompt}, in ink"
    sync_client.presets.delete(preset.id)
    with pytest.raises(NotFoundError):
        sync_client.presets.get(preset.id)
    assert "placeholder" in [m.id for m in sync_client.models.list()]
    with pytest.raises(InvalidRequestError) as caught:
        sync_client.jobs.create(model="placeholder", prompt="x", size="12x")
    assert caught.value.field == "size"
    with pytest.raises(JobFailed):
        sync_client.generate("doomed", params={"fail": "permanent"})


def test_sync_client_reports_an_unreachable_server() -> None:
    with socket.socket() as sock:  # a loopback port on which nothing listens
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with (
        Client(url, timeout=2) as client,
        pytest.raises(APIConnectionError, match="could not reach"),
    ):
        client.models.list()


async def test_a_batch_through_the_sdk(sdk: AsyncClient) -> None:
    pages = [{"model": "placeholder", "prompt": f"page {i}", "size": "32x32"} for i in range(3)]
    batch = await sdk.batches.create(pages, concurrency=2, metadata={"story": "fox"})
    assert (batch.total, batch.concurrency, batch.metadata) == (3, 2, {"story": "fox"})

    seen: list[float] = []
    done = await sdk.batches.wait(
        batch.id, timeout=30, poll_interval=0.02, on_update=lambda b: seen.append(b.progress)
    )
    assert done.status is JobStatus.SUCCEEDED and done.counts["succeeded"] == 3
    assert seen == sorted(seen) and seen[-1] == 1.0
    assert [b.id for b in (await sdk.batches.list()).data] == [batch.id]
    items = await sdk.jobs.list(batch_id=batch.id)
    assert sorted(j.id for j in items.data) == sorted(batch.job_ids)
    assert (await sdk.batches.retry(batch.id)).counts["succeeded"] == 3, "nothing to retry"
    with pytest.raises(InvalidRequestError) as refused:
        await sdk.batches.create([{"model": "placeholder", "prompt": "x", "size": "1x1"}])
    assert refused.value.field == "requests.0.size"


async def test_a_batch_with_a_webhook_and_a_deadline_through_the_sdk(sdk: AsyncClient) -> None:
    page = {"model": "placeholder", "prompt": "page", "size": "32x32"}
    with pytest.raises(InvalidRequestError) as refused:  # a private address, not allowed here
        await sdk.batches.create([page], webhook_url="http://127.0.0.1:9/hook")
    assert refused.value.field == "webhook_url"

    batch = await sdk.batches.create([page], deadline_seconds=90)

    assert (batch.deadline_seconds, batch.webhook_url, batch.completions) == (90, None, 0)
    [item] = batch.job_ids
    assert (await sdk.jobs.get(item)).request.deadline_seconds == 90
    done = await sdk.batches.wait(batch.id, timeout=30, poll_interval=0.02)
    assert done.completions == 1
