"""The studio's pages: generate, gallery, one job, a comparison, and sign-in.

Pages read through the same services as the ``/v1`` routes and render the same wire
models (``JobOut``); everything live (submitting, progress, previews) happens in the
browser against ``/v1`` itself. When the server requires keys, a person signs in once
with an API key, kept in an HttpOnly cookie (``api/deps.py``), and sees only their work.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field, field_validator

from imagemill.api.deps import SESSION_COOKIE, LinksDep, OptionalOwner, RuntimeDep
from imagemill.api.routing import CheckedRoute
from imagemill.api.schemas import JobOut, OutputOut
from imagemill.auth import hash_key
from imagemill.db.accounts import Owner
from imagemill.db.queries import JobFilter
from imagemill.domain import JobStatus, TaskKind
from imagemill.errors import NotFound
from imagemill.filenames import filename_of
from imagemill.styles import BUILTIN_STYLES
from imagemill.web.offers import offer

router = APIRouter(include_in_schema=False, route_class=CheckedRoute)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
GALLERY_PAGE = 24
RECENT_COMPARED_JOBS = 400  # the comparisons page lists the groups of these
RECENT_JOBS = 6
SESSION_DAYS = 30
# Only this server's own script runs; images may be previews sent inline (data: URLs).
POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


class SignInRequired(Exception):
    """A page was asked for without a sign-in on a server that requires keys."""

    def __init__(self, back_to: str) -> None:
        self.back_to = back_to


async def to_sign_in(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SignInRequired)
    return RedirectResponse(f"/signin?next={quote(exc.back_to)}", status_code=303)


async def page_owner(request: Request, owner: OptionalOwner) -> Owner:
    if owner is None:
        back_to = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(back_to)
    return owner


PageOwner = Annotated[Owner, Depends(page_owner)]


def viewed(job: JobOut, output: OutputOut) -> dict[str, Any]:
    """What the image viewer shows of an output (the data-view of its element)."""
    return {
        "src": output.url,
        "width": output.width,
        "height": output.height,
        "prompt": job.request.prompt,
        "seed": output.seed,
        "model": output.model,
        "job": job.id,
        "index": output.index,
        "favourite": output.favourite,
        "page": f"/gallery/{job.id}#output-{output.index}",
        "download": filename_of(job, output),
    }


templates.env.globals.update(download_name=filename_of, viewed=viewed)


def _render(
    request: Request, template: str, owner: Owner | None = None, **context: Any
) -> HTMLResponse:
    """``owner``: who is signed in (named in the header, beside Sign out)."""
    runtime = request.app.state.runtime
    context["keys_required"] = runtime.settings.keys_required
    context["owner_name"] = owner.name if owner else None
    response = templates.TemplateResponse(request, template, context)
    response.headers["Content-Security-Policy"] = POLICY
    return response


def _missing(request: Request, message: str) -> HTMLResponse:
    response = _render(request, "missing.html", message=message)
    response.status_code = 404
    return response


@router.get("/", response_class=HTMLResponse)
async def generate(
    request: Request,
    owner: PageOwner,
    runtime: RuntimeDep,
    links: LinksDep,
    edit: Annotated[str | None, Query(max_length=40)] = None,
) -> HTMLResponse:
    offered = offer(runtime.registry.models())
    recent = await runtime.service.list(owner.id, JobFilter(), RECENT_JOBS)
    try:
        to_edit = await runtime.repo.get_asset(edit, owner.id) if edit else None
    except NotFound:
        return _missing(request, "The image to edit is not here.")
    return _render(
        request,
        "generate.html",
        owner,
        models=[m.model_dump(mode="json") for m in offered.models],
        prices=offered.prices,
        defaults=offered.defaults,
        kinds=offered.kinds,
        presets=await runtime.accounts.list_presets(owner.id),
        styles=BUILTIN_STYLES,
        jobs=[JobOut.of(job, links) for job in recent],
        edit=to_edit,
    )


class GalleryFilter(BaseModel):
    """The gallery's filters, as its form sends them (an empty field: any)."""

    model: str | None = None
    status: JobStatus | None = None
    kind: TaskKind | None = None
    favourite: bool | None = None
    q: str | None = None
    since: date | None = None
    until: date | None = None  # inclusive
    cursor: str | None = None
    skip: int | None = Field(None, ge=0, le=10_000)  # a search's next page: ranked, not by id

    @field_validator("*", mode="before")
    @classmethod
    def _empty_is_any(cls, value: Any) -> Any:
        return None if value == "" else value

    @property
    def narrowed(self) -> bool:
        """Whether any filter is set (an empty page then means "none match", not "none")."""
        return any(
            value is not None
            for value in (
                self.model,
                self.status,
                self.kind,
                self.favourite,
                self.q,
                self.since,
                self.until,
            )
        )

    def where(self) -> JobFilter:
        def midnight(day: date | None) -> datetime | None:
            return datetime.combine(day, time(), UTC) if day else None

        return JobFilter(
            status=self.status,
            model=self.model,
            kind=self.kind,
            favourite=bool(self.favourite),
            text=self.q,
            created_after=midnight(self.since),
            created_before=midnight(self.until + timedelta(days=1) if self.until else None),
            before=self.cursor,
        )

    def query(self, **changes: Any) -> str:
        fields = {**self.model_dump(mode="json", exclude_none=True), **changes}
        return urlencode({k: v for k, v in fields.items() if v is not None})


