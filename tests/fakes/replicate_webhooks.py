"""Webhook delivery for the Replicate fake, signed per Standard Webhooks.

A prediction's events are ``WEBHOOK_EVENTS``: ``start`` at creation, ``logs`` per log
line, ``output`` when the output appears (still ``processing``), then ``completed``; with
no ``webhook_events_filter`` it sends ``output`` and ``completed``
(``DEFAULT_WEBHOOK_EVENTS``). ``deliver`` POSTs one event to one URL, signed with the
secret: its ``webhook-id`` is one per event and is reused by retries (non-2xx or no
answer; delays ``webhook_retry_delays``) and by duplicates (``webhook_duplicates``).
Deliveries of one prediction go in order (they hold its lock), and every POST is logged in
``webhook_deliveries`` as a ``WebhookDelivery`` once answered (``sent_at``: when it
left). The knobs live on the fake (``WebhookKnobs``) and are read as each delivery
starts.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import httpx
from standardwebhooks import Webhook

WEBHOOK_EVENTS = ("start", "output", "logs", "completed")
DEFAULT_WEBHOOK_EVENTS = frozenset({"output", "completed"})  # "new outputs or finished"


@dataclass
class WebhookDelivery:
    """One POST of a webhook (a retry or a duplicate is another entry, same ``webhook_id``)."""

    prediction_id: str
    event: str
    url: str
    webhook_id: str
    attempt: int
    status_code: int | None  # None: no answer (connection refused, timeout)
    error: str | None
    body: str
    sent_at: datetime  # when the POST left
    forged: bool = False


class WebhookKnobs(Protocol):
    """What ``deliver`` reads from the fake (``FakeReplicate`` has them all)."""

    webhook_secret: str
    webhook_delay_seconds: float  # before each event (0: the moment the state changes)
    webhook_duplicates: int  # extra deliveries of every event, same webhook-id
    webhook_retry_delays: tuple[float, ...]
    webhook_timeout_seconds: float
    webhook_deliveries: list[WebhookDelivery]


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


async def deliver(
    knobs: WebhookKnobs,
    lock: asyncio.Lock,
    prediction_id: str,
    event: str,
    url: str,
    webhook_id: str,
    body: str,
) -> None:
    """POST one event (``body``: the prediction then) to ``url``, retried and duplicated."""
    async with lock:  # one prediction's events arrive in order
        if knobs.webhook_delay_seconds:
            await asyncio.sleep(knobs.webhook_delay_seconds)
        signer = Webhook(knobs.webhook_secret)
        for _ in range(1 + knobs.webhook_duplicates):
            for attempt, delay in enumerate((0.0, *knobs.webhook_retry_delays), start=1):
                await asyncio.sleep(delay)
                status, error, sent_at = await post_webhook(
                    url, webhook_id, body, signer, knobs.webhook_timeout_seconds
                )
                knobs.webhook_deliveries.append(
                    WebhookDelivery(
                        prediction_id, event, url, webhook_id, attempt, status, error, body, sent_at
                    )
                )
                if status is not None and 200 <= status < 300:
                    break


async def post_webhook(
    url: str, webhook_id: str, body: str, signer: Webhook, timeout_seconds: float
) -> tuple[int | None, str | None, datetime]:
    """One signed POST: the answer's status, or ``None`` and why there was no answer; and
    when the request left (the client ready: its set-up is the fake's cost, not the
    receiver's)."""
    now = datetime.now(UTC)
    headers = {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signer.sign(webhook_id, now, body),
    }
    sent_at = now
    try:
        async with httpx.AsyncClient(timeout=timeout_seconds) as http:
            sent_at = datetime.now(UTC)
            response = await http.post(url, content=body.encode(), headers=headers)
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}", sent_at
    return response.status_code, None, sent_at
