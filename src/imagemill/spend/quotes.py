"""A quote: what a job or batch request would cost, and whether it fits the caller's
budgets, before anything runs (``POST /v1/estimate``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from imagemill.db.budgets import BudgetState
from imagemill.spend.estimates import Estimate


@dataclass(frozen=True, slots=True)
class QuoteItem:
    """One job of the request: its estimate, or nothing if it would be a cache hit."""

    estimate: Estimate
    cached: bool

    @property
    def cost_micros(self) -> int:
        return 0 if self.cached else self.estimate.cost_micros

    @property
    def reserve_micros(self) -> int:
        return 0 if self.cached else self.estimate.reserve_micros


@dataclass(frozen=True, slots=True)
class Quote:
    items: Sequence[QuoteItem]
    budgets: Sequence[BudgetState]  # the caller's (its key's, its owner's), as they stand

    @property
    def cost_micros(self) -> int:
        """The total if every job is made by the model it asks for."""
        return sum(item.cost_micros for item in self.items)

    @property
    def reserve_micros(self) -> int:
        """What submitting it would hold against the budgets: the most it can cost."""
        return sum(item.reserve_micros for item in self.items)

    @property
    def fits(self) -> bool:
        """Whether submitting it now would be accepted by every budget."""
        return all(self.reserve_micros <= b.remaining_micros for b in self.budgets)
