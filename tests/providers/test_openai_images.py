"""The OpenAI adapter against the OpenAI fake, through the official SDK: gpt-image-1
(bytes, token-priced) and DALL·E 3 (expiring URLs, one call per image), edits with a
mask, exact sizes, refusals, faults, and the OpenAI-compatible edits endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
from collections.abc import AsyncIterator, Iterator

import httpx
import openai
import pytest
from PIL import Image

from fakes.faults import Faults
from fakes.openai_images import FakeOpenAI, Plug
from fakes.server import serve
from imagemill.api.app import create_app
from imagemill.config import Settings
from imagemill.domain import JobStatus, Task, TaskKind
from imagemill.errors import InvalidInput, ProviderError, ProviderTimeout, ProviderUnavailable
from imagemill.jobs.service import utcnow
from imagemill.providers.openai_images import OpenAIImages
from imagemill.runtime import Runtime
from providers.running import ProviderRuntime, Recorded, run, run_holding, submit, succeeded

KEY = "sk-test-3b9d1f0a77"


@pytest.fixture(scope="module")
def socket() -> Iterator[tuple[Plug, str]]:
    plug = Plug()
    with serve(plug) as url:
        yield plug, url


@pytest.fixture
def fake(socket: tuple[Plug, str]) -> FakeOpenAI:
    fake = FakeOpenAI(api_key=KEY, faults=Faults(retry_after=0.01))
    fake.plug_into(*socket)
    return fake


@pytest.fixture
async def openai_runtime(
    provider_runtime: ProviderRuntime, socket: tuple[Plug, str], fake: FakeOpenAI
) -> Runtime:
    return await provider_runtime(openai_api_key=KEY, openai_base_url=f"{socket[1]}/v1")


async def _image(runtime: Runtime, asset_id: str) -> Image.Image:
    asset = await runtime.repo.get_asset(asset_id)
    image = Image.open(io.BytesIO(await runtime.blobs.get(asset.storage_key)))
    image.load()
    return image


async def test_gpt_image_1_at_an_exact_size_priced_by_its_tokens(
    openai_runtime: Runtime, fake: FakeOpenAI
) -> None:
    job = succeeded(
        await run(
            openai_runtime,
            model="openai/gpt-image-1",
            prompt="a poster of a red fox",
            n=2,
            size="1920x1080",
            params={"quality": "low"},
        )
    )

    assert len(job.outputs) == 2
    for output in job.outputs:
        assert (output.generated_width, output.generated_height) == (1536, 1024)
        assert (await _image(openai_runtime, output.asset_id)).size == (1920, 1080)
        assert 0 < output.cost_usd < 0.25
    [call] = fake.calls
    assert call.fields["size"] == "1536x1024" and call.fields["quality"] == "low"
    assert call.idempotency_key == job.id


async def test_dall_e_3_urls_are_stored_before_they_expire(
    openai_runtime: Runtime, fake: FakeOpenAI
) -> None:
    job = succeeded(
        await run(
            openai_runtime,
            model="openai/dall-e-3",
            prompt="a lighthouse",
            n=2,
            size="1792x1024",
            params={"quality": "hd", "style": "natural"},
        )
    )
    fake.expire_urls()

    assert [c.fields["n"] for c in fake.calls] == [1, 1]  # one image per call
    assert len({c.idempotency_key for c in fake.calls}) == 2
    assert sum(fake.downloads.values()) == 2 and set(fake.downloads.values()) == {1}
    for output in job.outputs:
        assert (await _image(openai_runtime, output.asset_id)).size == (1792, 1024)
        assert output.revised_prompt
        assert output.cost_usd == pytest.approx(0.12)  # hd, wide
    assert job.cost_usd == pytest.approx(0.24)


async def test_an_edit_sends_the_images_and_the_mask(
    openai_runtime: Runtime, fake: FakeOpenAI
) -> None:
    source = succeeded(
        await run(openai_runtime, model="placeholder", prompt="a room", size="1024x1024")
    )
    mask = Image.new("RGBA", (1024, 1024), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (256, 256, 768, 768))
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    mask_asset = await openai_runtime.repo.add_asset(
        (await openai_runtime.local_owner()).id,
        await openai_runtime.assets.ingest(buffer.getvalue()),
        source.created_at,
    )

    job = succeeded(
        await run(
            openai_runtime,
            kind="edit",
            model="openai/gpt-image-1",
            prompt="add a window",
            input_assets=[source.outputs[0].asset_id],
            mask=mask_asset.id,
            size="1024x1024",
        )
    )

    assert job.outputs[0].width == 1024
    [call] = fake.calls
    assert call.endpoint.endswith("edits")
    images = [f for key in ("image", "image[]") for f in call.files.get(key, [])]
    assert [f.content_type for f in images] == ["image/png"]
    assert [f.content_type for f in call.files["mask"]] == ["image/png"]


@pytest.mark.parametrize("model", ["openai/gpt-image-1", "openai/dall-e-3"])
async def test_a_refused_prompt_is_content_rejected_at_once(
    openai_runtime: Runtime, model: str
) -> None:
    job = await run(openai_runtime, model=model, prompt="something forbidden")
    assert job.status is JobStatus.FAILED and job.error is not None
    assert (job.error.code, job.attempt) == ("content_rejected", 1)


@pytest.mark.parametrize(
    ("fault", "code"),
    [("500", "provider_error"), ("429", "rate_limited"), ("malformed", "provider_error")],
)
async def test_a_transient_fault_is_retried_to_success(
    openai_runtime: Runtime, fake: FakeOpenAI, fault: str, code: str
) -> None:
    fake.faults.queue(fault)

    job = succeeded(await run(openai_runtime, model="openai/gpt-image-1", prompt="retry"))

    errors = [e for e in await openai_runtime.repo.events_after(job.id, 0) if e["type"] == "error"]
    assert [e["data"]["code"] for e in errors] == [code]
    assert job.attempt == 2


async def test_a_hang_is_cut_by_the_provider_timeout(
    provider_runtime: ProviderRuntime, socket: tuple[Plug, str], fake: FakeOpenAI
) -> None:
    runtime = await provider_runtime(
        openai_api_key=KEY, openai_base_url=f"{socket[1]}/v1", provider_timeout_seconds=0.3
    )
    fake.faults.queue("hang")

    job = succeeded(await run(runtime, model="openai/gpt-image-1", prompt="slow"))

    errors = [e for e in await runtime.repo.events_after(job.id, 0) if e["type"] == "error"]
    assert [e["data"]["code"] for e in errors] == ["provider_timeout"]


async def test_a_wrong_key_fails_at_once_without_showing_it(
    provider_runtime: ProviderRuntime, socket: tuple[Plug, str], fake: FakeOpenAI
) -> None:
    wrong = "sk-wrong-0123456789abcdef"
    runtime = await provider_runtime(openai_api_key=wrong, openai_base_url=f"{socket[1]}/v1")

    job = await run(runtime, model="openai/dall-e-3", prompt="x")

    assert job.status is JobStatus.FAILED and job.error is not None
    assert (job.error.code, job.attempt) == ("provider_auth", 1)
    assert wrong not in job.error.message


async def test_params_failing_the_schema_reach_no_provider(
    openai_runtime: Runtime, fake: FakeOpenAI
) -> None:
    for model, params, field in (
        ("openai/gpt-image-1", {"quality": "ultra"}, "params.quality"),
        ("openai/dall-e-3", {"style": "noir"}, "params.style"),
        ("openai/dall-e-3", {"background": "transparent"}, "params.background"),
    ):
        with pytest.raises(InvalidInput) as refused:
            await submit(openai_runtime, model=model, prompt="x", params=params)
        assert refused.value.field == field
    assert fake.calls == []


# -- the OpenAI-compatible edits endpoint, driven by the official SDK -----------------------


@pytest.fixture
async def sdk(openai_runtime: Runtime) -> AsyncIterator[openai.AsyncOpenAI]:
    openai_runtime.run_workers = True
    app = create_app(runtime=openai_runtime)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://im") as http,
    ):
        yield openai.AsyncOpenAI(api_key="unused", base_url="http://im/v1", http_client=http)


async def test_the_sdk_edits_through_imagemill(sdk: openai.AsyncOpenAI, fake: FakeOpenAI) -> None:
    picture = io.BytesIO()
    Image.new("RGB", (512, 512), (20, 120, 200)).save(picture, format="PNG")

    response = await sdk.images.edit(
        model="openai/gpt-image-1",
        image=("in.png", picture.getvalue(), "image/png"),
        prompt="make it sunset orange",
        size="1024x1024",
        n=1,
    )

    [item] = response.data or []
    assert item.b64_json
    [call] = fake.calls
    assert call.endpoint.endswith("edits") and call.fields["prompt"] == "make it sunset orange"


async def test_the_sdk_gets_a_400_naming_the_field_for_a_bad_edit(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        await sdk.images.edit(
            model="openai/gpt-image-1",
            image=("in.png", b"not an image", "image/png"),
            prompt="x",
        )
    assert refused.value.body is not None


# -- masks: one convention at imagemill's API, OpenAI's at OpenAI ---------------------------------


def _png_of(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


GREEN = (20, 160, 60)


def _half_white_mask(width: int, height: int) -> bytes:
    """imagemill's convention: white (the left half) repaints, black keeps."""
    mask = Image.new("L", (width, height), 0)
    mask.paste(255, (0, 0, width // 2, height))
    return _png_of(mask)


async def _green_and_mask(runtime: Runtime, mask: bytes) -> dict[str, object]:
    """An edit of a green 256x256 picture with ``mask``, as submit fields."""
    owner = (await runtime.local_owner()).id
    picture = _png_of(Image.new("RGB", (256, 256), GREEN))
    image = await runtime.repo.add_asset(owner, await runtime.assets.ingest(picture), utcnow())
    masked = await runtime.repo.add_asset(owner, await runtime.assets.ingest(mask), utcnow())
    return {
        "kind": "edit",
        "model": "openai/gpt-image-1",
        "prompt": "repaint the left",
        "input_assets": [image.id],
        "mask": masked.id,
        "size": "1024x1024",
    }


async def _edit_with_mask(runtime: Runtime, mask: bytes) -> Image.Image:
    job = succeeded(await run(runtime, **await _green_and_mask(runtime, mask)))
    return (await _image(runtime, job.outputs[0].asset_id)).convert("RGB")


@pytest.mark.parametrize("mask_side", [256, 128])
async def test_a_white_repaints_mask_reaches_openai_as_transparency(
    openai_runtime: Runtime, fake: FakeOpenAI, mask_side: int
) -> None:
    """A greyscale mask went to gpt-image-1 byte for byte (OpenAI wants transparency), and
    a 128x128 mask for a 256x256 image failed only after the paid call."""
    result = await _edit_with_mask(openai_runtime, _half_white_mask(mask_side, mask_side))

    [call] = fake.calls
    [mask_file] = call.files["mask"]
    assert mask_file.content_type == "image/png"
    left, right = result.getpixel((100, 512)), result.getpixel((924, 512))
    assert right == pytest.approx(GREEN, abs=8), "the black half is kept"
    assert left != pytest.approx(GREEN, abs=8), "the white half is repainted"


async def test_an_openai_style_mask_means_the_same(
    openai_runtime: Runtime, fake: FakeOpenAI
) -> None:
    mask = Image.new("RGBA", (256, 256), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, 128, 256))  # transparent: repaint the left half
    result = await _edit_with_mask(openai_runtime, _png_of(mask))
    assert result.getpixel((924, 512)) == pytest.approx(GREEN, abs=8)
    assert result.getpixel((100, 512)) != pytest.approx(GREEN, abs=8)


async def test_a_mask_of_another_shape_is_refused_before_any_call(
    openai_runtime: Runtime, fake: FakeOpenAI
) -> None:
    fields = await _green_and_mask(openai_runtime, _half_white_mask(128, 64))
    with pytest.raises(InvalidInput) as refused:
        await submit(openai_runtime, **fields)
    assert refused.value.field == "mask"
    assert fake.calls == []


async def test_an_empty_mask_is_no_such_asset_not_no_mask(
    openai_runtime: Runtime, fake: FakeOpenAI
) -> None:
    """``"mask": ""`` was taken as no mask, and the request recorded with ``mask: ''``."""
    fields = await _green_and_mask(openai_runtime, _half_white_mask(256, 256))
    with pytest.raises(InvalidInput) as refused:
        await submit(openai_runtime, **{**fields, "mask": ""})
    assert refused.value.field == "mask"
    assert fake.calls == []


async def test_the_edits_endpoint_takes_a_smaller_mask_and_refuses_unknown_fields(
    sdk: openai.AsyncOpenAI, fake: FakeOpenAI
) -> None:
    """Through /v1/images/edits: a 128x128 mask for a 256x256 image was a 502 after the
    paid call; now it is resized. A field OpenAI does not define is a 400 naming it."""
    picture = _png_of(Image.new("RGB", (256, 256), GREEN))
    mask = _png_of(Image.new("RGBA", (128, 128), (0, 0, 0, 0)))

    response = await sdk.images.edit(
        model="openai/gpt-image-1",
        image=("in.png", picture, "image/png"),
        mask=("mask.png", mask, "image/png"),
        prompt="repaint it all",
        size="1024x1024",
    )
    assert response.data and response.data[0].b64_json
    with pytest.raises(openai.BadRequestError) as refused:
        await sdk.images.edit(
            model="openai/gpt-image-1",
            image=("in.png", picture, "image/png"),
            prompt="x",
            extra_body={"strength": "0.5"},
        )
    assert refused.value.param == "strength"
    assert len(fake.calls) == 1


async def test_each_answer_counts_against_the_response_budget_before_it_is_read(
    openai_runtime: Runtime, fake: FakeOpenAI
) -> None:
    """gpt-image-1's one body with both images; DALL·E 3's two bodies of URLs and the two
    downloads: each counted by its length (``memory.py``), all given back once stored."""
    _, [body] = await run_holding(openai_runtime, model="openai/gpt-image-1", prompt="a", n=2)
    assert body > 2 * 1024  # two images' base64 in one JSON body

    job, held = await run_holding(openai_runtime, model="openai/dall-e-3", prompt="a", n=2)
    assert len(held) == 4
    sizes = [(await openai_runtime.repo.get_asset(o.asset_id)).byte_size for o in job.outputs]
    bodies, downloads = sorted(held)[:2], sorted(held)[2:]
    assert max(bodies) < 1024  # JSON naming a URL
    for download, stored in zip(downloads, sorted(sizes), strict=True):
        assert 0.9 * stored < download < stored  # its image (stored with its params chunk)


@contextlib.asynccontextmanager
async def _cut_short(stall: bool) -> AsyncIterator[str]:
    """An upstream that answers 200 with a Content-Length of 1000 and sends 10 bytes of
    it, then hangs up (or stalls): a network fault in the middle of the body."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"(?i)content-length: *(\d+)", head)
        await reader.readexactly(int(length.group(1)) if length else 0)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n")
        writer.write(b'content-length: 1000\r\n\r\n{"data": [')
        await writer.drain()
        if stall:
            await asyncio.sleep(5)
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.close()


@pytest.mark.parametrize(
    ("stall", "error"), [(False, ProviderUnavailable), (True, ProviderTimeout)]
)
async def test_a_body_cut_short_is_the_providers_fault_not_a_crash(
    stall: bool, error: type[ProviderError]
) -> None:
    """The body is read after the SDK returned (within the response budget): a fault
    then is still translated, retryable, as one inside the SDK would be."""
    async with _cut_short(stall) as url:
        provider = OpenAIImages(
            Settings(openai_api_key=KEY, openai_base_url=url, provider_timeout_seconds=0.3)
        )
        task = Task(
            job_id="job_1",
            kind=TaskKind.IMAGE,
            model="gpt-image-1",
            prompt="a fox",
            negative_prompt=None,
            n=1,
            width=1024,
            height=1024,
            seed=None,
            params={},
        )
        try:
            with pytest.raises(error) as raised:
                await provider.run(task, Recorded().context())
        finally:
            await provider.aclose()
    assert raised.value.retryable
