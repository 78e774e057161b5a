"""The Recraft fake, driven through the official ``openai`` SDK as Recraft's docs show."""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Iterator
from typing import Any, cast
from xml.etree import ElementTree

import httpx
import openai
import pytest
from PIL import Image

from fakes.faults import Faults
from fakes.openai_images import Plug
from fakes.recraft import FakeRecraft
from fakes.server import serve


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def socket() -> Iterator[tuple[Plug, str]]:
    plug = Plug()
    with serve(plug) as url:
        yield plug, url


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake(socket: tuple[Plug, str], clock: FakeClock) -> FakeRecraft:
    fake = FakeRecraft(faults=Faults(retry_after=0.01), clock=clock)
    fake.plug_into(*socket)
    return fake


def client_for(
    fake: FakeRecraft, api_key: str = "recraft-test", max_retries: int = 0
) -> openai.OpenAI:
    return openai.OpenAI(
        api_key=api_key, base_url=f"{fake.base_url}/v1", max_retries=max_retries, timeout=5.0
    )


@pytest.fixture
def client(fake: FakeRecraft) -> Iterator[openai.OpenAI]:
    with client_for(fake) as sdk:
        yield sdk


def svg_size(content: bytes) -> tuple[int, int]:
    root = ElementTree.fromstring(content)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    return int(root.attrib["width"]), int(root.attrib["height"])


def test_default_is_a_realistic_raster_url(fake: FakeRecraft, client: openai.OpenAI) -> None:
    result = client.images.generate(prompt="two race cars on a track")
    assert result.data is not None and len(result.data) == 1
    url = result.data[0].url
    assert url is not None and url.startswith(f"{fake.base_url}/images/signed/")
    download = httpx.get(url)
    assert download.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(download.content)).size == (1024, 1024)
    assert fake.downloads_of(url) == 1
    assert fake.calls[0].fields == {"prompt": "two race cars on a track"}
    assert fake.calls[0].headers["authorization"] == "Bearer recraft-test"


@pytest.mark.parametrize(
    ("size", "expected"),
    [("1365x1024", (1365, 1024)), ("1707x1024", (1707, 1024)), ("16:9", (1820, 1024))],
)
def test_sizes_and_aspects(client: openai.OpenAI, size: str, expected: tuple[int, int]) -> None:
    result = client.images.generate(
        model="recraftv3", prompt="a bay", size=size, response_format="b64_json", n=2
    )
    assert result.data is not None and len(result.data) == 2
    for item in result.data:
        assert item.b64_json is not None
        assert Image.open(io.BytesIO(base64.b64decode(item.b64_json))).size == expected


def test_vector_styles_return_svg(client: openai.OpenAI) -> None:
    result = client.images.generate(
        model="recraftv3",
        prompt="cat on a mat",
        size="1024x1536",
        extra_body={"style": "vector_illustration"},  # the SDK types style for DALL·E
    )
    assert result.data is not None and result.data[0].url is not None
    download = httpx.get(result.data[0].url)
    assert download.headers["content-type"] == "image/svg+xml"
    assert svg_size(download.content) == (1024, 1536)

    icon = client.images.generate(
        model="recraftv2",
        prompt="settings gear",
        style=cast(Any, "icon"),  # typed for DALL·E's styles, but sent as is
        response_format="b64_json",
    )
    assert icon.data is not None and icon.data[0].b64_json is not None
    assert svg_size(base64.b64decode(icon.data[0].b64_json)) == (1024, 1024)


def test_substyle_and_controls_go_through_extra_body(
    fake: FakeRecraft, client: openai.OpenAI
) -> None:
    controls = {
        "colors": [{"rgb": [255, 142, 60]}],
        "background_color": {"rgb": [10, 20, 30]},
        "artistic_level": 3,
        "no_text": True,
    }
    result = client.images.generate(
        model="recraftv3",
        prompt="a fox",
        response_format="b64_json",
        extra_body={"style": "digital_illustration", "substyle": "pixel_art", "controls": controls},
    )
    assert result.data is not None and result.data[0].b64_json is not None
    image = Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json)))
    assert image.getpixel((0, 0)) == (10, 20, 30)
    assert image.getpixel((512, 512)) == (255, 142, 60)
    assert fake.calls[0].fields["controls"] == controls
    assert fake.calls[0].fields["substyle"] == "pixel_art"


