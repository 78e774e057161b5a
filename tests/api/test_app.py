"""The app factory: its lifespan (own or shared runtime, key requirement) and compression."""

from __future__ import annotations

import gzip
from pathlib import Path

import httpx
import pytest

from imagemill.api.app import GZIP_MINIMUM_BYTES, KeysRequired, create_app
from imagemill.config import Settings
from imagemill.runtime import Runtime

BASE_URL = "http://imagemill.test"


async def test_requiring_keys_with_none_refuses_to_start(settings: Settings) -> None:
    keyed = settings.model_copy(update={"require_keys": True})
    async with Runtime(keyed) as runtime:
        app = create_app(runtime=runtime)

        with pytest.raises(KeysRequired, match="imagemill keys create"):
            async with app.router.lifespan_context(app):
                pass  # pragma: no cover


async def test_a_non_loopback_host_requires_keys_by_default(tmp_path: Path) -> None:
    exposed = Settings(data_dir=tmp_path / "data", host="0.0.0.0")
    app = create_app(exposed)

    with pytest.raises(KeysRequired, match=r"0\.0\.0\.0"):
        async with app.router.lifespan_context(app):
            pass  # pragma: no cover


async def test_app_starts_and_stops_its_own_runtime(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path / "own"))

    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as http,
    ):
        assert (await http.get("/readyz")).status_code == 200
        body = {"model": "placeholder", "prompt": "own runtime", "size": "64x64"}
        job = (await http.post("/v1/jobs", json=body, headers={"Prefer": "wait=10"})).json()
        assert job["status"] == "succeeded"

    assert (tmp_path / "own" / "imagemill.db").exists()


async def test_large_json_list_is_gzipped(client: httpx.AsyncClient) -> None:
    body = {"model": "placeholder", "prompt": "fill the list", "size": "64x64"}
    for _ in range(4):
        await client.post("/v1/jobs", json=body, headers={"Prefer": "wait=10"})

    plain = await client.get("/v1/jobs", headers={"Accept-Encoding": "identity"})
    async with client.stream("GET", "/v1/jobs", headers={"Accept-Encoding": "gzip"}) as zipped:
        wire = b"".join([chunk async for chunk in zipped.aiter_raw()])

    assert len(plain.content) > GZIP_MINIMUM_BYTES
    assert "content-encoding" not in plain.headers
    assert zipped.headers["content-encoding"] == "gzip"
    assert "accept-encoding" in zipped.headers["vary"].lower()
    assert len(wire) < len(plain.content)
    assert gzip.decompress(wire) == plain.content


async def test_small_json_is_not_gzipped(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz", headers={"Accept-Encoding": "gzip"})

    assert "content-encoding" not in response.headers
    assert response.json() == {"status": "ok"}
