"""``/v1/usage``: what your images cost, per model and day, and your budgets."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated

from fastapi import APIRouter, Query

from imagemill.api.deps import CurrentOwner, RuntimeDep
from imagemill.api.routing import CheckedRoute
from imagemill.api.schemas import Day, ErrorOut, UsageDay, UsageOut
from imagemill.api.spend_schemas import BudgetOut
from imagemill.db.budgets import scopes_of
from imagemill.errors import InvalidInput

router = APIRouter(prefix="/v1/usage", tags=["usage"], route_class=CheckedRoute)


@router.get(
    "", response_model=UsageOut, responses={401: {"model": ErrorOut}, 422: {"model": ErrorOut}}
)
async def get_usage(
    owner: CurrentOwner,
    runtime: RuntimeDep,
    since: Annotated[Day | None, Query(description="First UTC day counted (YYYY-MM-DD).")] = None,
    until: Annotated[Day | None, Query(description="Last UTC day counted, inclusive.")] = None,
) -> UsageOut:
    """Images (and texts) made and their cost, summed by model and UTC day (cache hits
    cost 0; a prompt enhanced before rendering is a cost of its text model, with no image);
    `until` before `since` is a 422."""
    if since and until and until < since:
        raise InvalidInput("'until' is before 'since'", field="until")
    start = datetime.combine(since, time(), UTC) if since else None
    end = None  # with no until, or the last day there is: to the end
    if until is not None and until < date.max:
        end = datetime.combine(until + timedelta(days=1), time(), UTC)
    rows = await runtime.repo.usage(owner.id, start, end)
    scopes = scopes_of(owner.id, owner.key_id)
    states = await runtime.budgets.of(scopes, datetime.now(UTC))
    return UsageOut(
        budgets=[BudgetOut.of(state) for state in states],
        since=since,
        until=until,
        total_cost_usd=round(sum(r.cost_usd for r in rows), 6),
        total_images=sum(r.images for r in rows),
        data=[
            UsageDay(
                day=r.day, model=r.model, images=r.images, cached=r.cached, cost_usd=r.cost_usd
            )
            for r in rows
        ],
    )
