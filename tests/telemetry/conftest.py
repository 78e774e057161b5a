"""A distributed deployment in one test process, for the telemetry tests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from fakes.server import serve_here
from imagemill.api.app import create_app
from imagemill.config import Settings
from imagemill.runtime import Runtime
from imagemill.specs import Pricing

PRICE = 0.25
Served = Callable[[Settings], AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def served() -> Served:
    """``async with served(settings) as http``: a keyless embedded server of its own,
    called in-process."""

    @asynccontextmanager
    async def serve(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
        async with Runtime(settings) as runtime:
            app = create_app(runtime=runtime)
            transport = httpx.ASGITransport(app=app)
            async with (
                app.router.lifespan_context(app),
                httpx.AsyncClient(transport=transport, base_url="http://imagemill.test") as http,
            ):
                yield http

    return serve


@pytest.fixture
async def api_and_worker(
    postgres_url: str,
    broker_url: str,
    s3_bucket: tuple[str, dict[str, object]],
    tmp_path: Path,
) -> AsyncIterator[tuple[str, Runtime]]:
    """An API process (no workers) on a socket and a worker process beside it, sharing
    PostgreSQL, the broker and a bucket, each with its own metrics."""
    bucket, options = s3_bucket
    shared: dict[str, Any] = {
        "database_url": postgres_url,
        "broker_url": broker_url,
        "broker_queue": f"imagemill.test.{uuid.uuid4().hex[:8]}",
        "storage_url": bucket,
        "storage_options": options,
        "lease_seconds": 3,
        "retry_base_seconds": 0.01,
        "retry_max_seconds": 0.05,
        "prices": {"placeholder": Pricing(per_image=PRICE)},
    }
    api_settings = Settings(data_dir=tmp_path / "api", workers=False, **shared)
    worker_settings = Settings(data_dir=tmp_path / "worker", **shared)
    async with Runtime(api_settings) as api, Runtime(worker_settings, sweep=False) as worker:
        app = create_app(runtime=api)
        async with app.router.lifespan_context(app), serve_here(app) as url:
            yield url, worker
