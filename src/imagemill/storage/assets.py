"""Turning a provider's output into a stored asset: fetch, fit, annotate, hash, put."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from imagemill.db.records import StoredBlob, StoredOutput
from imagemill.domain import Output, Pricing, Size, Task, TaskKind
from imagemill.errors import InvalidInput, ProviderError, ProviderUnavailable
from imagemill.safety import SafetyCheck
from imagemill.storage import images
from imagemill.storage.blobs import BlobStore

DOWNLOAD_ATTEMPTS = 3
DOWNLOAD_BACKOFF_SECONDS = 0.5


class AssetWriter:
    def __init__(
        self,
        blobs: BlobStore,
        http: httpx.AsyncClient,
        max_bytes: int,
        max_pixels: int,
        safety: SafetyCheck | None = None,
    ) -> None:
        self.blobs = blobs
        self.http = http
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self.safety = safety

    async def store(
        self, output: Output, task: Task, *, model_id: str, fallback: bool, pricing: Pricing
    ) -> StoredOutput:
        """Store one output for good; the job may only succeed once this has returned."""
        data = output.data if output.data is not None else await self.download(output.url or "")
        info = images.probe(data, self.max_pixels)
        generated = (info.width, info.height)  # recorded: the model's own size
        if (
            task.kind in (TaskKind.IMAGE, TaskKind.EDIT)
            and info.width is not None
            and ((info.width, info.height) != (task.width, task.height))
        ):
            data = await asyncio.to_thread(images.fit_exact, data, task.width, task.height)
            info = images.probe(data)
        verdict = await self.safety.judge(data, info.content_type) if self.safety else None
        if info.content_type == "image/png":
            data = images.with_png_params(data, _png_params(task, model_id, output.seed))
        sha256, key = await self.blobs.put_content(data)
        return StoredOutput(
            sha256=sha256,
            content_type=info.content_type,
            width=info.width,
            height=info.height,
            byte_size=len(data),
            storage_key=key,
            model=model_id,
            fallback=fallback,
            seed=output.seed,
            requested_width=task.width,
            requested_height=task.height,
            cost_usd=_cost(output, pricing, generated, task),
            revised_prompt=output.revised_prompt,
            generated_width=generated[0],
            generated_height=generated[1],
            nsfw_score=verdict.score if verdict else None,
            flagged=verdict.flagged if verdict else False,
        )

    async def ingest(self, data: bytes, field: str = "file") -> StoredBlob:
        """An uploaded image, checked (size, pixels, readable) and put in storage."""
        if len(data) > self.max_bytes:
            raise InvalidInput(f"the upload is larger than {self.max_bytes} bytes", field=field)
        if not data:
            raise InvalidInput("the upload is empty", field=field)
        try:
            info = images.probe(data, self.max_pixels)
        except InvalidInput as exc:
            raise InvalidInput(exc.message, field=field) from exc
        if info.width is None:
            raise InvalidInput("uploads must be images (PNG, JPEG, WebP or GIF)", field=field)
        sha256, key = await self.blobs.put_content(data)
        return StoredBlob(sha256, key, info.content_type, info.width, info.height, len(data))

    async def download(self, url: str) -> bytes:
        """Fetch a provider's output URL, retrying transient failures."""
        if not url:
            raise ProviderError("the provider returned an output with neither bytes nor a URL")
        for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
            try:
                response = await self.http.get(url)
                if response.status_code < 500 and response.status_code != 429:
                    break
            except httpx.TransportError as exc:
                if attempt == DOWNLOAD_ATTEMPTS:
                    raise ProviderUnavailable(f"could not download the output: {exc}") from exc
            if attempt < DOWNLOAD_ATTEMPTS:
                await asyncio.sleep(DOWNLOAD_BACKOFF_SECONDS * 2 ** (attempt - 1))
        if response.status_code >= 400:
            raise ProviderError(
                f"downloading the output failed with HTTP {response.status_code}",
                retryable=response.status_code >= 500 or response.status_code == 429,
            )
        if len(response.content) > self.max_bytes:
            raise InvalidInput(f"the output is larger than {self.max_bytes} bytes")
        return response.content


def _cost(
    output: Output, pricing: Pricing, generated: tuple[int | None, int | None], task: Task
) -> float:
    """What the provider reported, else the price table at the size the model made."""
    if output.cost_usd is not None:
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
