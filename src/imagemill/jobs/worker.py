"""The worker: claim a job, run its provider under a lease, store outputs, finish it.

A worker process handles many jobs at once (``worker_concurrency``). For each it
claims the row (compare-and-set), keeps the lease alive with a heartbeat, and
finishes with a completion fenced on that lease, so a job never completes twice even
when two workers raced for it after a crash. ``run_one`` processes one job inline,
which makes worker tests step-by-step.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import random
import socket
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

import httpx

from imagemill.config import Settings
from imagemill.db.repository import Repository
from imagemill.domain import InputImage, Job, JobStatus, Size, Task
from imagemill.errors import ImagemillError, LeaseLost, ProviderTimeout, RateLimited
from imagemill.events.bus import Event
from imagemill.jobs.service import utcnow
from imagemill.providers.base import RunContext
from imagemill.providers.registry import Registry
from imagemill.storage.assets import AssetWriter
from imagemill.storage.blobs import BlobStore

log = logging.getLogger(__name__)

PROGRESS_MIN_INTERVAL = 0.1  # seconds between stored progress events of one job
MAX_PREVIEW_BYTES = 256 * 1024


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
        blobs: BlobStore,
        assets: AssetWriter,
        http: httpx.AsyncClient,
        dispatch: Callable[[str], Awaitable[None]],
    ) -> None:
        self.settings = settings
        self.repo = repo
        self.registry = registry
        self.blobs = blobs
        self.assets = assets
        self.http = http
        self.dispatch = dispatch
        self.id = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"
        self._slots = asyncio.Semaphore(settings.worker_concurrency)
        self._attempts: dict[str, asyncio.Task[JobStatus | None]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._stopping = False

    # -- entry points ---------------------------------------------------------------------

    async def handle(self, job_id: str) -> None:
        """A message arrived for ``job_id``: run it when a slot is free."""
        if self._stopping:
            return
        async with self._slots:
            if not self._stopping:
                await self.run_one(job_id)

    async def run_one(self, job_id: str) -> JobStatus | None:
        """Claim and run one job now. ``None`` if it was not ours to run."""
        now = utcnow()
        job = await self.repo.claim(job_id, self.id, now + self._lease, now)
        if job is None:
            return None  # a duplicate message, or not due yet
        attempt: asyncio.Task[JobStatus | None] = asyncio.create_task(self._attempt(job))
        self._attempts[job.id] = attempt
        heartbeat = asyncio.create_task(self._heartbeat(job.id, attempt))
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
            heartbeat.cancel()
            self._attempts.pop(job.id, None)

    def on_event(self, event: Event) -> None:
        """Bus listener: stop an attempt at once when its job is canceled."""
        if event["type"] == "status" and event["data"].get("status") == JobStatus.CANCELED:
            attempt = self._attempts.get(event["job_id"])
            if attempt is not None:
                attempt.cancel()

    async def stop(self) -> None:
        """Stop taking jobs and hand back the ones running (they go back to the queue)."""
        self._stopping = True
        for task in list(self._background):
            task.cancel()
        running = dict(self._attempts)
        for attempt in running.values():
            attempt.cancel()
        # A canceled attempt may still hold the database writer: let it unwind first.
        await asyncio.gather(*running.values(), return_exceptions=True)
        for job_id in running:
            await self.repo.release(job_id, self.id, utcnow())

    # -- one attempt ----------------------------------------------------------------------

    @property
    def _lease(self) -> timedelta:
        return timedelta(seconds=self.settings.lease_seconds)

    async def _attempt(self, job: Job) -> JobStatus | None:
        """Run the provider and record the outcome; the job's new status, or None if not ours."""
        try:
            provider, spec = self.registry.resolve(job.model)
            task = await self._task(job, spec.name)
            ctx = self._context(job)
            async with asyncio.timeout(self.settings.job_timeout_seconds):
                results = await provider.run(task, ctx)
                price = spec.pricing.price(Size(task.width, task.height))
                stored = [
                    await self.assets.store(
                        out, task, model_id=spec.id, fallback=False, price=price
                    )
                    for out in results
                ]
        except (asyncio.CancelledError, LeaseLost):
            return None  # canceled by its owner, or the lease moved on: nothing to record
        except TimeoutError:
            timeout = self.settings.job_timeout_seconds
            return await self._failed(job, ProviderTimeout(f"no result within {timeout:g} s"))
        except ImagemillError as exc:
            return await self._failed(job, exc)
        except Exception as exc:
            log.exception("job %s: unexpected error in %s", job.id, job.model)
            return await self._failed(job, InternalError(f"{type(exc).__name__}: {exc}"))
        if len(stored) != job.request.n:
            error = InternalError(f"asked for {job.request.n} outputs, got {len(stored)}")
            return await self._failed(job, error)
        if await self.repo.complete(job.id, self.id, stored, job.cache_key, utcnow()) is None:
            log.info("job %s finished elsewhere or was canceled; result dropped", job.id)
            return None
        return JobStatus.SUCCEEDED

    async def _task(self, job: Job, model_name: str) -> Task:
        request = job.request
        size = request.dimensions or Size(1024, 1024)
        inputs = tuple([await self._input(job, asset_id) for asset_id in request.input_assets])
        mask = await self._input(job, request.mask) if request.mask else None
        return Task(
            job_id=job.id,
            kind=request.kind,
            model=model_name,
            prompt=request.prompt,
            negative_prompt=request.negative_prompt,
            n=request.n,
            width=size.width,
            height=size.height,
            seed=request.seed,
            params=request.params,
            inputs=inputs,
            mask=mask,
        )

    async def _input(self, job: Job, asset_id: str) -> InputImage:
        asset = await self.repo.get_asset(asset_id, job.owner_id)
        data = await self.blobs.get(asset.storage_key)
        return InputImage(asset.id, data, asset.content_type, asset.width or 0, asset.height or 0)

    def _context(self, job: Job) -> RunContext:
        last_progress = 0.0

        async def on_progress(fraction: float, message: str | None) -> None:
            nonlocal last_progress
            now = time.monotonic()
            if fraction < 1.0 and now - last_progress < PROGRESS_MIN_INTERVAL:
                return
            last_progress = now
            data = {"progress": fraction, "message": message}
            await self.repo.record_event(job.id, self.id, "progress", data, utcnow())

        async def on_provider_ref(ref: str) -> None:
            await self.repo.save_provider_ref(job.id, self.id, ref)

        async def on_preview(image: bytes) -> None:
            if len(image) <= MAX_PREVIEW_BYTES:
                data = {"image": base64.b64encode(image).decode()}
                await self.repo.record_event(job.id, self.id, "preview", data, utcnow())

        return RunContext(
            http=self.http,
            deadline=time.monotonic() + self.settings.job_timeout_seconds,
            attempt=job.attempt,
            provider_ref=job.provider_ref,
            on_progress=on_progress,
            on_provider_ref=on_provider_ref,
            on_preview=on_preview,
        )

    async def _failed(self, job: Job, error: ImagemillError) -> JobStatus | None:
        """Retry later if the error allows and attempts remain; otherwise fail the job."""
        if error.retryable and job.attempt < job.max_attempts:
            delay = self._backoff(job.attempt, error)
            now = utcnow()
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
        if isinstance(error, RateLimited) and error.retry_after is not None:
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

    async def _heartbeat(self, job_id: str, attempt: asyncio.Task[JobStatus | None]) -> None:
        interval = self.settings.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            try:
                held = await self.repo.heartbeat(job_id, self.id, utcnow() + self._lease)
            except Exception:  # a database hiccup: the lease has slack for two more beats
                log.warning("heartbeat for job %s failed", job_id, exc_info=True)
                continue
            if not held:
                attempt.cancel()
                return
