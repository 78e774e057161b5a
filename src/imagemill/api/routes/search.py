"""``GET /v1/search``: your jobs by what they are about: those whose prompt (or enhanced
prompt, or a text they wrote) contains the words, then those close to it in meaning
(sentence embeddings, ``search.py``), where the server has search by meaning."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from imagemill.api.deps import CurrentOwner, LinksDep, RuntimeDep
from imagemill.api.routing import CheckedRoute
from imagemill.api.schemas import JobOut
from imagemill.db.queries import JobFilter

router = APIRouter(prefix="/v1/search", tags=["jobs"], route_class=CheckedRoute)


class SearchHit(BaseModel):
    matched: Literal["words", "meaning"] = Field(
        description="words: the text contains the query; meaning: it is about it."
    )
    score: float | None = Field(
        None, description="For a match by meaning: cosine similarity, 0.35 to 1."
    )
    job: JobOut


class SearchPage(BaseModel):
    data: list[SearchHit]
    by_meaning: bool = Field(
        description="Whether this server searches by meaning (IMAGEMILL_SEMANTIC_SEARCH, "
        "with imagemill[search] installed); if not, only by words."
    )


@router.get("", response_model=SearchPage)
async def search_jobs(
    owner: CurrentOwner,
    runtime: RuntimeDep,
    links: LinksDep,
    q: Annotated[str, Query(min_length=1, max_length=500, description="What to look for.")],
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> SearchPage:
    """Jobs containing the words first (newest first), then those about them (closest
    first); "ship on the ocean" finds "a small boat at sea"."""
    hits = await runtime.meaning.find(runtime.repo, owner.id, q, JobFilter(), limit)
    return SearchPage(
        data=[
            SearchHit(
                matched="words" if hit.score is None else "meaning",
                score=None if hit.score is None else round(hit.score, 4),
                job=JobOut.of(hit.job, links),
            )
            for hit in hits
        ],
        by_meaning=runtime.meaning.available,
    )
