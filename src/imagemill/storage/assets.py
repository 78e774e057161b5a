"""Turning bytes into stored assets: a provider's output (fetch, fit, annotate, hash,
put), an upload (checked at the door, with its thumbnail), and thumbnails made later.

Every decode here holds a share of ``decode_slots`` for its pixels, and every download
of an output counts its bytes against the attempt's response budget before it is read
(``imagemill.memory``), so however many jobs and uploads arrive together, the memory
they take is bounded. A download larger than ``max_bytes`` is refused from its
``Content-Length``, or as soon as its bytes pass it, never read whole first.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from imagemill.boundary import quoted, storable_text
from imagemill.db.records import StoredBlob, StoredOutput
from imagemill.domain import Asset, Output, Size, Task, TaskKind
from imagemill.errors import InvalidInput, NotFound, ProviderError, ProviderUnavailable, describe
from imagemill.memory import HoldMemory, WeightedSemaphore, expected_bytes, unbounded
from imagemill.safety import SafetyCheck
from imagemill.specs import Pricing
from imagemill.storage import images
from imagemill.storage.blobs import BlobStore
from imagemill.storage.handoff import Handoff
from imagemill.writing import TEXT_CONTENT_TYPE

DOWNLOAD_ATTEMPTS = 3
DOWNLOAD_BACKOFF_SECONDS = 0.5
DECODE_BUDGET_PIXELS = 64_000_000  # about 250 MB of pixels being decoded at once, at most
THUMBNAILED = ("image/png", "image/jpeg", "image/webp", "image/gif")
MAX_TEXT_CHARS = 32_000  # of one text output, as of a prompt
RECENT_THUMBNAILS = 1024  # thumbnails made lately, remembered by asset id


class AssetWriter:
    def __init__(
        self,
        blobs: BlobStore,
        http: httpx.AsyncClient,
        max_bytes: int,
        max_pixels: int,
        safety: SafetyCheck | None = None,
        decode_budget_pixels: int = DECODE_BUDGET_PIXELS,
    ) -> None:
        """``max_bytes`` bounds uploads and downloads; ``max_pixels`` bounds uploads only
        (untrusted input), never what a model made."""
        self.blobs = blobs
        self.http = http
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self.safety = safety
        self.decode_slots = WeightedSemaphore(decode_budget_pixels)
        self.handoff = Handoff()  # outputs for requests waiting here (``handoff.py``)
        self._thumbnailing: dict[str, asyncio.Future[bytes]] = {}
        # Thumbnails made here lately, by asset id: a request that read its asset before
        # the key was recorded takes this one instead of making it again.
        self._thumbnailed: dict[str, str] = {}

    async def store(
        self,
        output: Output,
        task: Task,
        *,
        model_id: str,
        pricing: Pricing,
        fallback_reason: str | None = None,
        hold_memory: HoldMemory = unbounded,
    ) -> StoredOutput:
        """Store one output for good; the job may only succeed once this has returned.
        ``fallback_reason``: why the model asked for did not make it (a fallback's output);
        ``hold_memory``: counts a download's bytes before it is read (``memory.py``)."""
        if output.text is not None:
            return await self._store_text(output, model_id, pricing, fallback_reason)
        data = output.data
        if data is None:
            data = await self.download(output.url or "", hold_memory)
        try:
            info = images.probe(data)
        except images.UnreadableImage as exc:
            raise ProviderError(f"the provider's output is not readable: {exc.message}") from exc
        generated = (info.width, info.height)  # recorded: the model's own size
        if (
            task.kind in (TaskKind.IMAGE, TaskKind.EDIT)
            and info.width is not None
            and ((info.width, info.height) != (task.width, task.height))
        ):
            pixels = (info.width or 0) * (info.height or 0) + task.width * task.height
            async with self.decode_slots.hold(pixels):
                data = await asyncio.to_thread(images.fit_exact, data, task.width, task.height)
            info = images.probe(data)
        verdict = None
        if self.safety:
            async with self.decode_slots.hold((info.width or 0) * (info.height or 0)):
                verdict = await self.safety.judge(data, info.content_type)
        if info.content_type == "image/png":
            data = images.with_png_params(data, _png_params(task, model_id, output.seed))
        sha256, key = await self.blobs.put_content(data)
        self.handoff.offer(task.job_id, sha256, data)
        return StoredOutput(
            sha256=sha256,
            content_type=info.content_type,
            width=info.width,
            height=info.height,
            byte_size=len(data),
            storage_key=key,
            model=model_id,
            fallback=fallback_reason is not None,
            fallback_reason=fallback_reason,
            seed=output.seed,
            requested_width=task.width,
            requested_height=task.height,
            cost_usd=_cost(output, pricing, generated, task),
            revised_prompt=storable_text(output.revised_prompt) if output.revised_prompt else None,
            generated_width=generated[0],
            generated_height=generated[1],
            nsfw_score=verdict.score if verdict else None,
            flagged=verdict.flagged if verdict else False,
        )

    async def _store_text(
        self, output: Output, model_id: str, pricing: Pricing, fallback_reason: str | None
    ) -> StoredOutput:
        """A text kind's output: its UTF-8 bytes stored as an asset like any image's, its
        text recorded with it (searchable, shown without a download)."""
        text = storable_text(output.text or "", MAX_TEXT_CHARS)
        data = text.encode()
        sha256, key = await self.blobs.put_content(data)
        return StoredOutput(
            sha256=sha256,
            content_type=TEXT_CONTENT_TYPE,
            width=None,
            height=None,
            byte_size=len(data),
            storage_key=key,
            model=model_id,
            fallback=fallback_reason is not None,
            fallback_reason=fallback_reason,
            seed=output.seed,
            requested_width=None,
            requested_height=None,
            cost_usd=output.cost_usd if output.cost_usd is not None else pricing.per_image,
            revised_prompt=None,
            text=text,
            tone=output.tone,
        )

    async def ingest(self, data: bytes, field: str = "file") -> StoredBlob:
        """An uploaded image, checked at the door and put in storage with its thumbnail:
        within the byte limit, a PNG, JPEG, WebP or GIF within the pixel limit (read from
        the header before anything is decoded), whole (decoded in full), and upright (its
        EXIF orientation applied). ``InvalidInput(field)`` otherwise."""
        if len(data) > self.max_bytes:
            raise InvalidInput(
                f"the upload is {len(data):,} bytes; this server takes at most "
                f"{self.max_bytes:,} (IMAGEMILL_MAX_UPLOAD_BYTES)",
                field=field,
            )
        if not data:
            raise InvalidInput("the upload is empty", field=field)
        _, width, height = images.header_size(data, self.max_pixels, field)
        async with self.decode_slots.hold(width * height):
            checked = await asyncio.to_thread(images.ingest, data, self.max_pixels, field)
        sha256, key = await self.blobs.put_content(checked.data)
        _, thumbnail_key = await self.blobs.put_content(checked.thumbnail, namespace="thumbnails")
        return StoredBlob(
            sha256,
            key,
            checked.content_type,
            checked.width,
            checked.height,
            len(checked.data),
            thumbnail_key=thumbnail_key,
        )

    async def thumbnail(self, asset: Asset) -> tuple[bytes, str | None]:
        """The asset's thumbnail, and its storage key if it was made just now (to record).

        Made at most once at a time per asset: requests arriving while it is being made
        wait for that one instead of decoding the image again.
        """
        key = asset.thumbnail_key or self._thumbnailed.get(asset.id)
        if key:  # recorded, or made here a moment ago (the caller read the asset before)
            return await self.blobs.get(key), None
        if asset.content_type not in THUMBNAILED:
            raise NotFound(f"asset {quoted(asset.id)} has no thumbnail")
        making = self._thumbnailing.get(asset.id)
        if making is not None:
            return await asyncio.shield(making), None
        making = asyncio.get_running_loop().create_future()
        self._thumbnailing[asset.id] = making
        try:
            source = await self.blobs.get(asset.storage_key)
            async with self.decode_slots.hold((asset.width or 0) * (asset.height or 0)):
                data = await asyncio.to_thread(images.thumbnail, source, blur=asset.flagged)
            _, key = await self.blobs.put_content(data, namespace="thumbnails")
            self._thumbnailed[asset.id] = key
            while len(self._thumbnailed) > RECENT_THUMBNAILS:
                self._thumbnailed.pop(next(iter(self._thumbnailed)))
            making.set_result(data)
            return data, key
        except BaseException as exc:
            making.set_exception(exc)
            making.exception()  # retrieved here: waiters (if any) get it too
            raise
        finally:
            del self._thumbnailing[asset.id]

    async def download(self, url: str, hold_memory: HoldMemory = unbounded) -> bytes:
        """Fetch a provider's output URL, retrying transient failures. ``InvalidInput`` past
        ``max_bytes``; ``hold_memory`` is told the size before the body is read."""
        if not url:
            raise ProviderError("the provider returned an output with neither bytes nor a URL")
        counted = 0

        async def count_up_to(nbytes: int) -> None:  # a retried read counts only what is more
            nonlocal counted
            if nbytes > counted:
                await hold_memory(nbytes - counted)
                counted = nbytes

        for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
            try:
                async with self.http.stream("GET", url) as response:
                    if response.status_code < 500 and response.status_code != 429:
                        if response.status_code >= 400:
                            break
                        return await self._body(response, count_up_to)
            except (httpx.UnsupportedProtocol, httpx.InvalidURL, ValueError) as exc:
                raise ProviderError(  # a URL that can never be fetched: no retry helps
                    f"the provider's output URL cannot be fetched: {describe(exc)}"
                ) from exc
            except httpx.HTTPError as exc:
                if attempt == DOWNLOAD_ATTEMPTS:
                    raise ProviderUnavailable(
                        f"could not download the output: {describe(exc)}"
                    ) from exc
            if attempt < DOWNLOAD_ATTEMPTS:
                await asyncio.sleep(DOWNLOAD_BACKOFF_SECONDS * 2 ** (attempt - 1))
        raise ProviderError(
            f"downloading the output failed with HTTP {response.status_code}",
            retryable=response.status_code >= 500 or response.status_code == 429,
        )

    async def _body(self, response: httpx.Response, count_up_to: HoldMemory) -> bytes:
        """A download's body, refused as soon as it is known to pass ``max_bytes``;
        ``count_up_to`` is told how much of the response budget it holds in all, before
        it is read and, if it came out longer (decompressed, or over the guess), after."""
        too_large = InvalidInput(f"the output is larger than {self.max_bytes} bytes")
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_bytes:
            raise too_large
        await count_up_to(expected_bytes(response.headers))
        chunks, size = [], 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > self.max_bytes:
                raise too_large
            chunks.append(chunk)
        await count_up_to(size)
        return b"".join(chunks)


def _cost(
    output: Output, pricing: Pricing, generated: tuple[int | None, int | None], task: Task
) -> float:
    """What the provider reported, else the price table at the size the model made; the
    operator's price table (``IMAGEMILL_PRICES``) wins over both."""
    if output.cost_usd is not None and not pricing.configured:
        return output.cost_usd
    width, height = generated
    billed = Size(width, height) if width and height else Size(task.width, task.height)
    return pricing.price(billed, output.quality)


def _png_params(task: Task, model_id: str, seed: int | None) -> dict[str, Any]:
    return {
        "model": model_id,
        "kind": task.kind.value,
        "prompt": task.prompt,
        "negative_prompt": task.negative_prompt,
        "size": f"{task.width}x{task.height}",
        "seed": seed,
        "params": task.params,
    }
