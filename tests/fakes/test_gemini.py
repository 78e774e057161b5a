"""The Gemini fake, driven through the official google-genai SDK (and raw HTTP where the SDK
cannot go), so that what it accepts and answers matches what the SDK sends and parses."""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import pytest_asyncio
from google import genai
from google.genai import errors, types
from PIL import Image

from fakes.faults import Faults
from fakes.gemini import GEMINI_SIZES, IMAGEN_SIZES, FakeGemini
from fakes.server import serve

KEY = "test-key"
FLASH_IMAGE = "gemini-2.5-flash-image"
IMAGEN = "imagen-3.0-generate-002"
NO_RETRY = types.HttpRetryOptions(attempts=1)

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[FakeGemini, str]]:
    # One server for the module: starting uvicorn per test would cost most of the time budget.
    fake = FakeGemini(api_key=KEY)
    with serve(fake.app) as url:
        yield fake, url


@pytest.fixture(autouse=True)
def fake(served: tuple[FakeGemini, str]) -> FakeGemini:
    """The shared fake, with no calls recorded and no faults queued."""
    served[0].calls.clear()
    served[0].faults = Faults()
    return served[0]


@pytest.fixture
def url(served: tuple[FakeGemini, str]) -> str:
    return served[1]


def make_client(
    url: str,
    *,
    key: str = KEY,
    vertex: bool = False,
    timeout_ms: int = 5000,
    retry: types.HttpRetryOptions = NO_RETRY,
) -> genai.Client:
    """The SDK pointed at the fake: Gemini API mode on v1beta, or Vertex express mode."""
    options = types.HttpOptions(base_url=url, timeout=timeout_ms, retry_options=retry)
    if vertex:
        return genai.Client(vertexai=True, api_key=key, http_options=options)
    options.api_version = "v1beta"
    return genai.Client(api_key=key, http_options=options)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(served: tuple[FakeGemini, str]) -> AsyncIterator[genai.Client]:
    # Shared (so one event loop for the module): building a client costs ~70 ms of TLS setup.
    sdk = make_client(served[1])
    yield sdk
    await sdk.aio.aclose()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def vertex(served: tuple[FakeGemini, str]) -> AsyncIterator[genai.Client]:
    sdk = make_client(served[1], vertex=True)
    yield sdk
    await sdk.aio.aclose()


def image_config(ratio: str) -> types.GenerateContentConfig:
    return types.GenerateContentConfig(
        response_modalities=["TEXT", "IMAGE"],
        image_config=types.ImageConfig(aspect_ratio=ratio),
    )


