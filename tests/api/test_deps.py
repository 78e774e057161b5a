"""Request dependencies: who is calling (API keys, the keyless local owner) and public URLs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from imagemill.api.app import create_app
from imagemill.config import Settings
from imagemill.runtime import Runtime

BASE_URL = "http://imagemill.test"


async def test_no_key_is_401_with_www_authenticate(owners: Any) -> None:
    for method, path, code in (
        ("GET", "/v1/jobs", "unauthorized"),
        ("POST", "/v1/jobs", "unauthorized"),
        ("GET", "/v1/presets", "unauthorized"),
        ("GET", "/v1/models", "unauthorized"),
        ("POST", "/v1/images/generations", "invalid_api_key"),  # OpenAI's code, for its SDK
    ):
        response = await owners.anonymous.request(method, path, json={})

        assert response.status_code == 401, (method, path)
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"]["code"] == code


async def test_bad_key_is_401(owners: Any) -> None:
    for header in ("Bearer im_not-a-real-key", f"Bearer {owners.alice_key}x", "Basic YWxpY2U6cHc="):
        response = await owners.anonymous.get("/v1/jobs", headers={"Authorization": header})

        assert response.status_code == 401, header
        assert response.headers["www-authenticate"] == "Bearer"


async def test_a_valid_key_identifies_its_owner(owners: Any) -> None:
    body = {"model": "placeholder", "prompt": "whose", "size": "64x64"}
    job = (await owners.alice.post("/v1/jobs", json=body, headers={"Prefer": "wait=10"})).json()

    assert (await owners.alice.get(f"/v1/jobs/{job['id']}")).status_code == 200
    alice = await owners.runtime.accounts.get_owner(
        (await owners.runtime.repo.get_job(job["id"])).owner_id
    )
    assert alice.name == "alice"


async def test_keyless_server_serves_the_local_owner(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    body = {"model": "placeholder", "prompt": "local", "size": "64x64"}
    job = (await client.post("/v1/jobs", json=body, headers={"Prefer": "wait=10"})).json()

    owner = await runtime.accounts.get_owner((await runtime.repo.get_job(job["id"])).owner_id)
    assert owner.name == "local"


@pytest.fixture
async def proxied(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app behind a proxy: clients reach it at ``public_url``."""
    behind_proxy = settings.model_copy(
        update={
            "public_url": "https://img.example.com/",
            "data_dir": settings.data_dir.with_name("proxied"),
        }
    )
    async with Runtime(behind_proxy) as runtime:
        app = create_app(runtime=runtime)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as http,
        ):
            yield http


async def test_links_use_the_public_url(proxied: httpx.AsyncClient) -> None:
    body = {"model": "placeholder", "prompt": "linked", "size": "64x64"}
    job = (await proxied.post("/v1/jobs", json=body, headers={"Prefer": "wait=10"})).json()
    output = job["outputs"][0]

    assert output["url"] == f"https://img.example.com/v1/assets/{output['asset_id']}"
    assert output["thumbnail_url"] == f"{output['url']}/thumbnail"
    generated = await proxied.post(
        "/v1/images/generations", json={"prompt": "x", "size": "64x64", "response_format": "url"}
    )
    assert generated.json()["data"][0]["url"].startswith("https://img.example.com/v1/assets/ast_")


async def test_links_default_to_the_request_base_url(client: httpx.AsyncClient) -> None:
    body = {"model": "placeholder", "prompt": "linked", "size": "64x64"}
    job = (await client.post("/v1/jobs", json=body, headers={"Prefer": "wait=10"})).json()

    assert job["outputs"][0]["url"].startswith(f"{BASE_URL}/v1/assets/ast_")
