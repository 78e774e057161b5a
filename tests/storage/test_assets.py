"""Storing provider outputs: bytes or URLs, downloads with retries, exact sizes, PNG params."""

from __future__ import annotations

import io
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import httpx
import pytest
from PIL import Image

from imagemill.domain import Asset, Output, Task, TaskKind
from imagemill.errors import InvalidInput, ProviderError, ProviderUnavailable
from imagemill.specs import Pricing
from imagemill.storage import images
from imagemill.storage.assets import AssetWriter
from imagemill.storage.blobs import BlobStore, sha256_hex
from imagemill.storage.images import png_params, probe

URL = "https://provider.example/outputs/abc.png"


def _image(width: int, height: int, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 120, 240)).save(buffer, format=fmt)
    return buffer.getvalue()


def _task(width: int = 64, height: int = 64, kind: TaskKind = TaskKind.IMAGE) -> Task:
    return Task(
        job_id="job_1",
        kind=kind,
        model="m",
        prompt="a blue square",
        negative_prompt=None,
        n=1,
        width=width,
        height=height,
        seed=9,
        params={"quality": "high"},
    )


Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def blobs() -> BlobStore:
    return BlobStore.from_url("memory://")


@pytest.fixture
async def make_writer(blobs: BlobStore) -> AsyncIterator[Callable[..., AssetWriter]]:
    clients: list[httpx.AsyncClient] = []

    def make(
        handler: Handler, max_bytes: int = 10_000_000, max_pixels: int = 50_000_000
    ) -> AssetWriter:
        client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        clients.append(client)
        return AssetWriter(blobs, client, max_bytes, max_pixels)

    yield make
    for client in clients:
        await client.aclose()


def _unreachable(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"no download expected, got {request.url}")


async def test_store_bytes_at_the_requested_size(
    make_writer: Callable[..., AssetWriter], blobs: BlobStore
) -> None:
    writer = make_writer(_unreachable)
    data = _image(64, 64)

    stored = await writer.store(
        Output(data=data, seed=9, cost_usd=0.04),
        _task(),
        model_id="p/m",
        pricing=Pricing(per_image=1.0),
    )

    saved = await blobs.get(stored.storage_key)
    assert stored.sha256 == sha256_hex(saved)
    assert stored.byte_size == len(saved)
    assert (stored.content_type, stored.width, stored.height) == ("image/png", 64, 64)
    assert (stored.requested_width, stored.requested_height) == (64, 64)
    assert (stored.model, stored.fallback, stored.seed, stored.cost_usd) == ("p/m", False, 9, 0.04)
    assert png_params(saved) == {
        "model": "p/m",
        "kind": "image",
        "prompt": "a blue square",
        "negative_prompt": None,
        "size": "64x64",
        "seed": 9,
        "params": {"quality": "high"},
    }


async def test_the_price_table_decides_when_the_provider_reports_no_cost(
    make_writer: Callable[..., AssetWriter],
) -> None:
    stored = await make_writer(_unreachable).store(
        Output(data=_image(64, 64)),
        _task(),
        model_id="p/m",
        fallback_reason="p/first failed",
        pricing=Pricing(per_image=0.25),
    )
    assert (stored.cost_usd, stored.fallback) == (0.25, True)


async def test_the_operators_price_wins_over_the_providers_reported_cost(
    make_writer: Callable[..., AssetWriter],
) -> None:
    async def cost(pricing: Pricing) -> float:
        output = Output(data=_image(64, 64), cost_usd=0.0423)  # from its token usage, say
        stored = await make_writer(_unreachable).store(
            output, _task(), model_id="p/m", pricing=pricing
        )
        return stored.cost_usd

    assert await cost(Pricing(per_image=0.04)) == 0.0423  # the built-in table: reported wins
    assert await cost(Pricing(per_image=0.04, configured=True)) == 0.04  # IMAGEMILL_PRICES


async def test_the_price_is_that_of_the_made_size_and_quality(
    make_writer: Callable[..., AssetWriter],
) -> None:
    pricing = Pricing(
        per_image=0.04, by_size={"64x64": 0.05}, by_quality={"hd": {"64x64": 0.08, "*": 0.12}}
    )

    async def store(quality: str | None, made: int) -> float:
        output = Output(data=_image(made, made), quality=quality)
        stored = await make_writer(_unreachable).store(
            output, _task(32, 32), model_id="p/m", pricing=pricing
        )
        return stored.cost_usd

    assert await store(None, 64) == 0.05  # billed at what the model made, not at 32x32
    assert await store("hd", 64) == 0.08
    assert await store("hd", 48) == 0.12
    assert await store("standard", 48) == 0.04


