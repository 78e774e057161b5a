"""The OpenAI Images fake, driven through the official ``openai`` SDK like the real API."""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from PIL import Image

from fakes.faults import Faults
from fakes.openai_images import FakeOpenAI, Plug
from fakes.server import serve


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def socket() -> Iterator[tuple[Plug, str]]:
    """One server for the module; each test plugs a fresh fake into it."""
    plug = Plug()
    with serve(plug) as url:
        yield plug, url


@pytest.fixture
def fake(socket: tuple[Plug, str], clock: FakeClock) -> FakeOpenAI:
    fake = FakeOpenAI(url_ttl_seconds=3600.0, faults=Faults(retry_after=0.01), clock=clock)
    fake.plug_into(*socket)
    return fake


def client_for(fake: FakeOpenAI, api_key: str = "sk-test", max_retries: int = 0) -> openai.OpenAI:
    return openai.OpenAI(
        api_key=api_key, base_url=f"{fake.base_url}/v1", max_retries=max_retries, timeout=5.0
    )


@pytest.fixture
def client(fake: FakeOpenAI) -> Iterator[openai.OpenAI]:
    with client_for(fake) as sdk:
        yield sdk


def decode(b64: str | None) -> Image.Image:
    assert b64 is not None
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


def png(width: int, height: int, colour: tuple[int, ...] = (200, 30, 30, 255)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA" if len(colour) == 4 else "RGB", (width, height), colour).save(buffer, "PNG")
    return buffer.getvalue()


def hole_mask(width: int, height: int) -> bytes:
    """Opaque, with a clear (to be edited) top-left quarter."""
    mask = Image.new("RGBA", (width, height), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, width // 2, height // 2))
    buffer = io.BytesIO()
    mask.save(buffer, "PNG")
    return buffer.getvalue()


# ---------------------------------------------------------------- generations


@pytest.mark.parametrize(
    ("size", "output_format", "pil_format"),
    [
        ("1024x1024", "png", "PNG"),
        ("1536x1024", "jpeg", "JPEG"),
        ("1024x1536", "webp", "WEBP"),
    ],
)
def test_gpt_image_1_returns_base64_images_of_the_size_and_format(
    client: openai.OpenAI, size: str, output_format: Any, pil_format: str
) -> None:
    result = client.images.generate(
        model="gpt-image-1", prompt="a lighthouse", size=size, output_format=output_format, n=2
    )
    assert result.data is not None and len(result.data) == 2
    for item in result.data:
        assert item.url is None and item.revised_prompt is None
        image = decode(item.b64_json)
        assert f"{image.width}x{image.height}" == size
        assert image.format == pil_format
    assert result.size == size and result.output_format == output_format
    assert result.background == "opaque" and result.quality == "medium"
    assert result.usage is not None
    assert result.usage.total_tokens == result.usage.input_tokens + result.usage.output_tokens
    assert result.usage.input_tokens_details.image_tokens == 0
    assert result.data[0].b64_json != result.data[1].b64_json  # one picture per index


def test_images_are_deterministic_from_prompt_and_index(client: openai.OpenAI) -> None:
    def first() -> str | None:
        result = client.images.generate(model="gpt-image-1", prompt="a lighthouse", size="auto")
        assert result.data is not None
        return result.data[0].b64_json

    assert first() == first()
    assert decode(first()).size == (1024, 1024)  # "auto" resolves to a square


def test_gpt_image_1_transparent_background_and_compression(client: openai.OpenAI) -> None:
    clear = client.images.generate(
        model="gpt-image-1", prompt="a sticker", background="transparent", quality="low"
    )
    assert clear.data is not None and clear.background == "transparent"
    image = decode(clear.data[0].b64_json)
    assert image.mode == "RGBA" and image.getpixel((0, 0))[3] == 0  # type: ignore[index]
    assert clear.usage is not None and clear.usage.output_tokens == 272

    small = client.images.generate(
        model="gpt-image-1", prompt="a sticker", output_format="jpeg", output_compression=0
    )
    assert small.data is not None and decode(small.data[0].b64_json).format == "JPEG"


def test_dall_e_3_urls_download_once_with_a_revised_prompt(
    fake: FakeOpenAI, client: openai.OpenAI
) -> None:
    result = client.images.generate(
        model="dall-e-3", prompt="a fox", size="1792x1024", quality="hd", style="natural"
    )
    assert result.data is not None and len(result.data) == 1
    item = result.data[0]
    assert item.b64_json is None and item.url is not None
    assert item.revised_prompt is not None and "a fox" in item.revised_prompt
    assert item.url.startswith(f"{fake.base_url}/private/")
    assert "se=" in item.url and "sig=" in item.url
    assert result.usage is None

    download = httpx.get(item.url)
    assert download.status_code == 200
    assert download.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(download.content)).size == (1792, 1024)
    assert fake.downloads_of(item.url) == 1


def test_dall_e_2_several_urls_and_b64(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    result = client.images.generate(model="dall-e-2", prompt="a cat", size="256x256", n=3)
    assert result.data is not None and len(result.data) == 3
    for item in result.data:
        assert item.url is not None and item.revised_prompt is None
        assert Image.open(io.BytesIO(httpx.get(item.url).content)).size == (256, 256)
    assert sorted(fake.downloads.values()) == [1, 1, 1]

    inline = client.images.generate(model="dall-e-3", prompt="a cat", response_format="b64_json")
    assert inline.data is not None and inline.data[0].url is None
    assert decode(inline.data[0].b64_json).size == (1024, 1024)


def test_model_defaults_to_dall_e_2(client: openai.OpenAI) -> None:
    result = client.images.generate(prompt="a cat", response_format="b64_json")
    assert result.data is not None and decode(result.data[0].b64_json).size == (1024, 1024)


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("params", "param", "code"),
    [
        ({"model": "gpt-image-1", "size": "1792x1024"}, "size", "invalid_value"),
        ({"model": "gpt-image-1", "quality": "hd"}, "quality", "invalid_value"),
        ({"model": "gpt-image-1", "response_format": "b64_json"}, "response_format", None),
        ({"model": "gpt-image-1", "style": "vivid"}, "style", "unknown_parameter"),
        ({"model": "gpt-image-1", "output_format": "gif"}, "output_format", "invalid_value"),
        ({"model": "gpt-image-1", "n": 11}, "n", "integer_above_max_value"),
        ({"model": "gpt-image-1", "n": 0}, "n", "integer_below_min_value"),
        (
            {"model": "gpt-image-1", "background": "transparent", "output_format": "jpeg"},
            "background",
            "invalid_value",
        ),
        ({"model": "gpt-image-1", "output_compression": 50}, "output_compression", None),
        ({"model": "dall-e-3", "n": 2}, "n", "invalid_value"),
        ({"model": "dall-e-3", "quality": "low"}, "quality", "invalid_value"),
        ({"model": "dall-e-3", "style": "pastel"}, "style", "invalid_value"),
        ({"model": "dall-e-3", "output_format": "png"}, "output_format", "unknown_parameter"),
        ({"model": "dall-e-2", "style": "vivid"}, "style", "unknown_parameter"),
        ({"model": "dall-e-2", "prompt": "x" * 1001}, "prompt", "string_above_max_length"),
        ({"model": "dall-e-5"}, "model", "invalid_value"),
    ],
)
def test_invalid_parameters_are_rejected_naming_the_param(
    client: openai.OpenAI, params: dict[str, Any], param: str, code: str | None
) -> None:
    params = {"prompt": "a cat"} | params
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(**params)
    error = caught.value
    assert error.status_code == 400 and error.type == "invalid_request_error"
    assert error.param == param
    if code is not None:
        assert error.code == code
    if param == "response_format":
        assert error.message.endswith("Unknown parameter: 'response_format'.")


def test_dall_e_sizes_are_rejected_like_openai_does(client: openai.OpenAI) -> None:
    for model, size in (("dall-e-3", "512x512"), ("dall-e-2", "1792x1024")):
        with pytest.raises(openai.BadRequestError) as caught:
            client.images.generate(model=model, prompt="a cat", size=size)
        assert caught.value.code == "invalid_size"
        assert caught.value.param is None  # as the real API answers


def test_safety_rejections(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as dalle:
        client.images.generate(model="dall-e-3", prompt="something Forbidden here")
    assert dalle.value.code == "content_policy_violation"
    with pytest.raises(openai.BadRequestError) as gpt:
        client.images.generate(model="gpt-image-1", prompt="something forbidden here")
    assert gpt.value.code == "moderation_blocked"
    assert gpt.value.type == "image_generation_user_error"


def test_wrong_or_missing_key_is_401(fake: FakeOpenAI) -> None:
    with (
        client_for(fake, api_key="sk-wrong-key-0123456789") as sdk,
        pytest.raises(openai.AuthenticationError) as caught,
    ):
        sdk.images.generate(model="dall-e-2", prompt="a cat")
    assert caught.value.code == "invalid_api_key"
    assert "sk-wrong***********6789" in caught.value.message

    missing = httpx.post(f"{fake.base_url}/v1/images/generations", json={"prompt": "a cat"})
    assert missing.status_code == 401
    assert missing.json()["error"]["message"].startswith("You didn't provide an API key")


def test_bad_json_and_unknown_paths(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    headers = {"Authorization": "Bearer sk-test", "Content-Type": "application/json"}
    bad = httpx.post(f"{fake.base_url}/v1/images/generations", content=b"{", headers=headers)
    assert bad.status_code == 400
    assert bad.json()["error"]["message"].startswith("We could not parse the JSON body")

    with pytest.raises(openai.NotFoundError) as caught:
        client.post("/images/variations", cast_to=dict, body={})
    assert caught.value.message.endswith("Invalid URL (POST /v1/images/variations)")
    wrong_method = httpx.get(f"{fake.base_url}/v1/images/generations", headers=headers)
    assert wrong_method.status_code == 404


# ---------------------------------------------------------------- URLs expire


def test_urls_expire_after_their_ttl_with_azure_403(
    fake: FakeOpenAI, client: openai.OpenAI, clock: FakeClock
) -> None:
    result = client.images.generate(model="dall-e-2", prompt="a cat", size="256x256")
    assert result.data is not None and result.data[0].url is not None
    url = result.data[0].url
    clock.now += 3599
    assert httpx.get(url).status_code == 200
    clock.now += 1
    expired = httpx.get(url)
    assert expired.status_code == 403
    assert "<Code>AuthenticationFailed</Code>" in expired.text
    assert "Signed expiry time" in expired.text
    assert fake.downloads_of(url) == 1


def test_expire_urls_and_tampered_signatures(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    result = client.images.generate(model="dall-e-2", prompt="a cat", size="256x256", n=2)
    assert result.data is not None
    first, second = (item.url or "" for item in result.data)
    tampered = httpx.get(first.replace("sp=r", "sp=rw"))
    assert tampered.status_code == 403 and "Signature did not match" in tampered.text

    fake.expire_urls()
    assert httpx.get(first).status_code == 403
    assert httpx.get(second).status_code == 403
    assert sum(fake.downloads.values()) == 0


# ---------------------------------------------------------------- edits


def test_gpt_image_1_edit_with_several_images_and_a_mask(
    fake: FakeOpenAI, client: openai.OpenAI
) -> None:
    result = client.images.edit(
        model="gpt-image-1",
        image=[("room.png", png(1536, 1024), "image/png"), ("lamp.png", png(64, 64))],
        mask=("mask.png", hole_mask(1536, 1024), "image/png"),
        prompt="add a window",
        quality="high",
    )
    assert result.data is not None and result.usage is not None
    image = decode(result.data[0].b64_json).convert("RGB")
    assert image.size == (1536, 1024)  # "auto" follows the input's shape
    assert image.getpixel((1500, 1000)) == (200, 30, 30)  # outside the mask: kept
    assert image.getpixel((10, 10)) != (200, 30, 30)  # under the clear mask: repainted
    assert result.usage.input_tokens_details.image_tokens > 0

    call = fake.calls[-1]
    assert call.endpoint == "edits"
    assert call.fields == {"model": "gpt-image-1", "prompt": "add a window", "quality": "high"}
    assert [f.filename for f in call.files["image[]"]] == ["room.png", "lamp.png"]
    assert call.files["mask"][0].content_type == "image/png"
    assert call.files["mask"][0].size == len(hole_mask(1536, 1024))


def test_dall_e_2_edit_returns_a_url(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    result = client.images.edit(
        model="dall-e-2",
        image=("cat.png", png(512, 512)),
        mask=("mask.png", hole_mask(512, 512)),
        prompt="a hat",
        size="256x256",
        n=2,
    )
    assert result.data is not None and len(result.data) == 2
    assert result.data[0].url is not None
    download = httpx.get(result.data[0].url)
    assert Image.open(io.BytesIO(download.content)).size == (256, 256)
    assert fake.calls[-1].files["image"][0].filename == "cat.png"


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"mask": ("mask.png", hole_mask(256, 256))}, "mask"),  # not the image's size
        ({"mask": ("mask.png", png(512, 512, (1, 2, 3)))}, "mask"),  # no alpha
        ({"image": ("cat.png", png(512, 512, (1, 2, 3)))}, "image"),  # no alpha, no mask
        ({"image": ("cat.png", png(512, 256))}, "image"),  # not square
        ({"image": ("cat.png", b"not an image")}, "image"),
        ({"model": "dall-e-3"}, "model"),
        ({"size": "1792x1024"}, None),
    ],
)
def test_invalid_edits(client: openai.OpenAI, params: dict[str, Any], param: str | None) -> None:
    params = {"model": "dall-e-2", "image": ("cat.png", png(512, 512)), "prompt": "a hat"} | params
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.edit(**params)
    assert caught.value.param == param


# ---------------------------------------------------------------- faults


def test_429_carries_retry_after(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.faults.queue("429")
    with pytest.raises(openai.RateLimitError) as caught:
        client.images.generate(model="dall-e-2", prompt="a cat")
    assert caught.value.response.headers["retry-after"] == "0.01"
    assert caught.value.type == "rate_limit_error"


@pytest.mark.parametrize("status", ["500", "502", "503"])
def test_5xx_is_an_internal_server_error(
    fake: FakeOpenAI, client: openai.OpenAI, status: str
) -> None:
    fake.faults.queue(status)
    with pytest.raises(openai.InternalServerError) as caught:
        client.images.generate(model="dall-e-2", prompt="a cat")
    assert caught.value.status_code == int(status)


def test_malformed_body_escapes_the_sdk_as_a_json_error(
    fake: FakeOpenAI, client: openai.OpenAI
) -> None:
    fake.faults.queue("malformed")
    with pytest.raises(json.JSONDecodeError):  # the SDK does not wrap it in an openai error
        client.images.generate(model="gpt-image-1", prompt="a cat")


async def test_hang_is_cut_by_the_client_timeout(fake: FakeOpenAI) -> None:
    fake.faults.queue("hang")
    started = time.monotonic()
    async with openai.AsyncOpenAI(
        api_key="sk-test", base_url=f"{fake.base_url}/v1", max_retries=0, timeout=0.5
    ) as sdk:
        with pytest.raises(openai.APITimeoutError):
            await sdk.images.generate(model="dall-e-2", prompt="a cat")
        assert time.monotonic() - started < 2
        result = await sdk.images.generate(model="dall-e-2", prompt="a cat")  # served again
        assert result.data is not None


def test_the_sdk_retries_faults_and_the_calls_are_recorded(fake: FakeOpenAI) -> None:
    fake.faults.queue("429", "429")
    with client_for(fake, max_retries=2) as sdk:
        result = sdk.images.generate(
            model="gpt-image-1",
            prompt="a cat",
            extra_headers={"Idempotency-Key": "job-42"},
        )
    assert result.data is not None
    assert [call.endpoint for call in fake.calls] == ["generations"] * 3
    assert {call.idempotency_key for call in fake.calls} == {"job-42"}
    assert [call.headers["x-stainless-retry-count"] for call in fake.calls] == ["0", "1", "2"]
    assert fake.calls[0].fields == {"model": "gpt-image-1", "prompt": "a cat"}
    assert fake.faults.log == [
        ("generations", "429"),
        ("generations", "429"),
        ("generations", "ok"),
    ]


def test_downloads_may_fail_too(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    result = client.images.generate(model="dall-e-2", prompt="a cat", size="256x256")
    assert result.data is not None and result.data[0].url is not None
    fake.faults.queue("503")
    assert httpx.get(result.data[0].url).status_code == 503
    assert httpx.get(result.data[0].url).status_code == 200
    assert fake.downloads_of(result.data[0].url) == 1


def test_a_fake_serves_itself_on_any_port() -> None:
    fake = FakeOpenAI(api_key="sk-other")
    with fake.serve() as url, client_for(fake, api_key="sk-other") as sdk:
        assert fake.base_url == url
        result = sdk.images.generate(model="dall-e-2", prompt="a cat", size="256x256")
        assert result.data is not None and result.data[0].url is not None
        assert result.data[0].url.startswith(url)
        assert httpx.get(result.data[0].url).status_code == 200
