"""The services the suite runs against: SQLite (the embedded default) and PostgreSQL;
RabbitMQ and Redis as brokers.

PostgreSQL is taken from ``IMAGEMILL_TEST_POSTGRES`` (default: the local server,
``postgres@127.0.0.1:5432``). Each test gets a database of its own, copied from a
template migrated once per session (fast: a file copy). The brokers are the local
servers. Without a reachable server those tests skip and say why, except with
``CI=true``, where they fail instead.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Iterator

import pytest

from imagemill.db.engine import Database
from imagemill.db.migrate import upgrade

POSTGRES = os.environ.get("IMAGEMILL_TEST_POSTGRES", "postgresql+asyncpg://postgres@127.0.0.1:5432")
ADMIN_DATABASE = "test"
BROKERS = {
    "rabbitmq": ("amqp://guest:guest@127.0.0.1:5672/", 5672),
    "redis": ("redis://127.0.0.1:6379/0", 6379),
}
TEMPLATE = f"imagemill_template_{os.getpid()}"


def _admin(statement: str) -> None:
    import asyncpg

    async def run() -> None:
        host = POSTGRES.split("://", 1)[1]
        connection = await asyncpg.connect(f"postgresql://{host}/{ADMIN_DATABASE}", timeout=5)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run())


def postgres_unavailable() -> str | None:
    """Why PostgreSQL cannot be used here, or ``None``."""
    try:
        _admin("SELECT 1")
    except Exception as exc:
        return f"no PostgreSQL at {POSTGRES} ({type(exc).__name__}: {exc})"
    return None


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """A migrated database to copy; its name."""
    reason = postgres_unavailable()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the PostgreSQL tests: {reason}")
        pytest.skip(reason)
    _admin(f"DROP DATABASE IF EXISTS {TEMPLATE}")
    _admin(f"CREATE DATABASE {TEMPLATE}")

    async def migrate() -> None:
        db = Database(f"{POSTGRES}/{TEMPLATE}")
        try:
            await upgrade(db)
        finally:
            await db.dispose()

    asyncio.run(migrate())
    yield TEMPLATE
    _admin(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")


@pytest.fixture
def postgres_url(postgres_template: str) -> Iterator[str]:
    """A fresh, migrated database for one test; its URL."""
    name = f"imagemill_test_{uuid.uuid4().hex[:12]}"
    _admin(f"CREATE DATABASE {name} TEMPLATE {postgres_template}")
    yield f"{POSTGRES}/{name}"
    _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _broker(name: str) -> str:
    """The URL of the local ``name`` broker; skips (fails on CI) when it does not answer."""
    url, port = BROKERS[name]
    with socket.socket() as sock:
        sock.settimeout(1)
        if sock.connect_ex(("127.0.0.1", port)) != 0:
            reason = f"no {name} on 127.0.0.1:{port}"
            if os.environ.get("CI") == "true":
                pytest.fail(f"CI must run the distributed tests: {reason}")
            pytest.skip(reason)
    return url


@pytest.fixture(params=sorted(BROKERS))
def broker_url(request: pytest.FixtureRequest) -> str:
    """Each broker in turn."""
    return _broker(request.param)


@pytest.fixture
def redis_url() -> str:
    return _broker("redis")
