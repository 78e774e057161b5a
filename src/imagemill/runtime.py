"""The runtime: one object wiring settings to the database, storage, providers, jobs.

The API app, the CLI and the tests all start the same ``Runtime``; what differs is
only configuration (and whether this process runs workers).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType

import httpx

from imagemill.config import Settings
from imagemill.db.accounts import Accounts, Owner
from imagemill.db.appending import Appending
from imagemill.db.budgets import Budgets
from imagemill.db.collections import Collections
from imagemill.db.engine import Database
from imagemill.db.migrate import upgrade
from imagemill.db.repository import Repository
from imagemill.db.webhooks import Webhooks
from imagemill.events.bus import EventBus
from imagemill.events.fanout import PostgresFanout
from imagemill.events.webhooks import WebhookSender, WebhookTargets
from imagemill.ids import new_id
from imagemill.jobs.batches import BatchService
from imagemill.jobs.broker import Transport, make_broker
from imagemill.jobs.service import JobService, utcnow
from imagemill.jobs.sweeper import Sweeper
from imagemill.jobs.worker import Worker
from imagemill.net import PublicOnlyTransport, networks
from imagemill.providers.registry import Registry
from imagemill.safety import SafetyCheck
from imagemill.search import MeaningIndex
from imagemill.spend.limits import RateLimits, storage_for
from imagemill.storage.assets import AssetWriter
from imagemill.storage.blobs import BlobStore
from imagemill.telemetry.journal import log_transitions
from imagemill.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

LOCAL_OWNER = "local"
HTTP_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
REFRESH_WAIT_SECONDS = 10.0  # how long start-up waits for providers to describe their models


class Runtime:
    def __init__(
        self,
        settings: Settings,
        *,
        registry: Registry | None = None,
        run_workers: bool | None = None,
        sweep: bool = True,
    ) -> None:
        self.settings = settings
        self.run_workers = settings.workers if run_workers is None else run_workers
        self.sweep = sweep
        self.db = Database(settings.resolved_database_url)
        self.bus = EventBus()
        origin = None if self.db.is_sqlite else new_id("proc")  # names this process
        self.metrics = Metrics()
        self.repo = Repository(
            self.db, on_events=self.bus.publish, origin=origin, observe=self._observe
        )
        self.accounts = Accounts(self.db)
        self.collections = Collections(self.db)
        self.meaning = MeaningIndex(self.db, enabled=settings.semantic_search != "off")
        if self.meaning.available:
            self.bus.add_listener(self.meaning.on_event)
        self.budgets = Budgets(self.db)
        self.rate_limits = RateLimits(storage_for(settings.resolved_rate_limit_storage_url))
        self.blobs = BlobStore.from_url(
            settings.resolved_storage_url,
            settings.storage_options,
            on_written=self.metrics.storage_written.inc,
        )
        self.registry = registry or Registry.from_entry_points(settings)
        self.http = httpx.AsyncClient(timeout=HTTP_TIMEOUT, follow_redirects=True)
        threshold = settings.safety_threshold
        self.assets = AssetWriter(
            self.blobs,
            self.http,
            settings.max_upload_bytes,
            settings.max_image_pixels,
            safety=SafetyCheck(threshold) if threshold is not None else None,
            decode_budget_pixels=settings.decode_budget_pixels,
        )
        self.transport = Transport(
            make_broker(
                settings.broker_url,
                prefetch=settings.worker_concurrency * 2,
                queue=settings.broker_queue,
            ),
            self._deliver,
            settings.worker_concurrency,
        )
        self.webhooks = Webhooks(self.db)
        self.webhook_targets = WebhookTargets(self.webhooks, settings)
        self.service = JobService(
            self.repo,
            self.accounts,
            self.registry,
            self.bus,
            self.transport.send,
            settings.max_attempts,
            settings.job_deadline_seconds,
            self.webhook_targets,
            max_pixels=settings.max_image_pixels,
            rate_limits=self.rate_limits,
        )
        self.batches = BatchService(self.repo, self.service)
        self.worker = Worker(
            settings,
            self.repo,
            self.registry,
            self.assets,
            self.http,
            self.transport.send,
            bus=self.bus,
            # A broker shared with other processes splits a backlog among their lines.
            steal_work=self.run_workers and not self.transport.in_process,
            on_call=lambda model, outcome: self.metrics.provider_calls.labels(model, outcome).inc(),
        )
        self.bus.add_listener(self.worker.on_event)
        # Processes sharing a PostgreSQL database tell each other their events, and pass
        # on providers' callbacks (``nudge``) to the process running the job.
        self.fanout = (
            None
            if origin is None
            else PostgresFanout(self.db.url, self.bus, origin, self.worker.nudges.nudge)
        )
        # Webhook targets are the users' choice: connect only where the check allows.
        allowed = networks(settings.allowed_private_networks)
        self.webhook_http = httpx.AsyncClient(
            transport=PublicOnlyTransport(allowed, "webhook_url"), timeout=HTTP_TIMEOUT
        )
        self.sender = WebhookSender(
            self.webhooks,
            self.repo,
            self.accounts,
            self.webhook_http,
            settings,
            self.batches,
            self.webhook_targets,
            on_attempt=lambda outcome: self.metrics.webhook_attempts.labels(outcome).inc(),
        )
        self.bus.add_listener(self.sender.on_event)
        self.sweeper = Sweeper(
            self.repo,
            self.transport.send,
            settings.requeue_after_seconds,
            settings.sweep_interval_seconds,
        )
        self._sweeping: asyncio.Task[None] | None = None
        self._sending: asyncio.Task[None] | None = None
        self._refreshing: asyncio.Task[None] | None = None

    async def _deliver(self, job_id: str) -> None:
        if self.run_workers:
            self.worker.wake(job_id)

    async def nudge(self, job_id: str) -> None:
        """A provider called back about ``job_id`` (a verified webhook): wake the job's
        attempt, which asks the provider at once rather than at its next poll; here if it
        runs here, else in whichever process runs it (PostgreSQL). Best effort: an
        attempt's polling covers a nudge lost on the way."""
        if self.worker.nudges.nudge(job_id):
            return
        try:
            await self.repo.nudge(job_id)
        except Exception:
            log.warning("could not pass on the callback about job %s", job_id, exc_info=True)

    async def start(self, *, migrate: bool = True) -> None:
        if migrate:
            await upgrade(self.db)
        if self.fanout is not None:
            await self.fanout.start()
        # Providers fetch what they can about their models (Replicate's params schemas);
        # a slow provider finishes in the background, on its cached or permissive schemas.
        self._refreshing = asyncio.create_task(self.registry.refresh())
        try:
            await asyncio.wait_for(asyncio.shield(self._refreshing), REFRESH_WAIT_SECONDS)
        except TimeoutError:
            log.warning("providers are still fetching their models; going on meanwhile")
        await self.transport.start(consume=self.run_workers)
        if self.run_workers:
            self._sending = asyncio.create_task(self.sender.run())
            if self.worker.stealing is not None:
                self.worker.stealing.idle()  # a worker joining a backlog starts on it
        if self.sweep:
            # At start-up every due job is re-sent: an in-memory queue died with the last process.
            self._sweeping = asyncio.create_task(self.sweeper.run(first_requeue_after=0))

    async def stop(self) -> None:
        self.metrics.close()
        if self._refreshing is not None and not self._refreshing.done():
            self._refreshing.cancel()
        if self._sweeping is not None:
            self._sweeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeping
        if self._sending is not None:
            self._sending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sending
        await self.sender.stop()
        await self.worker.stop()
        await self.transport.stop()
        await self.http.aclose()
        await self.webhook_http.aclose()
        await self.registry.aclose()
        if self.fanout is not None:
            await self.fanout.stop()
        await self.db.dispose()

    def _observe(self, published: Appending) -> None:
        """What one committed transaction of this process recorded: counted, and logged."""
        self.metrics.observe(published)
        log_transitions(published)

    async def local_owner(self) -> Owner:
        """The single owner of a keyless server bound to loopback."""
        return await self.accounts.owner_named(LOCAL_OWNER, utcnow())

    async def __aenter__(self) -> Runtime:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
