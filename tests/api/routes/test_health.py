"""Liveness and readiness probes."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from imagemill.runtime import Runtime


async def test_healthz_is_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_checks_database_and_storage(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "storage": "ok"}}


async def test_probes_need_no_key(owners: Any) -> None:
    assert (await owners.anonymous.get("/healthz")).status_code == 200
    assert (await owners.anonymous.get("/readyz")).status_code == 200


class UnreachableStore:
    """A blob store whose backend does not answer."""

    async def exists(self, key: str) -> bool:
        raise OSError("storage backend unreachable")


class UnreachableDatabase:
    """A database that refuses connections."""

    async def read(self, work: Any) -> Any:
        raise ConnectionRefusedError("database unreachable")


async def test_readyz_is_503_when_storage_fails(
    client: httpx.AsyncClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "blobs", UnreachableStore())

    response = await client.get("/readyz")

    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "checks": {"database": "ok", "storage": "error: OSError"},
    }


async def test_readyz_is_503_when_the_database_fails(
    client: httpx.AsyncClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "db", UnreachableDatabase())

    response = await client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["checks"] == {
        "database": "error: ConnectionRefusedError",
        "storage": "ok",
    }
    assert "unreachable" not in response.text, "the probe names the failure, not its details"
    assert (await client.get("/healthz")).status_code == 200, "liveness does not depend on it"
