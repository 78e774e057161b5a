"""``POST /v1/images/generations`` driven by the official ``openai`` SDK, unchanged."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import openai
import pytest
from fastapi import FastAPI
from PIL import Image

from imagemill.api.app import create_app
from imagemill.runtime import Runtime

BASE_URL = "http://imagemill.test"
Decode = Callable[[bytes], Image.Image]


@pytest.fixture
async def app(runtime: Runtime) -> AsyncIterator[FastAPI]:
    """The app over the keyless shared runtime, started."""
    app = create_app(runtime=runtime)
    async with app.router.lifespan_context(app):
        yield app


def sdk(app: FastAPI, api_key: str) -> openai.AsyncOpenAI:
    """The official client, talking to the app in-process."""
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app))
    return openai.AsyncOpenAI(
        base_url=f"{BASE_URL}/v1", api_key=api_key, http_client=http, max_retries=0
    )


@pytest.fixture
async def alice_sdk(owners: Any) -> AsyncIterator[openai.AsyncOpenAI]:
    """The SDK with Alice's key, on a server that requires keys."""
    async with sdk(owners.app, owners.alice_key) as client:
        yield client


async def test_b64_json_gives_decodable_images_of_the_requested_size(
    alice_sdk: openai.AsyncOpenAI, decode: Decode
) -> None:
    result = await alice_sdk.images.generate(
        model="placeholder", prompt="a lighthouse", n=2, size="512x512", response_format="b64_json"
    )

    assert len(result.data) == 2
    images = [base64.b64decode(item.b64_json or "") for item in result.data]
    assert images[0] != images[1], "n=2 gives two different images"
    for data in images:
        image = decode(data)
        assert image.format == "PNG"
        assert image.size == (512, 512)
    assert all(item.url is None for item in result.data)
    assert result.created > 0


async def test_url_gives_links_that_download_without_a_key(
    alice_sdk: openai.AsyncOpenAI, owners: Any, decode: Decode
) -> None:
    result = await alice_sdk.images.generate(
        model="placeholder", prompt="a harbour", n=2, size="512x512", response_format="url"
    )

    assert len(result.data) == 2
    urls = [item.url or "" for item in result.data]
    assert all(url.startswith(f"{BASE_URL}/v1/assets/") and "token=" in url for url in urls)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=owners.app)) as plain:
        for url in urls:
            response = await plain.get(url)
            assert "authorization" not in response.request.headers
            assert response.status_code == 200, response.text
            assert response.headers["content-type"] == "image/png"
            image = decode(response.content)
            assert image.size == (512, 512)
            assert image.format == "PNG"


async def test_b64_response_is_not_gzipped(owners: Any) -> None:
    body = {"prompt": "a big one", "n": 2, "size": "512x512", "response_format": "b64_json"}

    response = await owners.alice.post(
        "/v1/images/generations", json=body, headers={"Accept-Encoding": "gzip"}
    )

    assert response.status_code == 200
    assert len(response.content) > 10_000, "large enough that gzip would otherwise apply"
    assert response.headers.get("content-encoding") != "gzip"
    assert len(response.json()["data"]) == 2


async def test_invalid_size_is_unprocessable(alice_sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        await alice_sdk.images.generate(model="placeholder", prompt="x", size="big")  # type: ignore[arg-type]

    assert caught.value.status_code == 422
    assert caught.value.body is not None
    assert "size" in str(caught.value.body)


async def test_unknown_model_is_unprocessable(alice_sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        await alice_sdk.images.generate(model="dall-e-9", prompt="x")

    assert caught.value.status_code == 422


async def test_auto_size_uses_the_models_default(
    alice_sdk: openai.AsyncOpenAI, decode: Decode
) -> None:
    result = await alice_sdk.images.generate(
        model="placeholder", prompt="default size", size="auto", response_format="b64_json"
    )

    assert decode(base64.b64decode(result.data[0].b64_json or "")).size == (512, 512)


async def test_the_call_is_recorded_as_a_job(alice_sdk: openai.AsyncOpenAI, owners: Any) -> None:
    await alice_sdk.images.generate(
        model="placeholder", prompt="kept on record", size="64x64", response_format="url"
    )

    jobs = (await owners.alice.get("/v1/jobs")).json()["data"]
    assert [j["request"]["prompt"] for j in jobs] == ["kept on record"]
    assert jobs[0]["status"] == "succeeded"
    assert (await owners.bob.get("/v1/jobs")).json()["data"] == []


async def test_a_missing_or_wrong_key_is_an_authentication_error(owners: Any) -> None:
    async with sdk(owners.app, "im_wrong") as wrong:
        with pytest.raises(openai.AuthenticationError):
            await wrong.images.generate(model="placeholder", prompt="x", size="64x64")


async def test_any_api_key_works_on_a_keyless_server(app: FastAPI, decode: Decode) -> None:
    """The SDK insists on some api_key; a keyless loopback server has none to give."""
    async with sdk(app, "x") as client:
        try:
            result = await client.images.generate(
                model="placeholder", prompt="local", size="64x64", response_format="b64_json"
            )
        except openai.AuthenticationError as exc:
            pytest.fail(
                "a keyless server rejects the placeholder api_key the openai SDK requires "
                f"(deps.optional_owner raises Unauthorized for an unknown key): {exc}"
            )

    assert decode(base64.b64decode(result.data[0].b64_json or "")).size == (64, 64)
