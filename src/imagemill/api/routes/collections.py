"""Favourites, collections and archives: marking an output a favourite
(``PUT/DELETE /v1/jobs/{id}/outputs/{index}/favourite``), ``/v1/collections`` (named
boards of outputs, each owner's own), and ``POST /v1/archives`` (chosen outputs as one
zip, each file named from its prompt and seed)."""

from __future__ import annotations

import asyncio
import tempfile
import zipfile
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Response, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from imagemill.api.deps import CurrentOwner, LinksDep, RuntimeDep
from imagemill.api.routing import CheckedRoute
from imagemill.api.schemas import ErrorOut, OutputOut
from imagemill.boundary import quoted
from imagemill.db.collections import Collection, OutputRef
from imagemill.domain import Job, JobOutput
from imagemill.errors import InvalidInput
from imagemill.filenames import filename_of, unique
from imagemill.jobs.service import utcnow

router = APIRouter(tags=["collections"], route_class=CheckedRoute)
ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut},
    409: {"model": ErrorOut},
    422: {"model": ErrorOut},
}
MAX_ITEMS = 200  # outputs filed or archived in one request
ZIP_SPOOL_BYTES = 16 * 1024 * 1024  # an archive past this is spooled to a temporary file
OutputIndex = Annotated[int, Path(ge=0, le=1000, description="The output's index in its job.")]


class OutputRefIn(BaseModel):
    """One output, by its job and index."""

    model_config = ConfigDict(extra="forbid", strict=True)

    job_id: str = Field(max_length=40)
    index: int = Field(ge=0, le=1000)


class CollectionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1, max_length=100, pattern=r"\S")


class ItemsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[OutputRefIn] = Field(min_length=1, max_length=MAX_ITEMS)


class ItemOut(BaseModel):
    job_id: str
    prompt: str
    output: OutputOut


class CollectionOut(BaseModel):
    object: str = "collection"
    id: str
    name: str
    size: int = Field(description="Outputs filed in it.")
    created_at: datetime
    updated_at: datetime
    items: list[ItemOut] | None = Field(
        None, description="Its outputs, newest first (on GET of one collection)."
    )


class CollectionList(BaseModel):
    data: list[CollectionOut]


def _out(collection: Collection, items: list[ItemOut] | None = None) -> CollectionOut:
    return CollectionOut(
        id=collection.id,
        name=collection.name,
        size=collection.size,
        created_at=collection.created_at,
        updated_at=collection.updated_at,
        items=items,
    )


# -- favourites ------------------------------------------------------------------------


@router.put(
    "/v1/jobs/{job_id}/outputs/{index}/favourite",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=ERRORS,
)
async def add_favourite(
    job_id: str, index: OutputIndex, owner: CurrentOwner, runtime: RuntimeDep
) -> Response:
    """Mark one of your outputs a favourite (`GET /v1/jobs?favourite=true` lists their
    jobs); doing it twice is the same as once."""
    await runtime.collections.set_favourite(owner.id, (job_id, index), True)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete(
    "/v1/jobs/{job_id}/outputs/{index}/favourite",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=ERRORS,
)
async def remove_favourite(
    job_id: str, index: OutputIndex, owner: CurrentOwner, runtime: RuntimeDep
) -> Response:
    await runtime.collections.set_favourite(owner.id, (job_id, index), False)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# -- collections -----------------------------------------------------------------------


@router.post(
    "/v1/collections",
    status_code=status.HTTP_201_CREATED,
    response_model=CollectionOut,
    responses=ERRORS,
)
async def create_collection(
    body: CollectionIn, owner: CurrentOwner, runtime: RuntimeDep
) -> CollectionOut:
    """A new, empty collection; 409 if you have one of that name."""
    return _out(await runtime.collections.create(owner.id, body.name.strip(), utcnow()))


@router.get("/v1/collections", response_model=CollectionList)
async def list_collections(owner: CurrentOwner, runtime: RuntimeDep) -> CollectionList:
    """Your collections by name, with their sizes."""
    return CollectionList(data=[_out(c) for c in await runtime.collections.list(owner.id)])


