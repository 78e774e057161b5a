"""``/v1/admin``: what operators manage over the API (budgets, keys' rate limits), for
admin keys only
(``imagemill keys create NAME --admin``; on a keyless loopback server, the local owner)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, status

from imagemill.api.deps import CurrentOwner, RuntimeDep
from imagemill.api.routing import CheckedRoute
from imagemill.api.schemas import ErrorOut
from imagemill.api.spend_schemas import BudgetIn, BudgetOut, KeyLimitsIn, KeyLimitsOut
from imagemill.db.accounts import Owner
from imagemill.errors import Forbidden, NotFound
from imagemill.jobs.service import utcnow
from imagemill.spend.budgets import Limit, Period, to_micros


async def admin_caller(owner: CurrentOwner, runtime: RuntimeDep) -> Owner:
    """An admin key's owner; or, on a keyless loopback server, the local owner (a call
    with no key: whoever may call it runs the machine anyway)."""
    keyless = not runtime.settings.keys_required and owner.key_id is None
    if owner.admin or keyless:
        return owner
    raise Forbidden("this needs an admin key (`imagemill keys create NAME --admin`)")


router = APIRouter(
    prefix="/v1/admin",
    tags=["admin"],
    route_class=CheckedRoute,
    dependencies=[Depends(admin_caller)],
)
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut},
    403: {"model": ErrorOut},
    404: {"model": ErrorOut},
    422: {"model": ErrorOut},
}
Scope = Annotated[
    str,
    Path(
        max_length=40,
        description="An API key's id (`key_…`, as `imagemill keys ls` shows it): that key's "
        "budget; or an owner's id (`own_…`): all its keys' together.",
    ),
]


@router.get("/budgets", response_model=list[BudgetOut], responses=ERRORS)
async def list_budgets(runtime: RuntimeDep) -> list[BudgetOut]:
    """Every budget set, each in its current period."""
    return [BudgetOut.of(state) for state in await runtime.budgets.all(utcnow())]


@router.put("/budgets/{scope}", response_model=BudgetOut, responses=ERRORS)
async def set_budget(scope: Scope, body: BudgetIn, runtime: RuntimeDep) -> BudgetOut:
    """Set or change the budget of a key or an owner. What was spent in the current
    period still counts against the new limit; requests past it get 402."""
    owner_id = await runtime.budgets.owner_of(scope)
    limit = Limit(to_micros(body.limit_usd), Period(body.period))
    return BudgetOut.of(await runtime.budgets.set(scope, owner_id, limit, utcnow()))


@router.delete("/budgets/{scope}", status_code=status.HTTP_204_NO_CONTENT, responses=ERRORS)
async def remove_budget(scope: Scope, runtime: RuntimeDep) -> None:
    """Remove a budget (what it spent is kept: set again this period, it counts)."""
    if not await runtime.budgets.remove(scope):
        raise NotFound(f"no budget is set for {scope}")


KeyId = Annotated[
    str, Path(max_length=40, description="The key's id (`key_…`, as `imagemill keys ls` shows it).")
]


@router.put("/keys/{key_id}/limits", response_model=KeyLimitsOut, responses=ERRORS)
async def set_key_limits(key_id: KeyId, body: KeyLimitsIn, runtime: RuntimeDep) -> KeyLimitsOut:
    """Set a key's rate limits, all at once (null lifts one): requests and images a
    minute, jobs queued or running at once. Past one, its requests get 429 with
    `Retry-After` and the IETF `RateLimit` headers."""
    await runtime.accounts.set_limits(key_id, body.limits())
    return KeyLimitsOut(key_id=key_id, **body.model_dump())
