"""Wire schemas of spend: budgets as callers and operators see them, estimates, and the
402 a request past a budget gets."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from imagemill.db.budgets import BudgetState
from imagemill.spend.budgets import MAX_BUDGET_USD, MIN_BUDGET_USD, Period, to_usd
from imagemill.spend.limits import KeyLimits
from imagemill.spend.quotes import Quote, QuoteItem

PeriodName = Literal["day", "week", "month", "total"]


class BudgetOut(BaseModel):
    """A budget and where its current period stands, in USD."""

    scope: Literal["key", "owner"] = Field(
        description="`key`: one API key's; `owner`: all of an owner's keys (and keyless calls)."
    )
    id: str = Field(description="The key's id (`key_…`) or the owner's (`own_…`).")
    period: PeriodName = Field(
        description="A UTC calendar day, week (from Monday), month, or in total."
    )
    limit_usd: float
    spent_usd: float = Field(description="What jobs that succeeded this period cost.")
    reserved_usd: float = Field(
        description="Held by jobs not finished yet: their estimate, until they end."
    )
    remaining_usd: float = Field(description="What new requests may still hold.")
    period_start: datetime
    resets_at: datetime | None = Field(description="When the next period starts; null: never.")

    @classmethod
    def of(cls, state: BudgetState) -> BudgetOut:
        return cls(
            scope=state.applies_to,
            id=state.scope,
            period=state.limit.period.value,
            limit_usd=to_usd(state.limit.limit_micros),
            spent_usd=to_usd(state.spent_micros),
            reserved_usd=to_usd(state.reserved_micros),
            remaining_usd=to_usd(state.remaining_micros),
            period_start=state.period_start,
            resets_at=state.resets_at,
        )


class BudgetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit_usd: float = Field(
        ge=MIN_BUDGET_USD,
        le=float(MAX_BUDGET_USD),
        description="US dollars per period (to the millionth of a dollar).",
    )
    period: PeriodName = Field(
        Period.MONTH.value,
        description="A UTC calendar day, week (from Monday), month, or in total.",
    )


class EstimateItemOut(BaseModel):
    model: str
    kind: str
    outputs: int = Field(description="Images (or texts) the job makes.")
    unit_usd: float = Field(description="Each output, made by the model asked for.")
    cost_usd: float = Field(
        description="The job, made by the model asked for (0 for a cache hit), enhancing included."
    )
    reserve_usd: float = Field(
        description="The most it can cost (its priciest fallback): what submit holds "
        "against budgets until it ends."
    )
    cached: bool = Field(description="It would be served from the cache, at no cost.")

    @classmethod
    def of(cls, item: QuoteItem) -> EstimateItemOut:
        estimate = item.estimate
        return cls(
            model=estimate.model,
            kind=estimate.kind.value,
            outputs=estimate.outputs,
            unit_usd=to_usd(estimate.unit_micros),
            cost_usd=to_usd(item.cost_micros),
            reserve_usd=to_usd(item.reserve_micros),
            cached=item.cached,
        )


class EstimateOut(BaseModel):
    """What a request would cost, and whether it fits the caller's budgets now."""

    object: Literal["estimate"] = "estimate"
    currency: Literal["USD"] = "USD"
    items: list[EstimateItemOut] = Field(description="One per job the request would make.")
    total_usd: float = Field(description="Every job made by the model it asks for.")
    reserve_usd: float = Field(description="What submitting it would hold against budgets.")
    fits_budget: bool = Field(description="Submitting it now would not be refused with 402.")
    budgets: list[BudgetOut] = Field(
        description="The caller's budgets (its key's, its owner's), as they stand."
    )

    @classmethod
    def of(cls, quote: Quote) -> EstimateOut:
        return cls(
            items=[EstimateItemOut.of(item) for item in quote.items],
            total_usd=to_usd(quote.cost_micros),
            reserve_usd=to_usd(quote.reserve_micros),
            fits_budget=quote.fits,
            budgets=[BudgetOut.of(state) for state in quote.budgets],
        )


class BudgetErrorBody(BaseModel):
    code: Literal["budget_exceeded"]
    message: str
    scope: Literal["key", "owner"]
    period: PeriodName
    limit: float = Field(description="USD per period.")
    spent: float
    reserved: float
    remaining: float
    requested: float = Field(description="What the request would have held.")
    resets_at: str | None = Field(description="ISO 8601, UTC; null for a total budget.")


class BudgetErrorOut(BaseModel):
    """402: the request would take its caller past a budget; nothing was recorded."""

    error: BudgetErrorBody


RateLimit = Annotated[int | None, Field(ge=1, le=1_000_000)]


class KeyLimitsIn(BaseModel):
    """An API key's rate limits, all at once: null (or left out) lifts one."""

    model_config = ConfigDict(extra="forbid")

    requests_per_minute: RateLimit = Field(None, description="Requests a minute (429 past it).")
    images_per_minute: RateLimit = Field(None, description="Images a minute its requests make.")
    concurrent_jobs: RateLimit = Field(None, description="Its jobs queued or running at once.")

    def limits(self) -> KeyLimits:
        return KeyLimits(self.requests_per_minute, self.images_per_minute, self.concurrent_jobs)


class KeyLimitsOut(KeyLimitsIn):
    key_id: str