def png(color: tuple[int, int, int], size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


def output_image(response: types.GenerateContentResponse) -> Image.Image:
    images = [part.inline_data for part in response.parts or [] if part.inline_data]
    assert len(images) == 1 and images[0].data is not None
    assert images[0].mime_type == "image/png"
    return Image.open(io.BytesIO(images[0].data))


# -- generateContent -------------------------------------------------------------------


@pytest.mark.parametrize("ratio", ["1:1", "16:9", "9:16", "21:9", "4:5"])
async def test_text_to_image_has_the_documented_size(
    client: genai.Client, fake: FakeGemini, ratio: str
) -> None:
    response = await client.aio.models.generate_content(
        model=FLASH_IMAGE, contents="a lighthouse at dusk", config=image_config(ratio)
    )

    assert output_image(response).size == GEMINI_SIZES[ratio]
    assert response.text  # the short text part
    assert response.candidates and response.candidates[0].finish_reason == types.FinishReason.STOP
    assert response.model_version == FLASH_IMAGE
    usage = response.usage_metadata
    assert usage and usage.candidates_token_count and usage.prompt_token_count
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count
    (call,) = fake.calls
    assert (call.version, call.model, call.method) == ("v1beta", FLASH_IMAGE, "generateContent")
    assert call.body["generationConfig"]["imageConfig"] == {"aspectRatio": ratio}
    assert call.headers["x-goog-api-key"] == KEY


async def test_images_are_deterministic_per_prompt(client: genai.Client) -> None:
    async def draw(prompt: str) -> bytes:
        response = await client.aio.models.generate_content(model=FLASH_IMAGE, contents=prompt)
        return output_image(response).tobytes()

    assert await draw("a fox") == await draw("a fox")
    assert await draw("a fox") != await draw("a hare")


async def test_image_only_modality_and_preview_alias(client: genai.Client) -> None:
    response = await client.aio.models.generate_content(
        model="gemini-2.5-flash-image-preview",
        contents="a fox",
        config=types.GenerateContentConfig(response_modalities=["IMAGE"]),
    )

    assert response.parts and len(response.parts) == 1
    assert output_image(response).size == (1024, 1024)  # no aspect ratio, no input: square


async def test_sdk_default_api_version_v1_is_served(
    url: str, fake: FakeGemini, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GOOGLE_GENAI_API_VERSION", raising=False)  # would override the default
    sdk = genai.Client(
        api_key=KEY, http_options=types.HttpOptions(base_url=url, retry_options=NO_RETRY)
    )
    try:
        await sdk.aio.models.generate_content(model=FLASH_IMAGE, contents="a fox")
    finally:
        await sdk.aio.aclose()

    assert fake.calls[0].version == "v1"


async def test_edit_derives_the_output_from_the_input_image(
    client: genai.Client, fake: FakeGemini
) -> None:
    async def edit(color: tuple[int, int, int]) -> Image.Image:
        source = types.Part.from_bytes(data=png(color, (300, 200)), mime_type="image/png")
        turn = types.Content(role="user", parts=[source, types.Part.from_text(text="at night")])
        response = await client.aio.models.generate_content(model=FLASH_IMAGE, contents=turn)
        return output_image(response).convert("RGB")

    red, blue = await edit((255, 0, 0)), await edit((0, 0, 255))

    assert red.size == GEMINI_SIZES["3:2"]  # no aspect ratio: follows the input's shape
    # Same prompt, so the same drawing on top: the difference is the input, showing through.
    red_pixel, blue_pixel = red.getpixel((1, 1)), blue.getpixel((1, 1))
    assert isinstance(red_pixel, tuple) and isinstance(blue_pixel, tuple)
    assert red_pixel[0] - blue_pixel[0] >= 120 and blue_pixel[2] - red_pixel[2] >= 120
    part = fake.calls[0].body["contents"][0]["parts"][0]
    # The SDK's own casing: camelCase "inlineData" around a snake_case "mime_type".
    assert part["inlineData"] == {
        "data": len(png((255, 0, 0), (300, 200))),
        "mime_type": "image/png",
    }


async def test_blocked_prompt_has_prompt_feedback_and_no_candidates(client: genai.Client) -> None:
    response = await client.aio.models.generate_content(
        model=FLASH_IMAGE, contents="something forbidden"
    )

    assert not response.candidates
    assert response.prompt_feedback
    assert response.prompt_feedback.block_reason == types.BlockedReason.SAFETY
    assert response.text is None


async def test_filtered_output_has_image_safety_finish_reason(client: genai.Client) -> None:
    response = await client.aio.models.generate_content(
        model=FLASH_IMAGE, contents="an unsafe scene"
    )

    assert response.candidates
    assert response.candidates[0].finish_reason == types.FinishReason.IMAGE_SAFETY
    assert response.candidates[0].content is None


@pytest.mark.parametrize(
    ("config", "field"),
    [
        (image_config("7:3"), "aspect_ratio"),
        (types.GenerateContentConfig(response_modalities=["AUDIO"]), "response_modalities"),
        (types.GenerateContentConfig(candidate_count=2), "candidate_count"),
    ],
)
async def test_invalid_arguments_are_400(
    client: genai.Client, config: types.GenerateContentConfig, field: str
) -> None:
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.models.generate_content(model=FLASH_IMAGE, contents="x", config=config)

    assert (caught.value.code, caught.value.status) == (400, "INVALID_ARGUMENT")
    assert caught.value.message and field in caught.value.message


async def test_undecodable_input_image_is_400(client: genai.Client) -> None:
    junk = types.Part.from_bytes(data=b"not an image", mime_type="image/png")
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.models.generate_content(model=FLASH_IMAGE, contents=junk)

    assert caught.value.code == 400


async def test_unknown_model_is_404(client: genai.Client) -> None:
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.models.generate_content(model="gemini-9-image", contents="x")

    assert (caught.value.code, caught.value.status) == (404, "NOT_FOUND")
    assert caught.value.message and "models/gemini-9-image is not found" in caught.value.message


async def test_wrong_key_is_400_api_key_invalid(url: str) -> None:
    sdk = make_client(url, key="wrong")
    try:
        with pytest.raises(errors.ClientError) as caught:
            await sdk.aio.models.generate_content(model=FLASH_IMAGE, contents="x")
    finally:
        await sdk.aio.aclose()

    assert (caught.value.code, caught.value.status) == (400, "INVALID_ARGUMENT")
    assert caught.value.details["error"]["details"][0]["reason"] == "API_KEY_INVALID"


async def test_key_in_query_works_and_missing_key_is_403(url: str) -> None:
    body = {"contents": [{"parts": [{"text": "a fox"}]}]}
    path = f"{url}/v1beta/models/{FLASH_IMAGE}:generateContent"
    async with httpx.AsyncClient() as http:
        keyed = await http.post(path, params={"key": KEY}, json=body)
        keyless = await http.post(path, json=body)

    assert keyed.status_code == 200
    assert keyless.status_code == 403
    assert keyless.json()["error"]["status"] == "PERMISSION_DENIED"


# -- predict (Imagen) ------------------------------------------------------------------


async def test_generate_images_through_vertex_express_mode(
    vertex: genai.Client, fake: FakeGemini
) -> None:
    response = await vertex.aio.models.generate_images(
        model=IMAGEN,
        prompt="a red bicycle",
        config=types.GenerateImagesConfig(number_of_images=3, aspect_ratio="16:9"),
    )

    assert response.generated_images and len(response.generated_images) == 3
    decoded = []
    for generated in response.generated_images:
        assert generated.image and generated.image.image_bytes
        decoded.append(Image.open(io.BytesIO(generated.image.image_bytes)))
    assert {image.size for image in decoded} == {IMAGEN_SIZES["16:9"]}
    assert len({image.tobytes() for image in decoded}) == 3  # one image per index
    (call,) = fake.calls
    assert (call.version, call.vertex, call.method) == ("v1beta1", True, "predict")
    assert call.body == {
        "instances": [{"prompt": "a red bicycle"}],
        "parameters": {"sampleCount": 3, "aspectRatio": "16:9"},
    }


async def test_filtered_images_are_dropped_with_a_rai_reason(vertex: genai.Client) -> None:
    config = types.GenerateImagesConfig(
        number_of_images=4, include_rai_reason=True, output_mime_type="image/jpeg"
    )
    partly = await vertex.aio.models.generate_images(model=IMAGEN, prompt="unsafe", config=config)
    wholly = await vertex.aio.models.generate_images(
        model=IMAGEN, prompt="forbidden", config=config
    )

    assert partly.generated_images
    kept = [image for image in partly.generated_images if image.image and image.image.image_bytes]
    assert len(kept) == 2 and kept[0].image and kept[0].image.mime_type == "image/jpeg"
    assert partly.generated_images[-1].rai_filtered_reason
    assert wholly.generated_images and len(wholly.generated_images) == 1
    assert wholly.generated_images[0].rai_filtered_reason


async def test_safety_attributes_and_person_generation(vertex: genai.Client) -> None:
    config = types.GenerateImagesConfig(
        number_of_images=2,
        include_safety_attributes=True,
        person_generation=types.PersonGeneration.ALLOW_ADULT,
    )
    response = await vertex.aio.models.generate_images(
        model=IMAGEN, prompt="a crowd", config=config
    )

    assert response.generated_images and len(response.generated_images) == 2
    assert response.positive_prompt_safety_attributes
    assert response.positive_prompt_safety_attributes.content_type == "Positive Prompt"


@pytest.mark.parametrize(
    ("config", "field"),
    [
        (types.GenerateImagesConfig(number_of_images=5), "sampleCount"),
        (types.GenerateImagesConfig(aspect_ratio="3:2"), "aspectRatio"),
        (types.GenerateImagesConfig(image_size="2K"), "sampleImageSize"),  # not on Imagen 3
    ],
)
async def test_invalid_imagen_arguments_are_400(
    vertex: genai.Client, config: types.GenerateImagesConfig, field: str
) -> None:
    with pytest.raises(errors.ClientError) as caught:
        await vertex.aio.models.generate_images(model=IMAGEN, prompt="x", config=config)

    assert caught.value.code == 400 and caught.value.message and field in caught.value.message


async def test_sdk_refuses_imagen_in_gemini_api_mode(client: genai.Client) -> None:
    # google-genai 3.x only calls :predict in Vertex mode; the REST endpoint still exists.
    with pytest.raises(ValueError, match="only supported in Gemini Enterprise"):
        await client.aio.models.generate_images(model=IMAGEN, prompt="x")


async def test_imagen_over_raw_rest_on_the_gemini_api_path(url: str) -> None:
    path = f"{url}/v1beta/models/imagen-4.0-generate-001:predict"
    headers = {"x-goog-api-key": KEY}
    body = {"instances": [{"prompt": "a kite"}], "parameters": {"sampleCount": 1}}
    async with httpx.AsyncClient() as http:
        ok = await http.post(path, headers=headers, json=body)
        negative = {**body, "parameters": {"negativePrompt": "clouds"}}
        rejected = await http.post(path, headers=headers, json=negative)

    (prediction,) = ok.json()["predictions"]
    image = Image.open(io.BytesIO(base64.b64decode(prediction["bytesBase64Encoded"])))
    assert (image.size, prediction["mimeType"]) == ((1024, 1024), "image/png")
    assert rejected.status_code == 400 and "negativePrompt" in rejected.json()["error"]["message"]


# -- faults ----------------------------------------------------------------------------


async def test_429_is_a_client_error_with_retry_hints(
    client: genai.Client, fake: FakeGemini
) -> None:
    fake.faults.queue("429")
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.models.generate_content(model=FLASH_IMAGE, contents="x")

    assert (caught.value.code, caught.value.status) == (429, "RESOURCE_EXHAUSTED")
    # The SDK does not read either hint itself; a caller can, from the raw aiohttp response.
    assert caught.value.response.headers["Retry-After"] == "1"
    retry_info = caught.value.details["error"]["details"][-1]
    assert retry_info["retryDelay"] == "1s"


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_is_a_server_error(vertex: genai.Client, fake: FakeGemini, status: int) -> None:
    fake.faults.queue(str(status))
    with pytest.raises(errors.ServerError) as caught:
        await vertex.aio.models.generate_images(model=IMAGEN, prompt="x")

    assert caught.value.code == status
    assert fake.faults.log == [("predict", str(status))]


async def test_malformed_body_raises_a_json_error(client: genai.Client, fake: FakeGemini) -> None:
    fake.faults.queue("malformed")
    with pytest.raises(json.JSONDecodeError):
        await client.aio.models.generate_content(model=FLASH_IMAGE, contents="x")


async def test_hang_is_cut_by_the_client_timeout(url: str, fake: FakeGemini) -> None:
    fake.faults.queue("hang")
    sdk = make_client(url, timeout_ms=500)
    started = time.monotonic()
    try:
        with pytest.raises(TimeoutError):
            await sdk.aio.models.generate_content(model=FLASH_IMAGE, contents="x")
    finally:
        await sdk.aio.aclose()

    assert time.monotonic() - started < 2
    assert fake.calls[0].headers["x-server-timeout"] == "1"  # the SDK rounds up to seconds


async def test_sdk_retries_only_when_retry_options_allow(url: str, fake: FakeGemini) -> None:
    quick = types.HttpRetryOptions(attempts=2, initial_delay=0.01, max_delay=0.01, jitter=0)
    sdk = make_client(url, retry=quick)
    fake.faults.queue("503")
    try:
        response = await sdk.aio.models.generate_content(model=FLASH_IMAGE, contents="x")
    finally:
        await sdk.aio.aclose()

    assert output_image(response)
    assert [fault for _, fault in fake.faults.log] == ["503", "ok"]
    assert len(fake.calls) == 2
