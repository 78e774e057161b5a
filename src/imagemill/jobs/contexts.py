"""The ``RunContext`` a worker hands each provider call, and the callbacks that nudge it.

What an adapter does through its context becomes the job's record: progress (live per
1% at most, stored at a bounded rate: ``jobs/progress.py``), small previews, the
provider's request id (saved under the attempt's lease, with the model it belongs to, so
no other model of a fallback chain resumes it).

``Nudges`` holds one wake-up per attempt running in this process. A provider's verified
callback about a job (``POST /v1/providers/{provider}/webhook?job=…``, received by this
process or by another and passed on through PostgreSQL) sets it, and the adapter's
``ctx.nudged(poll_interval)`` returns at once: it asks the provider now instead of at
its next poll. A nudge is set from before the provider is called, so one that comes
before the adapter waits (even before its request id is saved) is kept for it.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

import httpx

from imagemill.db.repository import Repository
from imagemill.domain import Job
from imagemill.jobs.progress import ProgressLog
from imagemill.jobs.service import utcnow
from imagemill.memory import HoldMemory
from imagemill.providers.base import RunContext

PROGRESS_MIN_STEP = 0.01  # a progress event is stored per 1% of progress at most
MAX_PREVIEW_BYTES = 256 * 1024


class Nudges:
    """The wake-ups of the attempts running in this process, by job id."""

    def __init__(self) -> None:
        self._running: dict[str, asyncio.Event] = {}

    @contextmanager
    def attempt(self, job_id: str) -> Iterator[asyncio.Event]:
        """The wake-up of one attempt of ``job_id``, for as long as it runs."""
        nudge = self._running[job_id] = asyncio.Event()
        try:
            yield nudge
        finally:
            if self._running.get(job_id) is nudge:  # not a newer attempt's
                del self._running[job_id]

    def of(self, job_id: str) -> asyncio.Event:
        """The running attempt's wake-up (one nobody sets when none runs here)."""
        return self._running.get(job_id) or asyncio.Event()

    def nudge(self, job_id: str) -> bool:
        """Wake the attempt of ``job_id`` if it runs here; whether it does."""
        nudge = self._running.get(job_id)
        if nudge is not None:
            nudge.set()
        return nudge is not None


async def nudged(nudge: asyncio.Event, within: float) -> bool:
    """``RunContext.nudged``: whether ``nudge`` is set, or gets set within ``within``
    seconds; then it is taken, and the next call waits for the next callback."""
    try:
        async with asyncio.timeout(within):
            await nudge.wait()
    except TimeoutError:
        return False
    nudge.clear()
    return True


def webhook_url(public_url: str | None, provider: str, job_id: str) -> str | None:
    """Where ``provider`` calls back about ``job_id``: naming the job, so whichever API
    process receives the callback nudges its attempt without looking anything up."""
    if not public_url:
        return None
    return f"{public_url.rstrip('/')}/v1/providers/{provider}/webhook?job={job_id}"


def ref_for(saved: str | None, model_id: str) -> str | None:
    """The provider request id a previous attempt saved, if it was this model's."""
    owner, _, ref = (saved or "").partition(" ")
    return ref if owner == model_id and ref else None


def run_context(
    job: Job,
    model_id: str,
    *,
    repo: Repository,
    worker_id: str,
    http: httpx.AsyncClient,
    seconds: float,
    abandoned: Callable[[], bool],
    public_url: str | None,
    nudge: asyncio.Event,
    progress: ProgressLog,
    hold_memory: HoldMemory,
    clock: asyncio.Timeout,
) -> RunContext:
    """The context of one call of ``model_id``'s provider for ``job``, which has
    ``seconds`` left; ``abandoned`` says whether nobody will resume its work.
    ``hold_memory`` counts answers against the response budget, with the attempt's
    ``clock`` stopped while it waits: waiting for this process's memory is not the
    provider's time (the job's deadline still holds)."""
    last_progress = 0.0
    last_message: str | None = None

    async def on_progress(fraction: float, message: str | None) -> None:
        # Every step of a model's own (100 steps at most), but not a flood of tiny ones;
        # a new message always ("waiting for the local device" at 0 %).
        nonlocal last_progress, last_message
        unchanged = message == last_message
        if fraction < 1.0 and fraction - last_progress < PROGRESS_MIN_STEP and unchanged:
            return
        last_progress, last_message = fraction, message
        progress.report(job.id, fraction, message)  # live now, stored in its turn

    async def on_provider_ref(ref: str) -> None:
        await repo.save_provider_ref(job.id, worker_id, f"{model_id} {ref}")

    async def on_preview(image: bytes) -> None:
        if len(image) <= MAX_PREVIEW_BYTES:
            data = {"image": base64.b64encode(image).decode()}
            await repo.record_event(job.id, worker_id, "preview", data, utcnow())

    stopped = _StoppedClock(clock)
    return RunContext(
        http=http,
        deadline=time.monotonic() + seconds,
        attempt=job.attempt,
        provider_ref=ref_for(job.provider_ref, model_id),
        on_progress=on_progress,
        on_provider_ref=on_provider_ref,
        on_preview=on_preview,
        abandoned=abandoned,
        webhook_url=lambda provider: webhook_url(public_url, provider, job.id),
        nudged=lambda within: nudged(nudge, within),
        hold_memory=lambda nbytes: stopped.around(hold_memory(nbytes)),
    )


class _StoppedClock:
    """An attempt's clock, stopped while any call of the attempt waits for memory."""

    def __init__(self, clock: asyncio.Timeout) -> None:
        self.clock = clock
        self.waiting = 0
        self.when: float | None = None
        self.since = 0.0

    async def around(self, waiting: Awaitable[None]) -> None:
        loop = asyncio.get_running_loop()
        if self.waiting == 0 and not self.clock.expired():
            self.when, self.since = self.clock.when(), loop.time()
            self.clock.reschedule(None)
        self.waiting += 1
        try:
            await waiting
        finally:
            self.waiting -= 1
            if self.waiting == 0 and self.when is not None and not self.clock.expired():
                self.clock.reschedule(self.when + loop.time() - self.since)
                self.when = None
