"""API test fixtures: waiting for jobs, decoding images, and a server with two owners."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from PIL import Image

from imagemill.api.app import create_app
from imagemill.config import Settings
from imagemill.runtime import Runtime

BASE_URL = "http://imagemill.test"
TERMINAL = {"succeeded", "failed", "canceled"}

JobWaiter = Callable[..., Awaitable[dict[str, Any]]]


async def wait_for_job(
    http: httpx.AsyncClient, job_id: str, statuses: set[str] = TERMINAL, within: float = 10.0
) -> dict[str, Any]:
    """Poll ``GET /v1/jobs/{id}`` until the job is in one of ``statuses``."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        response = await http.get(f"/v1/jobs/{job_id}")
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        if job["status"] in statuses:
            return job
        assert asyncio.get_running_loop().time() < deadline, (
            f"job {job_id} still {job['status']} after {within} s, wanted {sorted(statuses)}"
        )
        await asyncio.sleep(0.02)


@pytest.fixture
def finished() -> JobWaiter:
    """``await finished(http, job_id)``: the job once it reached a terminal status."""
    return wait_for_job


def decode_image(data: bytes) -> Image.Image:
    """Fully decode ``data`` (fails on truncated or corrupt bytes)."""
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.fixture
def decode() -> Callable[[bytes], Image.Image]:
    return decode_image


@pytest.fixture
async def served(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """Like ``client``, but an unhandled error comes back as the 500 a real server sends
    instead of being raised into the test (so a test can assert on it)."""
    app = create_app(runtime=runtime)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http,
    ):
        yield http


@pytest.fixture
def make_client(
    settings: Settings,
) -> Callable[..., contextlib.AbstractAsyncContextManager[httpx.AsyncClient]]:
    """``async with make_client(**setting_overrides) as http``: a server of its own."""

    @contextlib.asynccontextmanager
    async def make(**overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
        configured = settings.model_copy(
            update={"data_dir": settings.data_dir.with_name("own"), **overrides}
        )
        async with Runtime(configured) as runtime:
            app = create_app(runtime=runtime)
            async with (
                app.router.lifespan_context(app),
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url=BASE_URL
                ) as http,
            ):
                yield http

    return make


@pytest.fixture
def database_url(both_databases: str | None) -> str | None:
    """These tests hold on the embedded default and on PostgreSQL alike."""
    return both_databases
