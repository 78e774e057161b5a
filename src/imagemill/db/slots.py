"""Per-provider concurrency limits that hold across every worker process.

``provider_concurrency = {"openai": 4}`` means at most 4 jobs call OpenAI at once in
the whole deployment. Each allowed call is a slot row, leased by compare-and-set like a
job: the holder (the job, where there is one) renews the lease while it works and frees
the slot after; a holder that died frees it when the lease runs out and, a job, once it
no longer reads running. One process alone (SQLite) needs no rows:
an in-process line does the same, and serves owners in turn (``jobs/scheduling.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, and_, bindparam, case, exists, or_, select, update

from imagemill.db.engine import Database
from imagemill.db.tables import UTCDateTime, jobs, provider_slots
from imagemill.domain import JobStatus
from imagemill.ids import new_id
from imagemill.jobs.scheduling import FairLine, Lane

POLL_SECONDS = (0.05, 0.25)  # between tries for a slot, at random within
# A slot is free when nobody holds it, or its holder died (the lease ran out) and, where
# the holder was a job, that job no longer reads running: a batch's items that were
# running when their process died count against its limit until the sweeper has queued
# them again, however the two leases happen to fall. A job may take back its own.
_holder_runs = exists().where(
    jobs.c.id == provider_slots.c.holder, jobs.c.status == JobStatus.RUNNING.value
)
_free = or_(
    provider_slots.c.holder.is_(None),
    and_(
        provider_slots.c.expires_at < bindparam("now"),
        or_(provider_slots.c.holder == bindparam("p_holder"), ~_holder_runs),
    ),
)
_TAKE = (
    update(provider_slots)
    .where(
        provider_slots.c.provider == bindparam("p_provider"),
        provider_slots.c.slot == bindparam("p_slot"),
        _free,
    )
    .values(holder=bindparam("p_holder"), expires_at=bindparam("until", type_=UTCDateTime()))
)
_FREE_SLOTS = (
    select(provider_slots.c.slot)
    .where(
        provider_slots.c.provider == bindparam("p_provider"),
        provider_slots.c.slot < bindparam("limit"),
        _free,
    )
    # A job's own slot from before its process died first: no other row stays taken by it.
    .order_by(
        case((provider_slots.c.holder == bindparam("p_holder"), 0), else_=1),  # NULL: 1
        provider_slots.c.slot,
    )
)
_RENEW = (
    update(provider_slots)
    .where(
        and_(
            provider_slots.c.provider == bindparam("p_provider"),
            provider_slots.c.slot == bindparam("p_slot"),
            provider_slots.c.holder == bindparam("p_holder"),
        )
    )
    .values(expires_at=bindparam("until", type_=UTCDateTime()))
)
_RELEASE = (
    update(provider_slots)
    .where(
        provider_slots.c.provider == bindparam("p_provider"),
        provider_slots.c.slot == bindparam("p_slot"),
        provider_slots.c.holder == bindparam("p_holder"),
    )
    .values(holder=None, expires_at=None)
)


class ProviderSlots:
    def __init__(self, db: Database, limits: Mapping[str, int], lease_seconds: float) -> None:
        self.db = db
        self.limits = dict(limits)
        self.lease = timedelta(seconds=lease_seconds)
        self._local: dict[str, FairLine] = {}
        self._made: set[str] = set()  # providers whose slot rows exist
        self._leased: set[str] = set()  # limits given per call (batches): rows even on SQLite

    @contextlib.asynccontextmanager
    async def hold(
        self,
        provider: str,
        key: str | None = None,
        lane: Lane = ("", None),
        limit: int | None = None,
    ) -> AsyncIterator[None]:
        """Wait for a slot of ``provider`` (if it has a limit) and hold it meanwhile;
        ``key`` (a job id) waits in ``lane``'s turn (see ``position``). ``limit``: one
        given here, not configured (a batch's concurrency: ``batch:<id>``)."""
        if limit is not None:
            self._leased.add(provider)
        limit = limit if limit is not None else self.limits.get(provider)
        if limit is None:
            yield
            return
        # This process never holds more than the limit: its own line first (fair, and
        # where a job's place is known); then, shared with other processes, a slot row.
        line = self._local.setdefault(provider, FairLine(limit))
        try:
            async with line.slot(key or new_id("slot"), lane):
                # One process owns a SQLite database: its line is enough for a provider. A
                # batch's items that were running when a process died still read
                # running until their leases run out: its slot rows (leased alike) count
                # them, so a restart never runs more than its concurrency.
                if self.db.is_sqlite and provider not in self._leased:
                    yield
                    return
                async with self._row(provider, limit, key):
                    yield
        finally:
            if line.idle and self._local.get(provider) is line and provider not in self.limits:
                del self._local[provider]  # a batch's, done with for now: no line kept

    @contextlib.asynccontextmanager
    async def _row(self, provider: str, limit: int, key: str | None) -> AsyncIterator[None]:
        """A slot row of ``provider``'s, leased while held; its holder is the job
        (``key``) where there is one."""
        holder = key or new_id("slot")
        slot = await self._take(provider, limit, holder)
        renewing = asyncio.create_task(self._renew(provider, slot, holder))
        try:
            yield
        finally:
            renewing.cancel()
            params = {"p_provider": provider, "p_slot": slot, "p_holder": holder}
            await asyncio.shield(self.db.write(lambda conn: conn.execute(_RELEASE, params)))

    def position(self, key: str) -> int | None:
        """Where ``key`` waits for a provider's slot in this process (1: next), if it does."""
        for line in self._local.values():
            if (place := line.position(key)) is not None:
                return place
        return None

    async def _take(self, provider: str, limit: int, holder: str) -> int:
        if provider not in self._made:
            rows = [{"provider": provider, "slot": slot} for slot in range(limit)]
            insert = self.db.insert(provider_slots).on_conflict_do_nothing()
            await self.db.write(lambda conn: conn.execute(insert, rows))
            self._made.add(provider)

        def attempt(conn: Connection) -> int | None:
            now = datetime.now(UTC)
            free = conn.execute(
                _FREE_SLOTS,
                {"p_provider": provider, "limit": limit, "now": now, "p_holder": holder},
            ).scalars()
            for slot in free:
                params = {
                    "p_provider": provider,
                    "p_slot": slot,
                    "p_holder": holder,
                    "now": now,
                    "until": now + self.lease,
                }
                if conn.execute(_TAKE, params).rowcount:
                    return int(slot)
            return None

        while True:
            slot = await self.db.write(attempt)
            if slot is not None:
                return slot
            await asyncio.sleep(random.uniform(*POLL_SECONDS))

    async def _renew(self, provider: str, slot: int, holder: str) -> None:
        def renew(conn: Connection) -> None:
            until = datetime.now(UTC) + self.lease
            conn.execute(
                _RENEW, {"p_provider": provider, "p_slot": slot, "p_holder": holder, "until": until}
            )

        while True:
            await asyncio.sleep(self.lease.total_seconds() / 3)
            with contextlib.suppress(Exception):  # a hiccup: the lease has slack for more
                await self.db.write(renew)
