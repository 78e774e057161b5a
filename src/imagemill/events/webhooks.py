"""Outgoing webhooks: where a job's events go, and the sender that delivers them.

A job's target is its request's ``webhook_url`` or else its owner's default endpoint,
fixed at submit; a batch's completions go to the batch's own ``webhook_url`` (as
``batch.done``; see ``db/batch_completion.py``). Deliveries are rows written with the
events or the completion they carry, so none is lost to a restart. The sender claims
due deliveries (with a lease: several senders never send one twice at once), signs each
per Standard Webhooks with the owner's secret (``webhook-id`` = the delivery id, the
same on every attempt), POSTs it, and records the attempt:

- 2xx: delivered.
- 410 Gone: canceled, with everything else pending for that target; the target is
  disabled if it is the owner's default endpoint.
- 408, 429, 5xx, no answer: tried again with exponential backoff and jitter (a
  ``Retry-After`` is honoured), up to ``webhook_max_attempts``.
- anything else: failed.

Targets must be public addresses unless inside ``IMAGEMILL_ALLOWED_PRIVATE_NETWORKS``,
checked at submit and again before each attempt (DNS may have changed).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
from standardwebhooks import Webhook

from imagemill import __version__
from imagemill.api.batch_schemas import BatchOut
from imagemill.auth import webhook_secret
from imagemill.config import Settings
from imagemill.db.accounts import Accounts
from imagemill.db.repository import Repository
from imagemill.db.webhooks import CANCELED, DELIVERED, FAILED, PENDING, Attempt, Delivery, Webhooks
from imagemill.domain import DEFAULT_WEBHOOK_EVENTS, Submission
from imagemill.errors import ImagemillError, InvalidInput, NotFound, describe
from imagemill.events.bus import Event
from imagemill.jobs.batches import BatchService
from imagemill.jobs.service import utcnow
from imagemill.net import check_public_url, networks
from imagemill.providers.base import retry_after_seconds

log = logging.getLogger(__name__)

CLAIM_BATCH = 32
IDLE_SECONDS = 1.0  # with nothing due, look again this often (deliveries of other processes)
DEFAULT_TTL_SECONDS = 5.0  # how long a process trusts its copy of an owner's default endpoint
RETRY_STATUSES = {408, 425, 429}


class WebhookTargets:
    """Where a new job's events go: the request's own URL, or the owner's default."""

    def __init__(self, store: Webhooks, settings: Settings) -> None:
        self.store = store
        self.allowed = networks(settings.allowed_private_networks)
        self._defaults: dict[str, tuple[float, tuple[str, list[str]] | None]] = {}

    async def for_submission(
        self, owner_id: str, submission: Submission
    ) -> tuple[str | None, list[str] | None]:
        if submission.webhook_url is not None:
            await check_public_url(submission.webhook_url, self.allowed, "webhook_url")
            chosen = submission.webhook_events or DEFAULT_WEBHOOK_EVENTS
            return submission.webhook_url, [str(event) for event in chosen]
        if submission.webhook_events is not None:
            raise InvalidInput("webhook_events needs a webhook_url", field="webhook_events")
        default = await self._default(owner_id)
        return default if default else (None, None)

    async def check(self, url: str, field: str) -> None:
        """``InvalidInput`` naming ``field`` unless ``url`` may be called (a public
        address, or one in ``IMAGEMILL_ALLOWED_PRIVATE_NETWORKS``): a batch's target."""
        await check_public_url(url, self.allowed, field)

    async def _default(self, owner_id: str) -> tuple[str, list[str]] | None:
        cached = self._defaults.get(owner_id)
        if cached is not None and time.monotonic() < cached[0]:
            return cached[1]
        endpoint = await self.store.endpoint(owner_id)
        found = (
            (endpoint.url, endpoint.events)
            if endpoint is not None and endpoint.disabled_at is None
            else None
        )
        self._defaults[owner_id] = (time.monotonic() + DEFAULT_TTL_SECONDS, found)
        return found

    def forget(self, owner_id: str) -> None:
        """The owner changed their default endpoint: read it again."""
        self._defaults.pop(owner_id, None)