async def test_an_output_of_another_size_is_fitted_to_the_request(
    make_writer: Callable[..., AssetWriter], blobs: BlobStore
) -> None:
    stored = await make_writer(_unreachable).store(
        Output(data=_image(1024, 1024, "JPEG")),
        _task(1920, 1080),
        model_id="p/m",
        pricing=Pricing(per_image=0.0),
    )

    saved = await blobs.get(stored.storage_key)
    info = probe(saved)
    assert (info.content_type, info.width, info.height) == ("image/png", 1920, 1080)
    assert (stored.width, stored.height) == (1920, 1080)
    assert (stored.requested_width, stored.requested_height) == (1920, 1080)
    assert png_params(saved) is not None


async def test_an_upscale_keeps_the_providers_size(
    make_writer: Callable[..., AssetWriter],
) -> None:
    stored = await make_writer(_unreachable).store(
        Output(data=_image(128, 128, "WEBP")),
        _task(64, 64, TaskKind.UPSCALE),
        model_id="p/m",
        pricing=Pricing(per_image=0.0),
    )
    assert (stored.content_type, stored.width, stored.height) == ("image/webp", 128, 128)
    assert (stored.requested_width, stored.requested_height) == (64, 64)


async def test_identical_outputs_share_one_blob(
    make_writer: Callable[..., AssetWriter],
) -> None:
    writer = make_writer(_unreachable)
    data = _image(64, 64)
    first = await writer.store(
        Output(data=data, seed=9),
        _task(),
        model_id="p/m",
        pricing=Pricing(per_image=0),
    )
    second = await writer.store(
        Output(data=data, seed=9),
        _task(),
        model_id="p/m",
        pricing=Pricing(per_image=0),
    )
    assert (first.sha256, first.storage_key) == (second.sha256, second.storage_key)


async def test_a_url_output_is_downloaded(make_writer: Callable[..., AssetWriter]) -> None:
    data = _image(64, 64)
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, content=data, headers={"content-type": "image/png"})

    stored = await make_writer(handler).store(
        Output(url=URL), _task(), model_id="p/m", pricing=Pricing(per_image=0.0)
    )
    assert seen == [URL]
    assert (stored.width, stored.height) == (64, 64)


async def test_a_download_is_retried_after_a_server_error(
    make_writer: Callable[..., AssetWriter],
) -> None:
    data = _image(64, 64)
    answers = iter([httpx.Response(503), httpx.Response(200, content=data)])
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return next(answers)

    assert await make_writer(handler).download(URL) == data
    assert calls == 2


async def test_a_refused_download_fails_for_good_at_once(
    make_writer: Callable[..., AssetWriter],
) -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(403, text="Request has expired")

    with pytest.raises(ProviderError) as raised:
        await make_writer(handler).download(URL)
    assert raised.value.retryable is False
    assert "403" in raised.value.message
    assert calls == 1


async def test_a_download_that_keeps_failing_is_retryable_and_does_not_linger(
    make_writer: Callable[..., AssetWriter],
) -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(500)

    started = time.monotonic()
    with pytest.raises(ProviderError) as raised:
        await make_writer(handler).download(URL)
    elapsed = time.monotonic() - started

    assert raised.value.retryable is True
    assert calls == 3
    # Backoff sleeps come between attempts (0.5 s + 1 s), not after the last one.
    assert elapsed < 2.5


