"""Two owners on one key-requiring server, for tests of who may see what."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI

from imagemill.api.app import create_app
from imagemill.auth import new_key
from imagemill.config import Settings
from imagemill.jobs.service import utcnow
from imagemill.runtime import Runtime

BASE_URL = "http://imagemill.test"


@dataclass
class TwoOwners:
    """Clients of one key-requiring server: Alice's, Bob's, and one with no key."""

    runtime: Runtime
    app: FastAPI
    alice_key: str
    bob_key: str
    alice: httpx.AsyncClient
    bob: httpx.AsyncClient
    anonymous: httpx.AsyncClient


async def issue_key(runtime: Runtime, owner_name: str) -> str:
    """What ``make_key`` does, for a runtime other than the shared ``runtime`` fixture."""
    owner = await runtime.accounts.owner_named(owner_name, utcnow())
    key = new_key()
    await runtime.accounts.add_key(owner.id, "test", key.prefix, key.key_hash, utcnow())
    return key.plaintext


@pytest.fixture
def keyed_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"require_keys": True, "data_dir": settings.data_dir.with_name("keyed")}
    )


@pytest.fixture
async def owners(keyed_settings: Settings) -> AsyncIterator[TwoOwners]:
    """A server that requires API keys, with keys for Alice and Bob."""
    async with Runtime(keyed_settings) as runtime, AsyncExitStack() as stack:
        alice_key = await issue_key(runtime, "alice")
        bob_key = await issue_key(runtime, "bob")
        app = create_app(runtime=runtime)
        await stack.enter_async_context(app.router.lifespan_context(app))

        async def client(key: str | None) -> httpx.AsyncClient:
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            http = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url=BASE_URL, headers=headers
            )
            return await stack.enter_async_context(http)

        yield TwoOwners(
            runtime=runtime,
            app=app,
            alice_key=alice_key,
            bob_key=bob_key,
            alice=await client(alice_key),
            bob=await client(bob_key),
            anonymous=await client(None),
        )
