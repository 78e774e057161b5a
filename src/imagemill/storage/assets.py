"""Turning a provider's output into a stored asset: fetch, fit, annotate, hash, put."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from imagemill.db.repository import StoredOutput
from imagemill.domain import Output, Task, TaskKind
from imagemill.errors import InvalidInput, ProviderError, ProviderUnavailable
from imagemill.storage import images
from imagemill.storage.blobs import BlobStore

DOWNLOAD_ATTEMPTS = 3
DOWNLOAD_BACKOFF_SECONDS = 0.5


class AssetWriter:
    def __init__(
        self, blobs: BlobStore, http: httpx.AsyncClient, max_bytes: int, max_pixels: int
    ) -> None:
        self.blobs = blobs
        self.http = http
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels

    async def store(
        self, output: Output, task: Task, *, model_id: str, fallback: bool, price: float
    ) -> StoredOutput:
        """Store one output for good; the job may only succeed once this has returned."""
        data = output.data if output.data is not None else await self.download(output.url or "")
        info = images.probe(data, self.max_pixels)
        if (
            task.kind in (TaskKind.IMAGE, TaskKind.EDIT)
            and info.width is not None
            and ((info.width, info.height) != (task.width, task.height))
        ):
            data = await asyncio.to_thread(images.fit_exact, data, task.width, task.height)
            info = images.probe(data)
        generated = (info.width, info.height)
        if info.content_type == "image/png":
            data = images.with_png_params(data, _png_params(task, model_id, output.seed))
        sha256, key = await self.blobs.put_content(data)
        return StoredOutput(
            sha256=sha256,
            content_type=info.content_type,
            width=generated[0],
            height=generated[1],
            byte_size=len(data),
            storage_key=key,
            model=model_id,
            fallback=fallback,
            seed=output.seed,
            requested_width=task.width,
            requested_height=task.height,
            cost_usd=output.cost_usd if output.cost_usd is not None else price,
            revised_prompt=output.revised_prompt,
        )

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