async def test_a_download_that_cannot_connect_is_provider_unavailable(
    make_writer: Callable[..., AssetWriter],
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(ProviderUnavailable):
        await make_writer(handler).download(URL)


async def test_an_oversized_download_is_rejected(make_writer: Callable[..., AssetWriter]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"x" * 2048)

    with pytest.raises(InvalidInput):
        await make_writer(handler, max_bytes=1024).download(URL)


async def test_an_output_with_neither_bytes_nor_url_is_a_provider_error(
    make_writer: Callable[..., AssetWriter],
) -> None:
    with pytest.raises(ProviderError):
        await make_writer(_unreachable).store(
            Output(), _task(), model_id="p/m", pricing=Pricing(per_image=0)
        )


async def test_the_upload_pixel_limit_does_not_apply_to_what_a_model_made(
    make_writer: Callable[..., AssetWriter],
) -> None:
    """The limit guards against untrusted uploads; a model's own (large) result is stored."""
    stored = await make_writer(_unreachable, max_pixels=1000).store(
        Output(data=_image(64, 64)),
        _task(kind=TaskKind.UPSCALE),
        model_id="p/m",
        pricing=Pricing(per_image=0),
    )
    assert (stored.width, stored.height) == (64, 64)


async def test_not_an_image_fails_for_good_in_plain_words(
    make_writer: Callable[..., AssetWriter],
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"<html>login</html>")

    with pytest.raises(ProviderError) as raised:
        await make_writer(handler).store(
            Output(url=URL), _task(), model_id="p/m", pricing=Pricing(per_image=0)
        )
    assert raised.value.retryable is False
    assert "not an image" in raised.value.message
    assert " at 0x" not in raised.value.message and "<" not in raised.value.message


@pytest.mark.parametrize("url", ["ftp://provider.example/x.png", "http:///x.png", "data:,x"])
async def test_an_output_url_that_cannot_be_fetched_fails_for_good(
    blobs: BlobStore, url: str
) -> None:
    async with httpx.AsyncClient() as http:  # refuses these before any connection
        writer = AssetWriter(blobs, http, 10_000_000, 50_000_000)
        with pytest.raises(ProviderError) as raised:
            await writer.store(Output(url=url), _task(), model_id="p/m", pricing=Pricing())
    assert raised.value.retryable is False


async def test_a_request_that_read_its_asset_before_the_thumbnail_was_recorded_reuses_it(
    make_writer: Callable[..., AssetWriter], blobs: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under load a request may read the asset row (no thumbnail yet), then reach the
    writer only after another request made the thumbnail and finished: it takes that
    one instead of decoding the image again."""
    writer = make_writer(_unreachable)
    data = _image(300, 200)
    sha256, key = await blobs.put_content(data)
    stale = Asset(
        id="ast_1",
        owner_id="own_1",
        sha256=sha256,
        content_type="image/png",
        width=300,
        height=200,
        byte_size=len(data),
        storage_key=key,
        thumbnail_key=None,
        created_at=datetime.now(UTC),
    )
    made: list[int] = []
    real = images.thumbnail

    def counted(source: bytes, side: int = images.THUMBNAIL_SIDE, *, blur: bool = False) -> bytes:
        made.append(len(source))
        return real(source, side, blur=blur)

    monkeypatch.setattr(images, "thumbnail", counted)
    first, recorded = await writer.thumbnail(stale)
    again, to_record = await writer.thumbnail(stale)  # the same stale row, later

    assert made == [len(data)] and again == first
    assert recorded is not None and to_record is None


async def test_a_download_larger_than_the_limit_by_its_length_is_refused_unread(
    make_writer: Callable[..., AssetWriter],
) -> None:
    """``Content-Length`` says it is too large: refused before its body is read, and
    before any of the response budget is taken for it."""
    held: list[int] = []

    async def hold_memory(nbytes: int) -> None:
        held.append(nbytes)

    class Endless(httpx.AsyncByteStream):
        read = False

        async def __aiter__(self) -> AsyncIterator[bytes]:
            Endless.read = True
            yield b"x" * 1000

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-length": "5000"}, stream=Endless())

    with pytest.raises(InvalidInput, match="larger than 1000 bytes"):
        await make_writer(handler, max_bytes=1000).download(URL, hold_memory)
    assert not Endless.read and held == []


async def test_a_download_without_a_length_is_refused_once_its_bytes_pass_the_limit(
    make_writer: Callable[..., AssetWriter],
) -> None:
    """A chunked answer that goes on: read no further than the limit allows."""
    chunks_read = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal chunks_read
        while True:
            chunks_read += 1
            yield b"x" * 400

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=endless())

    with pytest.raises(InvalidInput, match="larger than 1000 bytes"):
        await make_writer(handler, max_bytes=1000).download(URL)
    assert chunks_read == 3


async def test_a_download_counts_its_length_against_the_response_budget_first(
    make_writer: Callable[..., AssetWriter],
) -> None:
    data = _image(64, 64)
    events: list[str] = []

    async def hold_memory(nbytes: int) -> None:
        events.append(f"hold {nbytes}")

    async def body() -> AsyncIterator[bytes]:
        events.append("read")
        yield data

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-length": str(len(data))}, content=body())

    assert await make_writer(handler).download(URL, hold_memory) == data
    assert events == [f"hold {len(data)}", "read"]


async def test_a_download_retried_after_a_broken_read_counts_its_bytes_once(
    make_writer: Callable[..., AssetWriter],
) -> None:
    data = _image(64, 64)
    held: list[int] = []

    async def hold_memory(nbytes: int) -> None:
        held.append(nbytes)

    async def broken() -> AsyncIterator[bytes]:
        yield data[:100]
        raise httpx.ReadError("connection reset")

    async def whole() -> AsyncIterator[bytes]:
        yield data

    answers = iter([broken(), whole()])

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, headers={"content-length": str(len(data))}, content=next(answers)
        )

    assert await make_writer(handler).download(URL, hold_memory) == data
    assert sum(held) == len(data)
