"""Work stealing between distributed workers: one with nothing to do takes queued jobs
that the others hold in their lines.

A worker takes every wake-up the broker hands it into its own line (``Worker.wake``),
where owners take turns. A backlog is thereby split among the workers listening when it
arrived: one that runs out first, or starts later, would sit idle while another still
has hundreds queued in its line. The jobs table is the truth, so when a job ends in a
worker where nothing else waits, the worker asks the table for due queued jobs and
wakes them here, newest first: the workers holding them reach those last, so the two
rarely race for one. If they do, the first claim wins and the other finds the job no
longer queued (``Queries.to_schedule``) and drops it before taking a slot. A taken job
whose providers' circuits are open is dropped here too (its holder sends it again
later), and one that must wait for its batch's limit waits here as in its holder's line:
while anything waits here, the worker does not look. A job taken is not taken again for
``TAKEN_SECONDS``, so jobs that cannot start yet do not hide older ones that can.

A worker looks at most once per ``interval``, and while looks find nothing the pause
doubles up to ``LONGEST_PAUSE_SECONDS``: one idle on an empty queue asks the table a
few times a minute at most, never in a loop. The embedded server does not steal: its
one process receives every message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from imagemill.db.queries import Queries
from imagemill.jobs.service import utcnow

log = logging.getLogger(__name__)

LOOK_SECONDS = 0.2  # at most one look at the table per this, per worker
MOST_PER_LOOK = 16  # jobs taken in one look, however many slots are free
LONGEST_PAUSE_SECONDS = 5.0  # between looks, after many that found nothing
TAKEN_SECONDS = 30.0  # a job taken is not taken again for this long


class Stealing:
    """Looks for queued jobs for an idle worker, and hands their ids to ``wake``.

    ``room()``: how many jobs the worker would start now (0 while any waits there)."""

    def __init__(
        self,
        queries: Queries,
        wake: Callable[..., None],
        room: Callable[[], int],
        interval: float = LOOK_SECONDS,
    ) -> None:
        self.queries = queries
        self.wake = wake  # called as ``wake(job_id, stolen=True)``
        self.room = room
        self.interval = interval
        self._pause = interval  # until the next look: doubles while looks find nothing
        self._last_look = float("-inf")
        self._looking: asyncio.Task[None] | None = None
        self._taken: dict[str, float] = {}  # job id → when: a job still queued a while
        self.taken = 0  # jobs woken here by looking (for tests and logs)

    def idle(self) -> None:
        """The worker started, or a wake-up ended there: look if it has room, now or once
        the pause since the last look is over."""
        if self.room() <= 0 or (self._looking is not None and not self._looking.done()):
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, self._last_look + self._pause - loop.time())
        self._looking = loop.create_task(self._look(delay))

    async def _look(self, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        now = self._last_look = asyncio.get_running_loop().time()
        room = self.room()  # again: jobs may have come meanwhile
        if room <= 0:
            return
        self._taken = {j: at for j, at in self._taken.items() if now - at < TAKEN_SECONDS}
        try:
            job_ids = await self.queries.due_queued(
                utcnow(), min(room, MOST_PER_LOOK), skip=list(self._taken)
            )
        except Exception:
            log.warning("could not look for queued jobs to take", exc_info=True)
            return
        found = bool(job_ids)
        self._pause = self.interval if found else min(self._pause * 2, LONGEST_PAUSE_SECONDS)
        for job_id in job_ids:
            self._taken[job_id] = now
            self.wake(job_id, stolen=True)
        self.taken += len(job_ids)

    async def stop(self) -> None:
        if self._looking is not None:
            self._looking.cancel()
            await asyncio.gather(self._looking, return_exceptions=True)
