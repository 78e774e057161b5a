"""Work stealing between distributed workers: one with nothing to do takes queued jobs
that the others hold in their lines.

A worker takes every wake-up the broker hands it into its own line (``Worker.wake``),
where owners take turns. A backlog is thereby split among the workers listening when it
arrived: one that runs out first, or starts later, would sit idle while another still
has hundreds queued in its line. The jobs table is the truth, so when a job ends in a
worker where nothing else waits, the worker asks the table for due queued jobs and
wakes them here, newest first: the workers holding them reach those last, so the two
rarely race for one. If they do, the first claim wins and the other finds the job no
longer queued (``Queries.to_schedule``) and drops it before taking a slot.

A worker looks at most once per ``interval``, so one idle on an empty queue asks the
table about as often as its jobs end, never in a loop. The embedded server does not
steal: its one process receives every message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from imagemill.db.queries import Queries
from imagemill.jobs.service import utcnow

log = logging.getLogger(__name__)

LOOK_SECONDS = 0.2  # at most one look at the table per this, per worker


class Stealing:
    """Looks for queued jobs for an idle worker, and hands their ids to ``wake``."""

    def __init__(
        self, queries: Queries, wake: Callable[[str], None], interval: float = LOOK_SECONDS
    ) -> None:
        self.queries = queries
        self.wake = wake
        self.interval = interval
        self._last_look = float("-inf")
        self._looking: asyncio.Task[None] | None = None
        self.taken = 0  # jobs woken here by looking (for tests and logs)

    def idle(self, room: int) -> None:
        """Nothing waits in the worker and ``room`` slots are free: look for up to
        ``room`` jobs, now or once ``interval`` has passed since the last look."""
        if room <= 0 or (self._looking is not None and not self._looking.done()):
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, self._last_look + self.interval - loop.time())
        self._looking = loop.create_task(self._look(delay, room))

    async def _look(self, delay: float, room: int) -> None:
        if delay:
            await asyncio.sleep(delay)
        self._last_look = asyncio.get_running_loop().time()
        try:
            job_ids = await self.queries.due_queued(utcnow(), room)
        except Exception:
            log.warning("could not look for queued jobs to take", exc_info=True)
            return
        for job_id in job_ids:
            self.wake(job_id)
        self.taken += len(job_ids)

    async def stop(self) -> None:
        if self._looking is not None:
            self._looking.cancel()
            await asyncio.gather(self._looking, return_exceptions=True)