@router.get("/gallery", response_class=HTMLResponse)
async def gallery(
    request: Request,
    owner: PageOwner,
    runtime: RuntimeDep,
    links: LinksDep,
    filters: Annotated[GalleryFilter, Query()],
    partial: bool = False,
) -> HTMLResponse:
    """Every job, newest first, a page at a time; ``partial``: only the next page's tiles
    (what the infinite scroll appends)."""
    if filters.q and runtime.meaning.available:  # by words, then by meaning: ranked
        where = replace(filters.where(), text=None, before=None)
        skip = filters.skip or 0
        hits = await runtime.meaning.find(
            runtime.repo, owner.id, filters.q, where, skip + GALLERY_PAGE + 1
        )
        page = [JobOut.of(hit.job, links) for hit in hits[skip : skip + GALLERY_PAGE]]
        more = filters.query(skip=skip + GALLERY_PAGE) if len(hits) > skip + GALLERY_PAGE else None
    else:
        found = await runtime.service.list(owner.id, filters.where(), GALLERY_PAGE + 1)
        page = [JobOut.of(job, links) for job in found[:GALLERY_PAGE]]
        more = filters.query(cursor=page[-1].id) if len(found) > GALLERY_PAGE else None
    return _render(
        request,
        "gallery_tiles.html" if partial else "gallery.html",
        owner,
        tiles=[tile for job in page for tile in _tiles(job)],
        more=more,
        collections=[] if partial else await runtime.collections.list(owner.id),
        by_meaning=runtime.meaning.available,
        filters=filters,
        models=sorted(m.id for m in runtime.registry.models()),
        statuses=list(JobStatus),
        kinds=list(TaskKind),
    )


Tile = tuple[JobOut, OutputOut | None]  # an output, or a job that made none


def _tiles(job: JobOut, only: set[int] | None = None) -> list[Tile]:
    """A tile per output of ``job`` (those in ``only``, if given); one for the job itself
    when it made none (failed, running)."""
    made = [o for o in job.outputs if only is None or o.index in only]
    return [(job, o) for o in made] if made or only is not None else [(job, None)]


@router.get("/presets", response_class=HTMLResponse)
async def presets_page(request: Request, owner: PageOwner, runtime: RuntimeDep) -> HTMLResponse:
    """Your presets, to make and delete, and the built-in styles, to copy as your own."""
    models = sorted(m.id for m in runtime.registry.models() if m.available)
    return _render(
        request,
        "presets.html",
        owner,
        presets=await runtime.accounts.list_presets(owner.id),
        styles=BUILTIN_STYLES,
        models=models,
    )


@router.get("/collections", response_class=HTMLResponse)
async def collections_page(request: Request, owner: PageOwner, runtime: RuntimeDep) -> HTMLResponse:
    return _render(
        request, "collections.html", owner, collections=await runtime.collections.list(owner.id)
    )


