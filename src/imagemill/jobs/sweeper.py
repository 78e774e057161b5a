"""The sweeper: finds jobs whose wake-up was lost and sends it again.

It runs at start-up and every ``sweep_interval_seconds``. Queued jobs due for longer
than ``requeue_after_seconds`` get a new message; a running job whose lease expired (its
worker died) is queued again and gets one, or is failed if that was its last attempt;
and a job past its deadline that no worker is running is failed. Running it in many
processes at once is safe: messages are idempotent (the claim decides) and the
expiry is a compare-and-set.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from imagemill.db.repository import Repository
from imagemill.domain import JobStatus
from imagemill.errors import DeadlineExceeded, ImagemillError
from imagemill.jobs.service import utcnow

log = logging.getLogger(__name__)

BATCH = 500


class WorkerLost(ImagemillError):
    code = "worker_lost"


class Sweeper:
    def __init__(
        self,
        repo: Repository,
        dispatch: Callable[[str], Awaitable[None]],
        requeue_after: float,
        interval: float,
    ) -> None:
        self.repo = repo
        self.dispatch = dispatch
        self.requeue_after = requeue_after
        self.interval = interval

    async def sweep(self, requeue_after: float | None = None) -> int:
        """One pass; returns how many jobs it re-sent or failed."""
        now = utcnow()
        overdue = await self.repo.overdue_jobs(now, BATCH)
        for job_id in overdue:
            await self.repo.fail_overdue(job_id, DeadlineExceeded("the job's deadline passed"), now)
        wait = self.requeue_after if requeue_after is None else requeue_after
        stale = await self.repo.stale_jobs(now, now - timedelta(seconds=wait), BATCH)
        for row in stale:
            if row.status == JobStatus.RUNNING and row.attempt >= row.max_attempts:
                error = WorkerLost(f"the worker running attempt {row.attempt} stopped responding")
                await self.repo.expire(row.id, error, now)
                continue
            if row.status == JobStatus.RUNNING and not await self.repo.lapse(row.id, now):
                continue  # its worker renewed the lease after all, or it ended
            await self.dispatch(row.id)
        if stale or overdue:
            log.info(
                "sweeper failed %d overdue jobs, re-sent or expired %d", len(overdue), len(stale)
            )
        return len(stale) + len(overdue)

    async def run(self, first_requeue_after: float | None = None) -> None:
        """Sweep now, then forever every ``interval`` seconds."""
        requeue_after = first_requeue_after
        while True:
            try:
                await self.sweep(requeue_after)
            except Exception:
                log.exception("sweep failed; trying again in %s s", self.interval)
            requeue_after = None
            await asyncio.sleep(self.interval)
