"""The worker: claim a job, run its provider under a lease, store outputs, finish it.

A worker process handles many jobs at once: up to ``hosted_concurrency`` on hosted
providers (network calls) and ``worker_concurrency`` on local devices. For each it
claims the row (compare-and-set), keeps the lease alive with a heartbeat, and
finishes with a completion fenced on that lease, so a job never completes twice even
when two workers raced for it after a crash. Calling the job's models (enhance, the
model, its fallbacks) and storing their outputs is ``calls.py``'s; the worker records,
retries or fails what comes of it. ``run_one`` processes one job inline, which makes
worker tests step-by-step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx

from imagemill.config import Settings
from imagemill.db.queries import Scheduled
from imagemill.db.repository import Repository
from imagemill.db.slots import ProviderSlots
from imagemill.domain import Job, JobStatus, output_count
from imagemill.errors import (
    CircuitOpen,
    DeadlineExceeded,
    ImagemillError,
    InvalidInput,
    LeaseLost,
    ProviderTimeout,
    RateLimited,
    describe,
)
from imagemill.events.bus import Event, EventBus
from imagemill.jobs.calls import ModelCalls
from imagemill.jobs.contexts import Nudges
from imagemill.jobs.holding import Held
from imagemill.jobs.progress import ProgressLog
from imagemill.jobs.scheduling import FairLine
from imagemill.jobs.service import utcnow
from imagemill.jobs.stealing import Stealing
from imagemill.providers.circuits import Circuits
from imagemill.providers.registry import Registry
from imagemill.storage.assets import AssetWriter
from imagemill.telemetry.tracing import span

log = logging.getLogger(__name__)


MAX_WAITING = 10_000  # jobs whose wake-up waits in one process's line


class InternalError(ImagemillError):
    """An unexpected exception in imagemill or a provider adapter: a bug, retried once more."""

    code = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.retryable = True


class Worker:
    def __init__(
        self,
        settings: Settings,
        repo: Repository,
        registry: Registry,
        assets: AssetWriter,
        http: httpx.AsyncClient,
        dispatch: Callable[[str], Awaitable[None]],
        slots: ProviderSlots | None = None,
        circuits: Circuits | None = None,
        *,
        bus: EventBus,
        steal_work: bool = False,
        on_call: Callable[[str, str], object] | None = None,
    ) -> None:
        """``steal_work``: when nothing waits here, take queued jobs that other workers
        hold (``jobs/stealing.py``); for workers fed by an external broker."""
        self.settings = settings
        self.repo = repo
        self.registry = registry
        self.assets = assets
        self.dispatch = dispatch
        self.id = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"
        # Jobs on local devices take a few slots; those on hosted providers, which mostly
        # wait on the network, take many (each provider's own limit is ``self.slots``).
        self._device_line = FairLine(settings.worker_concurrency)
        self._hosted_line = FairLine(settings.hosted_concurrency)
        self._attempts: dict[str, asyncio.Task[JobStatus | None]] = {}
        self._heart: asyncio.Task[None] | None = None  # the heartbeat of them all
        self._background: set[asyncio.Task[None]] = set()
        self._handling: set[asyncio.Task[Any]] = set()  # wake-ups being handled
        self._waiting: set[str] = set()  # jobs whose wake-up waits here for their turn
        self._stopping = False
        # A slot row outlives its holder's lease by a sweep; a job's slot goes to another
        # only once the job no longer reads running (``db/slots.py``).
        slot_lease = settings.lease_seconds + settings.sweep_interval_seconds
        self.slots = slots or ProviderSlots(repo.db, settings.provider_concurrency, slot_lease)
        self._canceled: set[str] = set()  # jobs whose owner canceled them, while running
        self.circuits = circuits or Circuits(
            settings.circuit_failure_threshold, settings.circuit_cooldown_seconds
        )
        self.nudges = Nudges()  # wake-ups of the attempts running here (``jobs/contexts.py``)
        self.progress = ProgressLog(repo, bus)  # live progress, stored at a bounded rate
        self.stealing = Stealing(repo, self.wake, self._room) if steal_work else None
        self.calls = ModelCalls(  # an attempt's calls of its models (``jobs/calls.py``)
            settings,
            repo,
            registry,
            assets,
            http,
            worker_id=self.id,
            slots=self.slots,
            circuits=self.circuits,
            nudges=self.nudges,
            progress=self.progress,
            canceled=self._canceled,
            on_call=on_call,
        )

    # -- entry points ---------------------------------------------------------------------

    def wake(self, job_id: str, *, stolen: bool = False) -> None:
        """A message arrived for ``job_id``: handle it in the background and return, so
        the broker hands over every message at once and the line here, not the order of
        the broker's queue, decides who runs next. Past ``MAX_WAITING`` waiting here, the
        message is dropped: the sweeper sends it again while the job stays queued.
        ``stolen``: taken from the table, not sent here (``jobs/stealing.py``)."""
        if self._stopping or job_id in self._waiting:
            return
        if len(self._waiting) >= MAX_WAITING:
            log.debug(
                "%d jobs wait here already; job %s is left to the sweeper", MAX_WAITING, job_id
            )
            return
        self._waiting.add(job_id)  # at once: a second message finds it waiting
        handling = asyncio.create_task(self._handle_waiting(job_id, stolen))
        self._handling.add(handling)
        handling.add_done_callback(self._handling.discard)

    async def _handle_waiting(self, job_id: str, stolen: bool) -> None:
        try:
            await self._when_its_turn(job_id, stolen)
        except Exception:
            log.exception("job %s: could not be run from its wake-up", job_id)
        finally:
            self._waiting.discard(job_id)
            if self.stealing is not None:
                self.stealing.idle()  # it ran, or was not ours: room here, maybe

    async def handle(self, job_id: str) -> None:
        """A message arrived for ``job_id``: run it once a worker slot and its provider's
        slot are free, given to owners in turn (``jobs/scheduling.py``). Meanwhile it stays
        queued, in this worker's line (``position``)."""
        if self._stopping or job_id in self._waiting:
            return  # a second wake-up for a job already waiting here
        handling = asyncio.current_task()
        if handling is not None:
            self._handling.add(handling)
        self._waiting.add(job_id)
        try:
            await self._when_its_turn(job_id)
        finally:
            self._waiting.discard(job_id)
            self._handling.discard(handling)

    async def _when_its_turn(self, job_id: str, stolen: bool = False) -> None:
        job = await self.repo.to_schedule(job_id)
        if job is None:
            return  # finished, claimed elsewhere, or deleted meanwhile
        wait = self._circuit_wait(job)
        if wait:  # every provider it could use is failing lately: it waits, still queued,
            if not stolen:  # and spends no attempt on a call that is skipped; one taken
                self._later(wait, job_id)  # from another's line is left to that one
            return
        batch_id, concurrency = job.batch or (None, None)
        lane = (job.owner_id, batch_id)
        # A batch's limit first: its items waiting for it hold no worker slot meanwhile.
        in_batch = (
            self.slots.hold(f"batch:{batch_id}", job_id, lane, limit=concurrency)
            if batch_id
            else contextlib.nullcontext()
        )
        provider = self._first_provider(job)
        line = self._device_line if self.registry.on_device(provider) else self._hosted_line
        async with in_batch, line.slot(job_id, lane), contextlib.AsyncExitStack() as held:
            await held.enter_async_context(self.slots.hold(provider, job_id, lane))
            self._waiting.discard(job_id)
            if not self._stopping:
                await self.run_one(job_id, holding=Held(provider, held.aclose))

    def _room(self) -> int:
        """How many more jobs would surely start here now, on a hosted provider or on the
        local device: none while any waits here."""
        if self._waiting or self._stopping:
            return 0
        lines = (self._hosted_line, self._device_line)
        return min(line.capacity - line.used for line in lines)

    def position(self, job_id: str) -> int | None:
        """Where the job waits in this worker's line for a slot, or its provider's (1:
        next), if it waits here."""
        return (
            self._device_line.position(job_id)
            or self._hosted_line.position(job_id)
            or self.slots.position(job_id)
        )

    def _circuit_wait(self, job: Scheduled) -> float:
        """Seconds until the job could call a provider: 0 unless every available one of
        its chain (its model's, its fallbacks') has its circuit open (or a trial call in
        flight), or its prompt's enhancer's has; then the shortest wait."""
        try:
            chain = [self.registry.resolve(model) for model in job.models]
            enhancer = self.registry.resolve(job.enhancer) if job.enhancer else None
        except InvalidInput:
            return 0.0  # a model gone from this server: the attempt fails it
        waits = [self.circuits.wait(p.name) for p, spec in chain if spec.available]
        wait = min(waits) if waits else 0.0
        if enhancer is not None and enhancer[1].available:
            wait = max(wait, self.circuits.wait(enhancer[0].name))
        return wait

    def _first_provider(self, job: Scheduled) -> str:
        """The provider the job's attempt starts with: its model's, or the first available
        fallback's."""
        try:
            found = [self.registry.resolve(model) for model in job.models]
        except InvalidInput:
            return ""  # a model gone from this server: the attempt fails it, no slot needed
        available = [provider for provider, spec in found if spec.available]
        closed = [p for p in available if not self.circuits.wait(p.name)]
        return (closed or available or [found[0][0]])[0].name

    async def run_one(self, job_id: str, *, holding: Held | None = None) -> JobStatus | None:
        """Claim and run one job now. ``None`` if it was not ours to run. ``holding``: the
        provider slot the caller holds for it already."""
        # Followed from before the claim: its status event is where live progress starts.
        with self.progress.track(job_id, self.id):
            now = utcnow()
            job = await self.repo.claim(job_id, self.id, now + self._lease, now)
            if job is None:
                return None  # a duplicate message, or not due yet
            with self.nudges.attempt(job.id):  # before the provider is called: contexts.py
                return await self._run_claimed(job, holding)

    async def _run_claimed(self, job: Job, holding: Held | None) -> JobStatus | None:
        attempt: asyncio.Task[JobStatus | None] = asyncio.create_task(self._attempt(job, holding))
        self._attempts[job.id] = attempt
        if self._heart is None or self._heart.done():
            self._heart = asyncio.create_task(self._heartbeat())
        try:
            return await asyncio.shield(attempt)
        except asyncio.CancelledError:
            if not attempt.done():  # we are shutting down, not the job
                attempt.cancel()
                await asyncio.gather(attempt, return_exceptions=True)
                await self.repo.release(job.id, self.id, utcnow())
                raise
            return None
        finally:
            if self._attempts.get(job.id) is attempt:  # not a newer run of a retried job
                del self._attempts[job.id]
                self._canceled.discard(job.id)

    def on_event(self, event: Event) -> None:
        """Bus listener: stop an attempt at once when its job is canceled."""
        if event["type"] == "status" and event["data"].get("status") == JobStatus.CANCELED:
            attempt = self._attempts.get(event["job_id"])
            if attempt is not None:
                self._canceled.add(event["job_id"])
                attempt.cancel()

    async def stop(self) -> None:
        """Stop taking jobs and hand back the ones running (they go back to the queue)."""
        self._stopping = True
        if self._heart is not None:
            self._heart.cancel()
        if self.stealing is not None:
            await self.stealing.stop()
        for task in list(self._background):
            task.cancel()
        # A wake-up past its check of ``_stopping`` may be claiming its job right now:
        # stop it while the database is still there to give the job back.
        handling = [task for task in self._handling if task is not asyncio.current_task()]
        for task in handling:
            task.cancel()
        await asyncio.gather(*handling, return_exceptions=True)
        running = dict(self._attempts)
        for attempt in running.values():
            attempt.cancel()
        # A canceled attempt may still hold the database writer: let it unwind first.
        await asyncio.gather(*running.values(), return_exceptions=True)
        await self.progress.stop()
        for job_id in running:
            await self.repo.release(job_id, self.id, utcnow())

    # -- one attempt ----------------------------------------------------------------------

    @property
    def _lease(self) -> timedelta:
        return timedelta(seconds=self.settings.lease_seconds)

    async def _attempt(self, job: Job, holding: Held | None = None) -> JobStatus | None:
        """Run the job's model (then its fallbacks) and record the outcome, as a span of
        the trace its submit was part of (``telemetry/tracing.py``).

        The job's new status, or ``None`` when it was not ours to record.
        """
        attributes = {
            "imagemill.job_id": job.id,
            "imagemill.model": job.model,
            "imagemill.attempt": job.attempt,
        }
        with span("job.attempt", attributes, parent=job.trace_parent) as current:
            status = await self._attempt_traced(job, holding)
            if current is not None and status is not None:
                current.set_attribute("imagemill.status", status.value)
            return status

    async def _attempt_traced(self, job: Job, holding: Held | None) -> JobStatus | None:
        try:
            if self.calls.time_left(job) <= 0:
                raise DeadlineExceeded("the job's deadline passed before it could run")
            job = await self.calls.enhanced(job, holding)
            stored = await self.calls.chain(job, holding)
        except (asyncio.CancelledError, LeaseLost):
            return None  # canceled by its owner, or the lease moved on: nothing to record
        except TimeoutError:
            return await self._failed(job, self._timed_out(job))
        except CircuitOpen as exc:  # no call was made: the job waits, spending no attempt
            if not await self.repo.release(job.id, self.id, utcnow()):
                return None
            self._later(exc.retry_after, job.id)
            return JobStatus.QUEUED
        except ImagemillError as exc:
            return await self._failed(job, exc)
        except Exception as exc:
            log.exception("job %s: unexpected error in %s", job.id, job.model)
            return await self._failed(job, InternalError(f"unexpected error: {describe(exc)}"))
        request = job.request
        expected = output_count(request.kind, request.n, request.params)
        if len(stored) != expected:
            error = InternalError(f"asked for {expected} outputs, got {len(stored)}")
            return await self._failed(job, error)
        completed = await self.repo.complete(
            job.id,
            self.id,
            stored,
            job.cache_key,
            utcnow(),
            extra_cost=job.enhance_cost_usd,
            owner_id=job.owner_id,
            committed=self.assets.handoff.finished,  # before a waiting request hears of it
        )
        if completed is None:
            log.info("job %s finished elsewhere or was canceled; result dropped", job.id)
            return None
        return JobStatus.SUCCEEDED

    def _timed_out(self, job: Job) -> ImagemillError:
        if job.deadline_at is not None and utcnow() >= job.deadline_at:
            return DeadlineExceeded("the job did not finish by its deadline")
        timeout = self.settings.job_timeout_seconds
        return ProviderTimeout(f"no result within {timeout:g} s")

    async def _failed(self, job: Job, error: ImagemillError) -> JobStatus | None:
        """Retry later if the error allows, attempts remain and the deadline is far enough;
        otherwise fail the job."""
        delay = self._backoff(job.attempt, error)
        now = utcnow()
        retry = error.retryable and job.attempt < job.max_attempts
        if retry and job.deadline_at is not None:
            retry = now + timedelta(seconds=delay) < job.deadline_at
        if retry:
            if not await self.repo.retry_later(
                job.id, self.id, error, now + timedelta(seconds=delay), now
            ):
                return None
            self._later(delay, job.id)
            return JobStatus.QUEUED
        failed = await self.repo.fail(job.id, error, utcnow(), worker=self.id)
        return JobStatus.FAILED if failed else None

    def _backoff(self, attempt: int, error: ImagemillError) -> float:
        """Exponential backoff with full jitter; a provider's Retry-After wins when longer."""
        ceiling = min(
            self.settings.retry_max_seconds, self.settings.retry_base_seconds * 2 ** (attempt - 1)
        )
        delay = random.uniform(ceiling / 2, ceiling)
        if isinstance(error, RateLimited | CircuitOpen) and error.retry_after is not None:
            delay = max(delay, min(error.retry_after, self.settings.retry_max_seconds))
        return delay

    def _later(self, delay: float, job_id: str) -> None:
        """Send the job's message again after ``delay`` (the sweeper covers a crash before)."""

        async def resend() -> None:
            await asyncio.sleep(delay)
            await self.dispatch(job_id)

        task = asyncio.create_task(resend())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _heartbeat(self) -> None:
        """Every third of a lease, extend the leases of all the jobs running here in one
        write (10,000 jobs in flight are one statement, not 10,000), and stop the attempts
        whose job is no longer this worker's. Ends when nothing runs here."""
        interval = self.settings.lease_seconds / 3
        while self._attempts:
            await asyncio.sleep(interval)
            running = dict(self._attempts)
            try:
                held = await self.repo.heartbeat(running, self.id, utcnow() + self._lease)
            except Exception:  # a database hiccup: the leases have slack for two more beats
                log.warning("heartbeat for %d jobs failed", len(running), exc_info=True)
                continue
            for job_id, attempt in running.items():
                if job_id not in held and self._attempts.get(job_id) is attempt:
                    attempt.cancel()  # canceled, or claimed by another after a stall
