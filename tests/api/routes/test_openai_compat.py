"""``POST /v1/images/generations`` driven by the official ``openai`` SDK, unchanged."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import httpx
import openai
import pytest
from fastapi import FastAPI
from PIL import Image
from pydantic import SecretStr

from fakes.openai_images import FakeOpenAI
from fakes.server import serve
from imagemill.api.app import create_app
from imagemill.config import Settings
from imagemill.domain import Job
from imagemill.runtime import Runtime
from imagemill.storage.images import png_params

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


async def test_an_invalid_size_is_a_bad_request_in_openais_shape(
    alice_sdk: openai.AsyncOpenAI,
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await alice_sdk.images.generate(model="placeholder", prompt="x", size="big")  # type: ignore[arg-type]

    assert caught.value.status_code == 400
    assert caught.value.param == "size"
    assert caught.value.type == "invalid_request_error"
    assert caught.value.response.headers["x-should-retry"] == "false"


async def test_an_unknown_model_is_a_bad_request(alice_sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await alice_sdk.images.generate(model="dall-e-9", prompt="x")

    assert caught.value.param == "model"


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


# -- every error in OpenAI's shape, and never a second generation for a retry -----------


@pytest.fixture(scope="module")
def openai_fake() -> Iterator[tuple[FakeOpenAI, str]]:
    fake = FakeOpenAI(api_key="sk-compat")
    with serve(fake.app) as url:
        yield fake, f"{url}/v1"


OpenAIBacked = Callable[..., contextlib.AbstractAsyncContextManager[FastAPI]]


@pytest.fixture
def openai_backed(settings: Settings, openai_fake: tuple[FakeOpenAI, str]) -> OpenAIBacked:
    """``async with openai_backed(**settings) as app``: a keyless server whose OpenAI
    models go to the fake (its record of calls cleared)."""
    fake, url = openai_fake

    @contextlib.asynccontextmanager
    async def make(**overrides: Any) -> AsyncIterator[FastAPI]:
        fake.calls.clear()
        configured = settings.model_copy(
            update={
                "data_dir": settings.data_dir.with_name("openai-backed"),
                "openai_api_key": SecretStr("sk-compat"),
                "openai_base_url": url,
                **overrides,
            }
        )
        async with Runtime(configured) as runtime:
            app = create_app(runtime=runtime)
            async with app.router.lifespan_context(app):
                yield app

    return make


def default_sdk(app: FastAPI) -> openai.AsyncOpenAI:
    """The SDK as people use it: its own retries on (2 of them, with backoff)."""
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app))
    return openai.AsyncOpenAI(base_url=f"{BASE_URL}/v1", api_key="x", http_client=http)


async def _jobs(app: FastAPI) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as h:
        data: list[dict[str, Any]] = (await h.get("/v1/jobs")).json()["data"]
    return data


async def test_a_refusal_is_one_provider_call_and_a_bad_request_error(
    openai_backed: OpenAIBacked, openai_fake: tuple[FakeOpenAI, str]
) -> None:
    fake, _ = openai_fake
    async with openai_backed() as app, default_sdk(app) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.images.generate(model="openai/gpt-image-1", prompt="a forbidden thing")

        assert caught.value.code == "content_policy_violation"
        assert caught.value.response.headers["x-should-retry"] == "false"
        assert [c.endpoint for c in fake.calls] == ["generations"], "one paid call, not three"
        assert len(await _jobs(app)) == 1


async def test_a_job_that_failed_is_not_retried_by_the_sdk(
    openai_backed: OpenAIBacked, openai_fake: tuple[FakeOpenAI, str]
) -> None:
    """The job ran its own retries (3 attempts) and failed: a retry of the call would only
    find that job again, so the answer says not to."""
    fake, _ = openai_fake
    fake.faults.queue("500", "500", "500")
    async with openai_backed() as app, default_sdk(app) as client:
        with pytest.raises(openai.InternalServerError) as caught:
            await client.images.generate(model="openai/gpt-image-1", prompt="a lighthouse")

        assert caught.value.response.headers["x-should-retry"] == "false"
        assert len(fake.calls) == 3, "the job's own three attempts, no more"
        assert len(await _jobs(app)) == 1


async def test_over_the_models_prompt_limit_is_a_bad_request_and_no_call(
    openai_backed: OpenAIBacked, openai_fake: tuple[FakeOpenAI, str]
) -> None:
    fake, _ = openai_fake
    async with openai_backed() as app, default_sdk(app) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.images.generate(model="openai/dall-e-3", prompt="x" * 4800)

    assert caught.value.param == "prompt"
    assert "4,000" in caught.value.message
    assert fake.calls == []


async def test_a_retry_after_the_wait_runs_out_joins_the_first_tries_job(
    openai_backed: OpenAIBacked, openai_fake: tuple[FakeOpenAI, str]
) -> None:
    """The first try outlasts the wait (the provider rate-limits it for 2 s): 504, which
    the SDK retries, and the retry waits for that same job instead of starting another."""
    fake, _ = openai_fake
    fake.faults.retry_after = 2.0
    fake.faults.queue("429")
    try:
        async with openai_backed(openai_wait_seconds=1.0) as app, default_sdk(app) as client:
            result = await client.images.generate(
                model="openai/gpt-image-1", prompt="slow to come", response_format="b64_json"
            )

            assert len(result.data) == 1
            assert len(await _jobs(app)) == 1
            assert len(fake.calls) == 2, "the 429 and the success, both of the one job"
    finally:
        fake.faults.retry_after = 1.0


async def test_an_idempotency_key_is_honoured(openai_backed: OpenAIBacked) -> None:
    async with openai_backed() as app, default_sdk(app) as client:
        first, again = [
            await client.images.generate(
                model="placeholder",
                prompt="keyed",
                size="64x64",
                response_format="b64_json",
                extra_headers={"Idempotency-Key": "k-1"},
            )
            for _ in range(2)
        ]
        assert first.data[0].b64_json == again.data[0].b64_json
        assert len(await _jobs(app)) == 1
        with pytest.raises(openai.BadRequestError) as caught:
            await client.images.generate(
                model="placeholder", prompt="another", extra_headers={"Idempotency-Key": "k-1"}
            )
        assert caught.value.param == "Idempotency-Key"


async def test_the_wait_follows_what_the_client_says_it_waits(
    openai_backed: OpenAIBacked,
) -> None:
    """A client that waits 3 s (x-stainless-read-timeout) gets its answer before then."""
    async with (
        openai_backed() as app,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as http,
    ):
        body = {"model": "openai/gpt-image-1", "prompt": "x"}
        started = asyncio.get_running_loop().time()
        async with asyncio.timeout(20):
            response = await http.post(
                "/v1/images/generations", json=body, headers={"x-stainless-read-timeout": "3"}
            )
        assert response.status_code == 200
        assert asyncio.get_running_loop().time() - started < 3


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "x", "n": True}, "n"),
        ({"prompt": "x", "size": "\uff16\uff14x64"}, "size"),
        ({"prompt": "x", "colour": "red"}, "colour"),
        ({"prompt": "x", "stream": True}, "stream"),
        ({"prompt": "cut \ud83d"}, "prompt"),
        ({"prompt": "x", "size": "64x64\n"}, "size"),
        # What the model does not take is refused, not dropped (webp was answered in PNG).
        ({"prompt": "x", "output_format": "webp"}, "output_format"),
        ({"prompt": "x", "quality": "bogus"}, "quality"),
        ({"prompt": "x", "style": "vivid"}, "style"),
        ({"prompt": "x", "background": "transparent"}, "background"),
        ({"prompt": "x", "params": {"a": 1}}, "params"),
        ({"prompt": "x", "input_fidelity": "high"}, "input_fidelity"),  # an edit's option
    ],
)
async def test_bad_generation_bodies_are_400s_naming_the_param(
    owners: Any, body: dict[str, Any], param: str
) -> None:
    raw = json.dumps({"model": "placeholder", **body}).encode()
    response = await owners.alice.post(
        "/v1/images/generations", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text[:300]
    assert response.headers["x-should-retry"] == "false"
    error = response.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert error["code"] == "invalid_value", "OpenAI's code for a bad value, not null"


async def test_a_generation_sent_as_something_other_than_json_is_a_415(owners: Any) -> None:
    """Sent as text/plain (a browser's fetch without a content type), the body was read as
    JSON anyway: whatever the proxies in between made of it."""
    body = json.dumps({"model": "placeholder", "prompt": "x"}).encode()
    response = await owners.alice.post(
        "/v1/images/generations", content=body, headers={"content-type": "text/plain"}
    )
    assert response.status_code == 415
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and "application/json" in error["message"]


async def test_options_that_ask_for_nothing_are_taken_by_any_model(owners: Any) -> None:
    body = {"model": "placeholder", "prompt": "x", "quality": "auto", "background": "auto"}
    response = await owners.alice.post("/v1/images/generations", json=body)
    assert response.status_code == 200, response.text[:300]


async def test_a_body_nested_past_the_json_reader_is_a_400_that_says_nothing_internal(
    owners: Any,
) -> None:
    """It was a 500 whose message quoted Python's RecursionError."""
    raw = b'{"prompt": "x", "user": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    response = await owners.alice.post(
        "/v1/images/generations", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text[:300]
    assert "recursion" not in response.text.lower()


async def test_without_a_key_it_is_a_401_in_openais_shape(owners: Any) -> None:
    response = await owners.anonymous.post("/v1/images/generations", json={"prompt": "x"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert response.headers["x-should-retry"] == "false"


@pytest.mark.parametrize("spelling", ["image", "image[]", "image[0]"])
async def test_the_edits_form_takes_every_clients_spelling_of_its_images(
    openai_backed: OpenAIBacked, openai_fake: tuple[FakeOpenAI, str], spelling: str
) -> None:
    fake, _ = openai_fake
    picture = io.BytesIO()
    Image.new("RGB", (64, 64), (30, 60, 90)).save(picture, format="PNG")
    files = [(spelling, ("a.png", picture.getvalue(), "image/png"))]
    if spelling != "image":  # the array spellings carry several
        files.append((spelling.replace("0", "1"), ("b.png", picture.getvalue(), "image/png")))
    async with (
        openai_backed() as app,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as http,
    ):
        response = await http.post(
            "/v1/images/edits", data={"prompt": "make it blue", "size": "1024x1024"}, files=files
        )
    assert response.status_code == 200, response.text[:300]
    [call] = fake.calls
    sent = [f for key in ("image", "image[]") for f in call.files.get(key, [])]
    assert len(sent) == len(files)


def _png(colour: tuple[int, int, int] = (30, 60, 90)) -> bytes:
    picture = io.BytesIO()
    Image.new("RGB", (64, 64), colour).save(picture, format="PNG")
    return picture.getvalue()


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"prompt": b"\xff\xfe"}, "prompt"),  # not UTF-8: was stored as Latin-1 mojibake
        ({"prompt": b"\xed\xa0\xbd"}, "prompt"),  # a surrogate in UTF-8's form
        ({"prompt": b"x", "n": b" 2"}, "n"),
        ({"prompt": b"x", "n": b"\xef\xbc\x92"}, "n"),  # a full-width 2
        ({"prompt": b"x", "size": b"64x64\n"}, "size"),
        ({"prompt": b"x", "moderation": b"low"}, "moderation"),  # a generation's option
        ({"prompt": b"x", "style": b"vivid"}, "style"),
        ({"prompt": b"x", "user": b"u" * 201}, "user"),  # as long as the JSON body allows
        ({"prompt": b"x", "mask": ("m.png", "png")}, "mask"),  # a second mask below
    ],
)
async def test_edit_form_fields_are_held_to_the_same_rules(
    openai_backed: OpenAIBacked,
    openai_fake: tuple[FakeOpenAI, str],
    fields: dict[str, Any],
    param: str,
) -> None:
    fake, _ = openai_fake
    parts: list[tuple[str, Any]] = [("image", ("a.png", _png(), "image/png"))]
    for name, value in fields.items():
        if isinstance(value, tuple):  # a file: given twice, which one is meant?
            parts += [(name, (value[0], _png(), "image/png"))] * 2
        else:
            parts.append((name, (None, value)))
    async with (
        openai_backed() as app,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as http,
    ):
        response = await http.post("/v1/images/edits", files=parts)
        assert response.status_code == 400, response.text[:300]
        assert response.json()["error"]["param"] == param
        assert await _jobs(app) == []
    assert fake.calls == []


