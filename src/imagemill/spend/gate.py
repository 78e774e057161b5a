"""What submit asks of spend controls, once per request: each job's price
(``estimate``), the key's images a minute (``admit`` checks, ``made`` counts) and its
limit on jobs in flight (checked by the repository as jobs are recorded), and, for
``POST /v1/estimate``, a ``quote``. The budgets themselves are held in the transaction
that records the jobs (``db/budgets.py``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from imagemill.db import budgets
from imagemill.db.budgets import InFlightLimit
from imagemill.db.queries import Queries
from imagemill.db.records import JobDraft
from imagemill.domain import Job, Request, output_count
from imagemill.providers.registry import Registry
from imagemill.spend.estimates import Estimate, estimate
from imagemill.spend.limits import KeyLimits, RateLimits
from imagemill.spend.quotes import Quote, QuoteItem


class SpendGate:
    def __init__(self, registry: Registry, queries: Queries, rate_limits: RateLimits) -> None:
        self.registry = registry
        self.queries = queries
        self.rate_limits = rate_limits

    def estimate(self, request: Request) -> Estimate:
        """What a resolved request will cost (``spend/estimates.py``)."""
        return estimate(request, lambda model: self.registry.resolve(model)[1])

    async def admit(
        self, requests: Iterable[Request], key_id: str | None, limits: KeyLimits | None
    ) -> InFlightLimit | None:
        """Check the images ``requests`` would make against the key's images a minute
        (``TooManyRequests`` past it; counted once recorded, by ``made``); the limit on
        its jobs in flight, which recording them checks (``db/budgets.py``), if any."""
        if key_id is None or limits is None:
            return None
        await self.rate_limits.check_images(key_id, limits, _images(requests))
        if limits.concurrent_jobs is None:
            return None
        return InFlightLimit(key_id, limits.concurrent_jobs)

    async def made(self, jobs: Sequence[Job], key_id: str | None, limits: KeyLimits | None) -> None:
        """Count the images of ``jobs``, just recorded, against the key's images a minute
        (cache hits make none)."""
        if key_id is not None and limits is not None:
            made = _images(job.request for job in jobs if not job.cached)
            await self.rate_limits.count_images(key_id, limits, made)

    async def quote(
        self, owner_id: str, drafts: Sequence[JobDraft], key_id: str | None, now: datetime
    ) -> Quote:
        """What submitting ``drafts`` now would cost and hold, and the budgets of
        ``key_id`` and the owner as they stand; nothing is recorded."""
        keys = [d.cache_key for d in drafts if d.reuse_cached and d.cache_key]
        scopes = budgets.scopes_of(owner_id, key_id)
        cached, states = await self.queries.spend_context(owner_id, keys, scopes, now)
        items = [
            QuoteItem(self.estimate(d.request), cached=d.reuse_cached and d.cache_key in cached)
            for d in drafts
        ]
        return Quote(items, states)


def _images(requests: Iterable[Request]) -> int:
    """How many outputs ``requests`` make (``n`` each, per tone for a caption)."""
    return sum(output_count(r.kind, r.n, r.params) for r in requests)
