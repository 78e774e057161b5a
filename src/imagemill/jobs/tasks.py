"""What a provider is asked: a job's request resolved for one model of its chain
(``Task``), with its input images read from storage and its mask made canonical, and the
task of enhancing the job's prompt first, whose answer is fitted to the chain's limits."""

from __future__ import annotations

import asyncio
from typing import Any

from imagemill import writing
from imagemill.db.repository import Repository
from imagemill.domain import InputImage, Job, Size, Task, TaskKind
from imagemill.specs import ModelSpec
from imagemill.storage import masks
from imagemill.storage.blobs import BlobStore


async def for_model(
    job: Job, spec: ModelSpec, params: dict[str, Any], repo: Repository, blobs: BlobStore
) -> Task:
    """The job's request as ``spec``'s model gets it, with ``params`` (its own, in a
    fallback chain) and the enhanced prompt where the request had it enhanced."""
    request = job.request
    size = request.dimensions or Size(1024, 1024)
    inputs = tuple([await _input(job, asset_id, repo, blobs) for asset_id in request.input_assets])
    mask = None
    if request.mask and inputs:
        mask = await _mask(job, request.mask, inputs[0], repo, blobs)
    return Task(
        job_id=job.id,
        kind=request.kind,
        model=spec.name,
        prompt=job.enhanced_prompt or request.prompt,
        # A style's negative prompt, kept for a model that takes one, reaches no other.
        negative_prompt=request.negative_prompt if spec.limits.negative_prompt else None,
        n=request.n,
        width=size.width,
        height=size.height,
        seed=request.seed,
        params=params,
        inputs=inputs,
        mask=mask,
    )


def enhancing(job: Job, spec: ModelSpec, params: dict[str, Any]) -> Task:
    """Enhancing the job's prompt (one text) with ``spec``'s model and ``params``."""
    return Task(
        job_id=job.id,
        kind=TaskKind.ENHANCE,
        model=spec.name,
        prompt=job.request.prompt,
        negative_prompt=None,
        n=1,
        width=0,
        height=0,
        seed=job.request.seed,
        params=params,
    )


def fitted(prompt: str, chain: list[ModelSpec]) -> str:
    """An enhanced ``prompt`` fitted to the prompt limits of every model of a job's chain
    (checked at submit for the prompt as given, not as it would be enhanced)."""

    def least(values: list[int | None]) -> int | None:
        given = [value for value in values if value is not None]
        return min(given) if given else None

    limits = [spec.limits for spec in chain]
    return writing.fit_prompt(
        prompt,
        least([limit.max_prompt_chars for limit in limits]),
        least([limit.max_prompt_bytes for limit in limits]),
        least([limit.max_prompt_tokens for limit in limits]),
    )


async def _input(job: Job, asset_id: str, repo: Repository, blobs: BlobStore) -> InputImage:
    asset = await repo.get_asset(asset_id, job.owner_id)
    data = await blobs.get(asset.storage_key)
    return InputImage(asset.id, data, asset.content_type, asset.width or 0, asset.height or 0)


async def _mask(
    job: Job, asset_id: str, image: InputImage, repo: Repository, blobs: BlobStore
) -> InputImage:
    """The mask in imagemill's one convention (white repaints) at the image's size,
    whatever form it was uploaded in (``storage/masks.py``)."""
    uploaded = await _input(job, asset_id, repo, blobs)
    data = await asyncio.to_thread(masks.canonical, uploaded.data, image.width, image.height)
    return InputImage(asset_id, data, "image/png", image.width, image.height)