@router.get("/collections/{collection_id}", response_class=HTMLResponse)
async def collection_page(
    request: Request, collection_id: str, owner: PageOwner, runtime: RuntimeDep, links: LinksDep
) -> HTMLResponse:
    try:
        collection = await runtime.collections.get(owner.id, collection_id)
    except NotFound:
        return _missing(
            request, "That collection is not here: it was deleted, or is someone else's."
        )
    jobs = {
        job.id: JobOut.of(job, links)
        for job in await runtime.repo.get_jobs(list({ref[0] for ref in collection.items}))
    }
    tiles = [
        tile
        for job_id, index in collection.items
        if job_id in jobs  # deleted since the items were read
        for tile in _tiles(jobs[job_id], {index})
    ]
    return _render(
        request,
        "collection.html",
        owner,
        collection=collection,
        tiles=tiles,
        collections=await runtime.collections.list(owner.id),
    )


@router.get("/batches/{batch_id}", response_class=HTMLResponse)
async def batch_page(
    request: Request, batch_id: str, owner: PageOwner, runtime: RuntimeDep, links: LinksDep
) -> HTMLResponse:
    """A batch: its progress and counts, and a live card for every item."""
    try:
        batch = await runtime.batches.get(owner.id, batch_id)
    except NotFound:
        return _missing(request, "That batch is not here.")
    return _render(
        request,
        "batch.html",
        owner,
        batch=batch,
        jobs=[JobOut.of(job, links) for job in batch.jobs],
    )


@router.get("/gallery/{job_id}", response_class=HTMLResponse)
async def job_page(
    request: Request, job_id: str, owner: PageOwner, runtime: RuntimeDep, links: LinksDep
) -> HTMLResponse:
    try:
        job = JobOut.of(await runtime.service.get(owner.id, job_id), links)
    except NotFound:
        return _missing(request, "That image is not here: it was deleted, or is someone else's.")
    models = runtime.registry.models()
    return _render(
        request,
        "job.html",
        owner,
        job=job,
        editors=any(m.available and TaskKind.EDIT in m.kinds for m in models),
        upscalers=[m.id for m in models if m.available and TaskKind.UPSCALE in m.kinds],
        animators=[m.id for m in models if m.available and TaskKind.VIDEO in m.kinds],
    )


@dataclass(frozen=True, slots=True)
class Comparison:
    id: str
    prompt: str
    models: list[str]
    created_at: datetime


@router.get("/compare", response_class=HTMLResponse)
async def comparisons(request: Request, owner: PageOwner, runtime: RuntimeDep) -> HTMLResponse:
    """The latest comparisons, newest first."""
    found = await runtime.service.list(owner.id, JobFilter(grouped=True), RECENT_COMPARED_JOBS)
    groups: dict[str, Comparison] = {}
    for job in reversed(found):  # oldest first: a group's models in the order asked
        group = groups.setdefault(
            job.group_id or "",
            Comparison(job.group_id or "", job.request.prompt, [], job.created_at),
        )
        group.models.append(job.model)
    return _render(request, "comparisons.html", owner, groups=list(groups.values())[::-1])


@router.get("/compare/{group_id}", response_class=HTMLResponse)
async def compare(
    request: Request, group_id: str, owner: PageOwner, runtime: RuntimeDep, links: LinksDep
) -> HTMLResponse:
    group = await runtime.service.list(owner.id, JobFilter(group_id=group_id), 8)
    if not group:
        return _missing(request, "That comparison is not here.")
    jobs = sorted((JobOut.of(job, links) for job in group), key=lambda j: j.created_at)
    return _render(request, "compare.html", owner, jobs=jobs, group_id=group_id)


# -- sign-in -----------------------------------------------------------------------------


def _local_path(target: str | None) -> str:
    """Where to go after signing in: a path on this server, never another site."""
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return "/"


@router.get("/signin", response_class=HTMLResponse)
async def sign_in_form(request: Request, next: str | None = None) -> HTMLResponse:
    return _render(request, "signin.html", next=_local_path(next), error=None)


@router.post("/signin", response_class=HTMLResponse)
async def sign_in(
    request: Request,
    runtime: RuntimeDep,
    key: Annotated[str, Form(max_length=200)],
    next: Annotated[str | None, Form()] = None,
) -> Response:
    key = key.strip()
    if await runtime.accounts.owner_for_key(hash_key(key)) is None:
        refused = _render(
            request, "signin.html", next=_local_path(next), error="That key is not valid."
        )
        refused.status_code = 401
        return refused
    response = RedirectResponse(_local_path(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        key,
        max_age=SESSION_DAYS * 86400,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/signout")
async def sign_out() -> Response:
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="strict")
    return response
