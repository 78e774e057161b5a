"""``/v1/assets``: stored outputs and their thumbnails, served with immutable caching."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Header, Query, Request, Response, UploadFile
from fastapi.responses import StreamingResponse
from starlette.datastructures import UploadFile as StarletteUpload

from imagemill.api.deps import CurrentOwner, Links, LinksDep, OptionalOwner, RuntimeDep
from imagemill.api.routing import UploadRoute
from imagemill.api.schemas import AssetOut, ErrorOut
from imagemill.auth import check_asset_token
from imagemill.boundary import quoted
from imagemill.domain import Asset
from imagemill.errors import InvalidInput, NotFound, Unauthorized
from imagemill.jobs.service import utcnow
from imagemill.runtime import Runtime
from imagemill.writing import TEXT_CONTENT_TYPE

router = APIRouter(prefix="/v1/assets", tags=["assets"], route_class=UploadRoute)
IMMUTABLE = "private, max-age=31536000, immutable"
# Outputs are untrusted bytes (an SVG may carry script): never run or sniff them here.
INERT = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; sandbox",
    "X-Content-Type-Options": "nosniff",
}
ERRORS: dict[int | str, dict[str, Any]] = {401: {"model": ErrorOut}, 404: {"model": ErrorOut}}
# What assets hold: uploads and image outputs, SVG (vector styles), mp4 (video) and
# UTF-8 text (what the text kinds write).
STORED_TYPES = (
    "image/png",
    "image/jpeg",
    "image/webp",
    "image/gif",
    "image/svg+xml",
    "video/mp4",
    TEXT_CONTENT_TYPE,
    "application/octet-stream",
)
TokenQuery = Annotated[
    str | None, Query(description="Signed link token (from OpenAI-style `url`s).")
]


async def _asset(runtime: Runtime, asset_id: str, owner_id: str | None, token: str | None) -> Asset:
    """The asset if the caller owns it or holds a valid link token; else 404 (or 401)."""
    if token:
        asset = await runtime.repo.get_asset(asset_id)
        owner = await runtime.accounts.get_owner(asset.owner_id)
        if check_asset_token(owner.secret, asset_id, token):
            return asset
        raise NotFound(f"no asset {quoted(asset_id)}")
    if owner_id is None:
        raise Unauthorized("this server requires an API key: send 'Authorization: Bearer <key>'")
    return await runtime.repo.get_asset(asset_id, owner_id)


def _conditional(etag: str, if_none_match: str | None) -> tuple[dict[str, str], Response | None]:
    """Caching headers for ``etag``, and the 304 to send when the client already has it."""
    headers = {"ETag": etag, "Cache-Control": IMMUTABLE, **INERT}
    if if_none_match is not None and _matches(etag, if_none_match):
        return headers, Response(status_code=304, headers=headers)
    return headers, None


def _matches(etag: str, if_none_match: str) -> bool:
    """RFC 9110's If-None-Match: ``*``, or any tag equal to ours by weak comparison (a
    ``W/`` in front does not count)."""
    tags = [tag.strip() for tag in if_none_match.split(",")]
    return "*" in tags or any(tag.removeprefix("W/") == etag.removeprefix("W/") for tag in tags)


UPLOADED = "image/png, image/jpeg, image/webp, image/gif"


@router.post(
    "",
    status_code=201,
    response_model=AssetOut,
    responses={**ERRORS, 422: {"model": ErrorOut}},
    openapi_extra={
        "requestBody": {
            "content": {"multipart/form-data": {"encoding": {"file": {"contentType": UPLOADED}}}}
        }
    },
)
async def upload_asset(
    file: Annotated[
        UploadFile,
        File(
            description="An image: PNG, JPEG, WebP or GIF, not empty.",
            json_schema_extra={"minLength": 1},
        ),
    ],
    request: Request,
    owner: CurrentOwner,
    runtime: RuntimeDep,
    links: LinksDep,
) -> AssetOut:
    """Upload an input image (for edits, upscales, videos); the same bytes twice are one asset."""
    form = await request.form()  # the form FastAPI read: any other field is a mistake to
    for name in form:  # report, not to drop
        if name != "file":
            raise InvalidInput(f"unknown field {quoted(name)}; send the image as 'file'", name)
    if len(form.getlist("file")) > 1:
        raise InvalidInput("send one file per upload", "file")
    blob = await runtime.assets.ingest(await read_upload(file, runtime.settings.max_upload_bytes))
    return asset_out(await runtime.repo.add_asset(owner.id, blob, utcnow()), links)


async def read_upload(file: StarletteUpload, limit: int, field: str = "file") -> bytes:
    """The upload's bytes, refusing (422) more than ``limit`` without reading them all."""
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise InvalidInput(
            f"the upload is larger than {limit:,} bytes (IMAGEMILL_MAX_UPLOAD_BYTES)", field=field
        )
    return data


def asset_out(asset: Asset, links: Links) -> AssetOut:
    return AssetOut(
        id=asset.id,
        url=links.asset(asset.id),
        thumbnail_url=links.thumbnail(asset.id),
        content_type=asset.content_type,
        width=asset.width,
        height=asset.height,
        byte_size=asset.byte_size,
        sha256=asset.sha256,
        created_at=asset.created_at,
        nsfw_score=asset.nsfw_score,
        flagged=asset.flagged,
    )


BYTES = {"schema": {"type": "string", "format": "binary"}}


@router.get(
    "/{asset_id}",
    response_class=StreamingResponse,
    responses={
        **ERRORS,
        200: {
            "description": "The stored bytes, with their own content type.",
            "content": {kind: BYTES for kind in STORED_TYPES},
        },
    },
)
async def get_asset(
    asset_id: str,
    owner: OptionalOwner,
    runtime: RuntimeDep,
    token: TokenQuery = None,
    if_none_match: Annotated[str | None, Header(alias="If-None-Match")] = None,
) -> Response:
    """The asset's bytes. Content-addressed, so cacheable forever (ETag = sha256)."""
    asset = await _asset(runtime, asset_id, owner.id if owner else None, token)
    headers, not_modified = _conditional(f'"{asset.sha256}"', if_none_match)
    if not_modified:
        return not_modified
    headers["Content-Length"] = str(asset.byte_size)
    return StreamingResponse(
        runtime.blobs.stream(asset.storage_key), media_type=asset.content_type, headers=headers
    )


@router.get(
    "/{asset_id}/thumbnail",
    response_class=Response,
    responses={
        **ERRORS,
        200: {
            "description": "A WebP of at most 384 px a side.",
            "content": {"image/webp": {"schema": {"type": "string", "format": "binary"}}},
        },
    },
)
async def get_thumbnail(
    asset_id: str,
    owner: OptionalOwner,
    runtime: RuntimeDep,
    token: TokenQuery = None,
    if_none_match: Annotated[str | None, Header(alias="If-None-Match")] = None,
) -> Response:
    """A small WebP of the asset (an upload's is made at upload, an output's on first
    request, once); blurred beyond recognition when the safety check flagged the asset."""
    asset = await _asset(runtime, asset_id, owner.id if owner else None, token)
    headers, not_modified = _conditional(f'"{asset.sha256}-thumb"', if_none_match)
    if not_modified:
        return not_modified
    data, made = await runtime.assets.thumbnail(asset)
    if made:
        await runtime.repo.set_thumbnail(asset.id, made)
    return Response(data, media_type="image/webp", headers=headers)