class WebhookSender:
    def __init__(
        self,
        store: Webhooks,
        repo: Repository,
        accounts: Accounts,
        http: httpx.AsyncClient,
        settings: Settings,
        batches: BatchService,
        targets: WebhookTargets | None = None,
        on_attempt: Callable[[str], object] | None = None,
    ) -> None:
        """``on_attempt`` is told each attempt's outcome (``delivered``, ``pending``: to be
        retried, ``failed``, ``canceled``): the metrics."""
        self.store = store
        self.on_attempt = on_attempt
        self.targets = targets  # told when an owner's default endpoint is disabled
        self.repo = repo
        self.batches = batches
        self.accounts = accounts
        self.http = http
        self.settings = settings
        self.allowed = networks(settings.allowed_private_networks)
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(settings.webhook_concurrency)
        self._sending: set[asyncio.Task[None]] = set()

    def on_event(self, event: Event) -> None:
        """Bus listener: an event with a delivery was committed; send it now."""
        if event.get("webhook"):
            self._wake.set()

    async def run(self) -> None:
        """Send what is due, forever."""
        while True:
            try:
                await self.send_due()
            except Exception:
                log.exception("webhook sender pass failed; trying again")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(IDLE_SECONDS):
                    await self._wake.wait()

    async def send_due(self) -> int:
        """Claim what is due and start sending it; how many were started."""
        now = utcnow()
        lease = now + timedelta(seconds=self.settings.webhook_timeout_seconds * 2 + 5)
        claimed = await self.store.claim(now, lease, CLAIM_BATCH)
        for delivery in claimed:
            task = asyncio.create_task(self._send_one(delivery))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
        return len(claimed)

    async def stop(self) -> None:
        for task in list(self._sending):
            task.cancel()
        await asyncio.gather(*self._sending, return_exceptions=True)

    async def _send_one(self, delivery: Delivery) -> None:
        async with self._slots:
            try:
                await self.deliver(delivery)
            except Exception:
                log.exception("delivery %s could not be recorded", delivery.id)

    async def deliver(self, delivery: Delivery) -> str:
        """One attempt at ``delivery``; the delivery's status after it."""
        attempt_number = delivery.attempts + 1
        started = time.monotonic()
        at = utcnow()
        status_code: int | None = None
        error: str | None = None
        retry_after: float | None = None
        try:
            await check_public_url(delivery.url, self.allowed, "webhook_url")
            body = await self._body(delivery)
            headers = await self._headers(delivery, body, at)
            response = await self.http.post(
                delivery.url,
                content=body,
                headers=headers,
                timeout=self.settings.webhook_timeout_seconds,
                follow_redirects=False,
            )
            status_code = response.status_code
            retry_after = retry_after_seconds(response.headers.get("retry-after"))
            if not response.is_success:
                error = f"HTTP {status_code}"
        except InvalidInput as exc:
            error = f"refused: {exc.message}"
            return await self._finish(delivery, attempt_number, at, started, None, error, FAILED)
        except ImagemillError as exc:  # the job or owner is gone
            return await self._finish(
                delivery, attempt_number, at, started, None, exc.message, CANCELED
            )
        except Exception as exc:  # whatever it was, it was an attempt: counted, not looped on
            if not isinstance(exc, httpx.HTTPError | OSError):
                log.warning("delivery %s: unexpected %s", delivery.id, type(exc).__name__)
            error = describe(exc)
        if status_code is not None and 200 <= status_code < 300:
            outcome = DELIVERED
        elif status_code == 410:
            outcome = CANCELED
        elif status_code is None or status_code >= 500 or status_code in RETRY_STATUSES:
            outcome = PENDING if attempt_number < self.settings.webhook_max_attempts else FAILED
        else:
            outcome = FAILED
        result = await self._finish(
            delivery, attempt_number, at, started, status_code, error, outcome, retry_after
        )
        if status_code == 410:
            await self.store.gone(delivery, utcnow())
            if self.targets is not None:
                self.targets.forget(delivery.owner_id)
        return result

    async def _finish(
        self,
        delivery: Delivery,
        number: int,
        at: datetime,
        started: float,
        status_code: int | None,
        error: str | None,
        outcome: str,
        retry_after: float | None = None,
    ) -> str:
        attempt = Attempt(number, at, status_code, error, int((time.monotonic() - started) * 1000))
        next_at = None
        if outcome == PENDING:
            next_at = utcnow() + timedelta(seconds=self._backoff(number, retry_after))
        await self.store.record(delivery, attempt, status=outcome, next_attempt_at=next_at)
        if self.on_attempt is not None:
            self.on_attempt(outcome)
        if next_at is not None:
            asyncio.get_running_loop().call_later(
                (next_at - utcnow()).total_seconds(), self._wake.set
            )
        return outcome

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        ceiling = min(
            self.settings.webhook_retry_max_seconds,
            self.settings.webhook_retry_base_seconds * 2 ** (attempt - 1),
        )
        delay = random.uniform(ceiling / 2, ceiling)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.settings.webhook_retry_max_seconds))
        return delay

    async def _body(self, delivery: Delivery) -> bytes:
        if delivery.batch_id is not None:
            payload = await self._batch_payload(delivery.batch_id, delivery)
        elif delivery.job_id is not None and delivery.event_id is not None:
            payload = await self._job_payload(delivery.job_id, delivery.event_id)
        else:  # the schema's check constraint rules this out
            raise NotFound(f"delivery {delivery.id} carries nothing")
        return json.dumps(payload, separators=(",", ":"), default=str).encode()

    async def _job_payload(self, job_id: str, event_id: int) -> dict[str, Any]:
        """``job.<event type>``: the event as logged, and the job as it is now."""
        event = await self.store.payload_event(event_id)
        if event is None:
            raise NotFound(f"event {event_id} is gone")
        job = await self.repo.get_job(job_id)
        return {
            "type": f"job.{event['type']}",
            "timestamp": event["created_at"].isoformat(),
            "data": {
                "job_id": job.id,
                "seq": event["seq"],
                "event": event["data"],
                "job": _job_summary(job, self.settings.public_url),
            },
        }

    async def _batch_payload(self, batch_id: str, delivery: Delivery) -> dict[str, Any]:
        """``batch.done``: which completion (``round``), the batch's status and counts as
        it completed (``event``), and the batch as ``GET /v1/batches/{id}`` shows it now."""
        batch = await self.batches.get(delivery.owner_id, batch_id)
        return {
            "type": f"batch.{delivery.event_type}",
            "timestamp": delivery.created_at.isoformat(),
            "data": {
                "batch_id": batch.id,
                "round": delivery.batch_round,
                "event": delivery.payload,
                "batch": BatchOut.of(batch).model_dump(mode="json"),
            },
        }

    async def _headers(self, delivery: Delivery, body: bytes, at: datetime) -> dict[str, str]:
        owner = await self.accounts.get_owner(delivery.owner_id)
        signature = Webhook(webhook_secret(owner.secret)).sign(delivery.id, at, body.decode())
        return {
            "content-type": "application/json",
            "user-agent": f"imagemill/{__version__} (webhooks)",
            "webhook-id": delivery.id,
            "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": signature,
        }


def _job_summary(job: Any, public_url: str | None) -> dict[str, Any]:
    base = (public_url or "").rstrip("/")
    return {
        "id": job.id,
        "status": job.status.value,
        "model": job.model,
        "progress": job.progress,
        "cost_usd": job.cost_usd,
        "error": {"code": job.error.code, "message": job.error.message} if job.error else None,
        "outputs": [
            {
                "index": o.index,
                "asset_id": o.asset_id,
                "url": f"{base}/v1/assets/{o.asset_id}",
                "model": o.model,
                "fallback": o.fallback,
                "width": o.width,
                "height": o.height,
                "content_type": o.content_type,
            }
            for o in job.outputs
        ],
        "metadata": job.request.metadata,
    }