@router.get("/v1/collections/{collection_id}", response_model=CollectionOut, responses=ERRORS)
async def get_collection(
    collection_id: str, owner: CurrentOwner, runtime: RuntimeDep, links: LinksDep
) -> CollectionOut:
    """The collection with its outputs, newest filed first."""
    collection = await runtime.collections.get(owner.id, collection_id)
    jobs = {j.id: j for j in await runtime.repo.get_jobs(list({r[0] for r in collection.items}))}
    items = [
        ItemOut(job_id=job_id, prompt=jobs[job_id].request.prompt, output=OutputOut.of(o, links))
        for job_id, index in collection.items
        if job_id in jobs  # deleted since the items were read
        for o in jobs[job_id].outputs
        if o.index == index
    ]
    return _out(collection, items)


@router.patch("/v1/collections/{collection_id}", response_model=CollectionOut, responses=ERRORS)
async def rename_collection(
    collection_id: str, body: CollectionIn, owner: CurrentOwner, runtime: RuntimeDep
) -> CollectionOut:
    renamed = await runtime.collections.rename(owner.id, collection_id, body.name.strip(), utcnow())
    return _out(renamed)


@router.delete(
    "/v1/collections/{collection_id}", status_code=status.HTTP_204_NO_CONTENT, responses=ERRORS
)
async def delete_collection(
    collection_id: str, owner: CurrentOwner, runtime: RuntimeDep
) -> Response:
    """The collection goes; the images filed in it stay."""
    await runtime.collections.delete(owner.id, collection_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/v1/collections/{collection_id}/items", response_model=CollectionOut, responses=ERRORS
)
async def add_to_collection(
    collection_id: str, body: ItemsIn, owner: CurrentOwner, runtime: RuntimeDep
) -> CollectionOut:
    """File your outputs in the collection (one already there stays where it was); 422
    naming `items.N` for an output that is not yours or not there."""
    refs = [(item.job_id, item.index) for item in body.items]
    return _out(await runtime.collections.add(owner.id, collection_id, refs, utcnow()))


@router.delete(
    "/v1/collections/{collection_id}/items/{job_id}/{index}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=ERRORS,
)
async def remove_from_collection(
    collection_id: str, job_id: str, index: OutputIndex, owner: CurrentOwner, runtime: RuntimeDep
) -> Response:
    """Take one output out of the collection (the image stays)."""
    await runtime.collections.remove(owner.id, collection_id, (job_id, index))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# -- archives --------------------------------------------------------------------------


@router.post(
    "/v1/archives",
    response_class=StreamingResponse,
    responses={
        **ERRORS,
        200: {
            "description": "A zip of the outputs, each named from its prompt and seed.",
            "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
        },
    },
)
async def make_archive(body: ItemsIn, owner: CurrentOwner, runtime: RuntimeDep) -> Response:
    """Your chosen outputs (up to 200) as one zip, stored uncompressed (images are
    compressed already), each file named from its prompt and seed; 422 naming `items.N`
    for an output that is not yours or not there."""
    refs = [(item.job_id, item.index) for item in body.items]
    jobs = {j.id: j for j in await runtime.repo.get_jobs(list({r[0] for r in refs}))}
    chosen = [_output_of(jobs, ref, owner.id, position) for position, ref in enumerate(refs)]
    names = unique([filename_of(job, output) for job, output in chosen])
    spool = tempfile.SpooledTemporaryFile(max_size=ZIP_SPOOL_BYTES)  # noqa: SIM115 (streamed)
    with zipfile.ZipFile(spool, "w", zipfile.ZIP_STORED) as archive:
        for name, (_, output) in zip(names, chosen, strict=True):
            asset = await runtime.repo.get_asset(output.asset_id, owner.id)
            data = await runtime.blobs.get(asset.storage_key)
            await asyncio.to_thread(archive.writestr, name, data)
    size = spool.tell()
    spool.seek(0)

    async def chunks() -> AsyncIterator[bytes]:
        try:
            while chunk := await asyncio.to_thread(spool.read, 1024 * 1024):
                yield chunk
        finally:
            spool.close()

    return StreamingResponse(
        chunks(),
        media_type="application/zip",
        headers={
            "Content-Disposition": 'attachment; filename="imagemill.zip"',
            "Content-Length": str(size),
        },
    )


def _output_of(
    jobs: dict[str, Job], ref: OutputRef, owner_id: str, position: int
) -> tuple[Job, JobOutput]:
    job = jobs.get(ref[0])
    found = (
        [o for o in job.outputs if o.index == ref[1]] if job and job.owner_id == owner_id else []
    )
    if not found:
        raise InvalidInput(
            f"no output {ref[1]} of job {quoted(ref[0])} of yours", field=f"items.{position}"
        )
    assert job is not None
    return job, found[0]
