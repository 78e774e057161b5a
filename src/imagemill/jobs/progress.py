"""Progress that scales: every report live at once, the log at a bounded rate.

A provider may report progress many times a second, and 10,000 jobs in flight would
make each report a write. Instead a report is published on this process's bus at once,
as a *live* event: not stored, with no log position (``id`` ``None``) and the ``seq`` of
the job's last stored event, so a stream sends it without an SSE id and a client
resuming from ``Last-Event-ID`` loses nothing that is stored. The latest report of each
job is stored (a ``progress`` event, and the job's ``progress`` columns) at most every
``interval`` seconds, and at most ``per_second`` of them a second across all jobs, in
one write transaction per tick: what resuming needs stays in the log (every status,
preview, output and log event, and each job's latest progress, a little behind).

With several processes on PostgreSQL, each tick also announces the latest live report
of each job to the other processes (``NOTIFY``, not stored), so a stream in an API
process follows a job run by a worker in another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from imagemill.db.repository import Repository
from imagemill.events.bus import Event, EventBus
from imagemill.jobs.service import utcnow

log = logging.getLogger(__name__)

LOG_INTERVAL_SECONDS = 2.0  # a job's progress is stored at most this often
LOGGED_PER_SECOND = 500  # progress events stored a second, at most, across all jobs
TICK_SECONDS = 0.25  # how often due progress is stored and other processes are told


@dataclass
class _Job:
    worker: str
    owner_id: str = ""  # from its first event seen here (the claim's)
    seq: int = 0  # of the job's last stored event seen here
    latest: dict[str, Any] | None = None  # the report not stored yet
    logged_at: float = float("-inf")  # time.monotonic() of the last one stored
    announce: Event | None = None  # the live event other processes have not been told of


class ProgressLog:
    """The progress of the jobs running in this process (``track``ed by the worker)."""

    def __init__(
        self,
        repo: Repository,
        bus: EventBus,
        interval: float = LOG_INTERVAL_SECONDS,
        per_second: int = LOGGED_PER_SECOND,
        tick_seconds: float = TICK_SECONDS,
    ) -> None:
        self.repo = repo
        self.bus = bus
        self.interval = interval
        self.tick_seconds = tick_seconds
        self.per_tick = max(1, int(per_second * tick_seconds))
        self._jobs: dict[str, _Job] = {}
        self._ticking: asyncio.Task[None] | None = None
        bus.add_listener(self._observe)

    @contextlib.contextmanager
    def track(self, job_id: str, worker: str) -> Iterator[None]:
        """Follow ``job_id``'s events while an attempt of it runs here (from before its
        claim, whose ``status`` event gives its owner and the position live reports
        carry)."""
        self._jobs[job_id] = _Job(worker)
        try:
            yield
        finally:
            self._jobs.pop(job_id, None)  # a report not stored by now never will be

    def report(self, job_id: str, fraction: float, message: str | None) -> None:
        """A report of the job's progress: live now, stored when its turn comes."""
        job = self._jobs.get(job_id)
        if job is None or not job.seq:
            return  # the attempt ended
        data = {"progress": fraction, "message": message}
        event: Event = {
            "id": None,
            "job_id": job_id,
            "owner_id": job.owner_id,
            "seq": job.seq,
            "type": "progress",
            "data": data,
            "created_at": utcnow(),
            "live": True,
        }
        job.latest = data
        job.announce = event
        self.bus.publish([event])
        if self._ticking is None or self._ticking.done():
            self._ticking = asyncio.create_task(self._tick_while_running())

    async def stop(self) -> None:
        if self._ticking is not None:
            self._ticking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticking

    def _observe(self, event: Event) -> None:
        job = self._jobs.get(event.get("job_id", ""))
        if job is not None and not event.get("live") and event.get("seq") is not None:
            job.seq = max(job.seq, event["seq"])
            job.owner_id = event["owner_id"]

    async def _tick_while_running(self) -> None:
        while any(job.latest is not None or job.announce for job in self._jobs.values()):
            await asyncio.sleep(self.tick_seconds)
            try:
                await self.tick()
            except Exception:  # a database hiccup: the next tick stores the latest then
                log.warning("storing progress failed", exc_info=True)

    async def tick(self) -> None:
        """Store the reports that are due (the longest unstored first, ``per_tick`` at
        most) in one transaction, and tell other processes of the latest live ones;
        a background task does this every ``tick_seconds`` while reports come."""
        now = time.monotonic()
        due = [
            (job_id, job)
            for job_id, job in self._jobs.items()
            if job.latest is not None and now - job.logged_at >= self.interval
        ]
        due.sort(key=lambda item: item[1].logged_at)  # the longest unstored first
        due = due[: self.per_tick]
        reports = []
        for job_id, job in due:
            assert job.latest is not None
            reports.append((job_id, job.worker, job.latest))
            job.latest, job.logged_at = None, now
        announced = [job.announce for job in self._jobs.values() if job.announce]
        for job in self._jobs.values():
            job.announce = None
        await self.repo.record_progress(reports, utcnow())
        await self.repo.announce(announced[: self.per_tick])
