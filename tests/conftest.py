"""Shared fixtures: a started runtime on a temporary data dir, and the app over ASGI."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from imagemill.api.app import create_app
from imagemill.auth import new_key
from imagemill.config import Settings
from imagemill.jobs.service import utcnow
from imagemill.runtime import Runtime

BASE_URL = "http://imagemill.test"


pytest_plugins = ["backends", "owners", "s3"]


@pytest.fixture
def database_url() -> str | None:
    """The database under test: the embedded default here. Directories whose tests must
    hold on both backends override this with ``both_databases``."""
    return None


@pytest.fixture(params=["sqlite", "postgres"])
def both_databases(request: pytest.FixtureRequest) -> str | None:
    """Runs a test once on SQLite and once on PostgreSQL (a database of its own)."""
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def settings(tmp_path: Path, database_url: str | None) -> Settings:
    """Embedded defaults in a temp dir, with timings shortened for tests."""
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        lease_seconds=3,
        sweep_interval_seconds=0.5,
        requeue_after_seconds=1,
        retry_base_seconds=0.01,
        retry_max_seconds=0.05,
    )


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    async with Runtime(settings) as started:
        yield started


@pytest.fixture
async def client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the real app in-process (keyless local owner)."""
    app = create_app(runtime=runtime)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as http,
    ):
        yield http


KeyMaker = Callable[[str], Awaitable[str]]


@pytest.fixture
def make_key(runtime: Runtime) -> KeyMaker:
    """Create an owner (if new) and an API key for it; returns the plaintext key."""

    async def make(owner_name: str) -> str:
        owner = await runtime.accounts.owner_named(owner_name, utcnow())
        key = new_key()
        await runtime.accounts.add_key(owner.id, "test", key.prefix, key.key_hash, utcnow())
        return key.plaintext

    return make