def test_the_response_carries_ids_and_credits(fake: FakeRecraft) -> None:
    raw = httpx.post(
        f"{fake.base_url}/v1/images/generations",
        json={"prompt": "a fox", "style": "vector_illustration", "n": 3},
        headers={"Authorization": "Bearer recraft-test"},
    ).json()
    assert raw["credits"] == 240 and isinstance(raw["created"], int)
    assert len({item["image_id"] for item in raw["data"]}) == 3


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"n": 7}, "invalid_n"),
        ({"n": 0}, "invalid_n"),
        ({"size": "1792x1024"}, "invalid_size"),
        ({"extra_body": {"size": [1024, 1024]}}, "invalid_size"),
        ({"extra_body": {"model": ["recraftv3"]}}, "invalid_model"),
        ({"model": "recraftv9"}, "invalid_model"),
        ({"model": "recraftv3", "extra_body": {"style": "icon"}}, "invalid_style"),
        ({"model": "recraftv2", "extra_body": {"style": "logo_raster"}}, "invalid_style"),
        (
            {"extra_body": {"style": "icon", "style_id": "123e4567-e89b-12d3-a456-426614174000"}},
            "invalid_style",
        ),
        ({"extra_body": {"substyle": "pixel_art"}}, "invalid_substyle"),
        ({"model": "recraftv2", "extra_body": {"text_layout": []}}, "invalid_text_layout"),
        ({"extra_body": {"controls": {"colors": [{"rgb": [300, 0, 0]}]}}}, "invalid_controls"),
        ({"quality": "hd"}, "unknown_parameter"),
        ({"prompt": "é" * 501}, "invalid_prompt"),
    ],
)
def test_invalid_requests_are_400_with_code_and_message(
    client: openai.OpenAI, params: dict[str, Any], code: str
) -> None:
    params = {"prompt": "a fox"} | params
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(**params)
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["code"] == code and caught.value.body["message"]
    assert caught.value.code == code  # the SDK reads `code` off Recraft's flat body


def test_a_style_id_stands_for_a_custom_raster_style(client: openai.OpenAI) -> None:
    result = client.images.generate(
        prompt="a fox", extra_body={"style_id": "123e4567-e89b-12d3-a456-426614174000"}
    )
    assert result.data is not None and result.data[0].url is not None


def test_wrong_key_is_a_plain_text_401(fake: FakeRecraft) -> None:
    with (
        client_for(fake, api_key="nope") as sdk,
        pytest.raises(openai.AuthenticationError) as caught,
    ):
        sdk.images.generate(prompt="a fox")
    assert caught.value.body == "request unauthorized"
    missing = httpx.post(f"{fake.base_url}/v1/images/generations", json={"prompt": "a fox"})
    assert missing.status_code == 401 and missing.text == "request unauthorized"


def test_unknown_paths_are_a_plain_text_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.images.edit(image=b"\x89PNG", prompt="a fox")
    assert caught.value.body == "404 page not found"


def test_urls_expire(fake: FakeRecraft, client: openai.OpenAI, clock: FakeClock) -> None:
    result = client.images.generate(prompt="a fox", n=2)
    assert result.data is not None
    first, second = (item.url or "" for item in result.data)
    clock.now += 24 * 3600 - 1
    assert httpx.get(first).status_code == 200
    clock.now += 1
    assert httpx.get(first).status_code == 403
    fake.expire_urls()
    assert httpx.get(second).status_code == 403
    assert fake.downloads_of(first) == 1 and fake.downloads_of(second) == 0


def test_429_in_recraft_shape(fake: FakeRecraft, client: openai.OpenAI) -> None:
    fake.faults.queue("429")
    with pytest.raises(openai.RateLimitError) as caught:
        client.images.generate(prompt="a fox")
    assert caught.value.response.headers["retry-after"] == "0.01"
    assert caught.value.body == {"code": "rate_limit_exceeded", "message": "Rate limit reached"}


def test_5xx_and_malformed(fake: FakeRecraft, client: openai.OpenAI) -> None:
    fake.faults.queue("500", "503", "malformed")
    for status in (500, 503):
        with pytest.raises(openai.InternalServerError) as caught:
            client.images.generate(prompt="a fox")
        assert caught.value.status_code == status
    with pytest.raises(json.JSONDecodeError):
        client.images.generate(prompt="a fox")


async def test_hang_is_cut_by_the_client_timeout(fake: FakeRecraft) -> None:
    fake.faults.queue("hang")
    started = time.monotonic()
    async with openai.AsyncOpenAI(
        api_key="recraft-test", base_url=f"{fake.base_url}/v1", max_retries=0, timeout=0.5
    ) as sdk:
        with pytest.raises(openai.APITimeoutError):
            await sdk.images.generate(prompt="a fox")
        assert time.monotonic() - started < 2
        assert (await sdk.images.generate(prompt="a fox")).data is not None


def test_retries_reach_the_fake_again(fake: FakeRecraft) -> None:
    fake.faults.queue("429")
    with client_for(fake, max_retries=1) as sdk:
        assert sdk.images.generate(prompt="a fox").data is not None
    assert len(fake.calls) == 2


def test_a_fake_serves_itself() -> None:
    fake = FakeRecraft(api_key="other")
    with fake.serve() as url, client_for(fake, api_key="other") as sdk:
        result = sdk.images.generate(prompt="a fox")
        assert result.data is not None and (result.data[0].url or "").startswith(url)