async def test_an_edit_that_is_not_a_form_is_a_400(owners: Any) -> None:
    """With no body at all it was a 500."""
    for headers in ({}, {"content-type": "application/json"}):
        response = await owners.alice.post("/v1/images/edits", headers=headers, content=b"{}")
        assert response.status_code == 400, response.text[:300]
        assert "multipart/form-data" in response.json()["error"]["message"]


async def test_an_edits_body_over_its_limit_is_a_413_in_openais_shape(
    openai_backed: OpenAIBacked,
) -> None:
    async with (
        openai_backed(max_upload_bytes=10_000) as app,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as http,
    ):
        files = [("image", ("a.png", b"x" * 2_000_000, "image/png"))]
        response = await http.post("/v1/images/edits", data={"prompt": "x"}, files=files)
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_a_hosted_image_is_answered_from_memory_as_the_very_bytes_stored(
    openai_backed: OpenAIBacked, openai_fake: tuple[FakeOpenAI, str]
) -> None:
    """The provider's bytes, annotated with their parameters and stored, are what the
    answer's base64 carries, character for character; the answer reads no blob back, nor
    the job again (the worker hands it over as it recorded it finished)."""
    async with openai_backed() as app, default_sdk(app) as client:
        runtime: Runtime = app.state.runtime
        reads: list[str] = []
        original_get, original_get_jobs = runtime.blobs.get, runtime.repo.get_jobs

        async def counted(key: str) -> bytes:
            reads.append(key)
            return await original_get(key)

        async def counted_jobs(job_ids: Sequence[str]) -> list[Job]:
            reads.append(f"jobs {job_ids}")
            return await original_get_jobs(job_ids)

        runtime.blobs.get = counted  # type: ignore[method-assign]
        runtime.repo.get_jobs = counted_jobs  # type: ignore[method-assign]
        result = await client.images.generate(
            model="openai/gpt-image-1", prompt="a lighthouse", response_format="b64_json"
        )
        assert reads == [], "answered from memory"
        runtime.blobs.get = original_get  # type: ignore[method-assign]
        runtime.repo.get_jobs = original_get_jobs  # type: ignore[method-assign]

        [job] = await _jobs(app)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=BASE_URL
        ) as http:
            stored = (await http.get(f"/v1/assets/{job['outputs'][0]['asset_id']}")).content
    assert result.data and result.data[0].b64_json == base64.b64encode(stored).decode()
    assert png_params(stored)["prompt"] == "a lighthouse"
