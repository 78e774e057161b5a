"""Webhook queries: owners' default endpoints, deliveries and their attempts.

Deliveries are created in the same transaction as what they carry: a job's events (see
``jobs/states.append_events``) or a batch's completion (``db/batch_completion.py``);
here they are claimed by senders (compare-and-set with a lease, like jobs), and each
attempt and outcome is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, and_, delete, or_, select, update

from imagemill.db.engine import Database
from imagemill.db.tables import deliveries, delivery_attempts, events, webhook_endpoints

PENDING, DELIVERED, FAILED, CANCELED = "pending", "delivered", "failed", "canceled"


@dataclass(frozen=True, slots=True)
class Endpoint:
    owner_id: str
    url: str
    events: list[str]
    disabled_at: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Delivery:
    """One webhook message and its state: a job's logged event (``job_id``,
    ``event_id``), or a batch's completion (``batch_id``, ``batch_round``, and
    ``payload``: the batch's status and counts as it completed)."""

    id: str
    owner_id: str
    job_id: str | None
    event_id: int | None
    batch_id: str | None
    batch_round: int | None
    payload: dict[str, Any] | None
    event_type: str
    url: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class Attempt:
    attempt: int
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int


class Webhooks:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- default endpoints ----------------------------------------------------------------

    async def endpoint(self, owner_id: str) -> Endpoint | None:
        query = select(webhook_endpoints).where(webhook_endpoints.c.owner_id == owner_id)
        row = await self.db.read(lambda conn: conn.execute(query).one_or_none())
        return Endpoint(**row._mapping) if row else None

    async def set_endpoint(
        self, owner_id: str, url: str, event_types: list[str], now: datetime
    ) -> Endpoint:
        values = {"url": url, "events": event_types, "disabled_at": None, "updated_at": now}
        upsert = self.db.insert(webhook_endpoints).values(
            owner_id=owner_id, created_at=now, **values
        )
        statement = upsert.on_conflict_do_update(
            index_elements=[webhook_endpoints.c.owner_id], set_=values
        )
        await self.db.write(lambda conn: conn.execute(statement))
        found = await self.endpoint(owner_id)
        assert found is not None
        return found

    async def delete_endpoint(self, owner_id: str) -> bool:
        statement = delete(webhook_endpoints).where(webhook_endpoints.c.owner_id == owner_id)
        return bool(await self.db.write(lambda conn: conn.execute(statement).rowcount))

    # -- deliveries -----------------------------------------------------------------------

    async def claim(self, now: datetime, lease_until: datetime, limit: int) -> list[Delivery]:
        """Due deliveries, each leased to the caller (no other sender takes them meanwhile)."""
        due = and_(
            deliveries.c.status == PENDING,
            deliveries.c.next_attempt_at <= now,
            or_(deliveries.c.lease_expires_at.is_(None), deliveries.c.lease_expires_at < now),
        )

        def work(conn: Connection) -> list[Delivery]:
            ids = list(
                conn.execute(
                    select(deliveries.c.id)
                    .where(due)
                    .order_by(deliveries.c.next_attempt_at)
                    .limit(limit)
                ).scalars()
            )
            if not ids:
                return []
            rows = conn.execute(
                update(deliveries)
                .where(deliveries.c.id.in_(ids), due)
                .values(lease_expires_at=lease_until)
                .returning(*deliveries.c)
            ).all()
            return [_delivery(row) for row in rows]

        return await self.db.write(work)

    async def payload_event(self, event_id: int) -> dict[str, Any] | None:
        query = select(events).where(events.c.id == event_id)
        row = await self.db.read(lambda conn: conn.execute(query).one_or_none())
        return dict(row._mapping) if row else None

    async def record(
        self,
        delivery: Delivery,
        attempt: Attempt,
        *,
        status: str,
        next_attempt_at: datetime | None = None,
    ) -> None:
        """One attempt and what it means for the delivery: done, failed, or try again."""
        finished = attempt.at if status != PENDING else None
        values: dict[str, Any] = {
            "status": status,
            "attempts": attempt.attempt,
            "last_status_code": attempt.status_code,
            "last_error": attempt.error,
            "lease_expires_at": None,
            "finished_at": finished,
        }
        if next_attempt_at is not None:
            values["next_attempt_at"] = next_attempt_at

        def work(conn: Connection) -> None:
            conn.execute(
                delivery_attempts.insert().values(
                    delivery_id=delivery.id,
                    attempt=attempt.attempt,
                    at=attempt.at,
                    status_code=attempt.status_code,
                    error=attempt.error,
                    duration_ms=attempt.duration_ms,
                )
            )
            conn.execute(update(deliveries).where(deliveries.c.id == delivery.id).values(**values))

        await self.db.write(work)

    async def gone(self, delivery: Delivery, now: datetime) -> None:
        """The target answered 410: cancel what is pending for it, and disable it as the
        owner's default endpoint if it is that."""
        pending_there = and_(
            deliveries.c.owner_id == delivery.owner_id,
            deliveries.c.url == delivery.url,
            deliveries.c.status == PENDING,
        )

        def work(conn: Connection) -> None:
            conn.execute(
                update(deliveries)
                .where(pending_there)
                .values(status=CANCELED, finished_at=now, lease_expires_at=None)
            )
            conn.execute(
                update(webhook_endpoints)
                .where(
                    webhook_endpoints.c.owner_id == delivery.owner_id,
                    webhook_endpoints.c.url == delivery.url,
                )
                .values(disabled_at=now, updated_at=now)
            )

        await self.db.write(work)

    async def of_job(self, job_id: str) -> list[tuple[Delivery, list[Attempt]]]:
        """A job's deliveries, oldest first, each with its attempts."""
        query = (
            select(deliveries)
            .where(deliveries.c.job_id == job_id)
            .order_by(deliveries.c.event_id, deliveries.c.id)
        )
        return await self.db.read(lambda conn: _with_attempts(conn, query))

    async def of_batch(self, batch_id: str) -> list[tuple[Delivery, list[Attempt]]]:
        """A batch's completion deliveries (one per round), oldest first, with attempts."""
        query = (
            select(deliveries)
            .where(deliveries.c.batch_id == batch_id)
            .order_by(deliveries.c.batch_round)
        )
        return await self.db.read(lambda conn: _with_attempts(conn, query))


def _with_attempts(conn: Connection, query: Select[Any]) -> list[tuple[Delivery, list[Attempt]]]:
    rows = conn.execute(query).all()
    tried = conn.execute(
        select(delivery_attempts)
        .where(delivery_attempts.c.delivery_id.in_([r.id for r in rows]))
        .order_by(delivery_attempts.c.delivery_id, delivery_attempts.c.attempt)
    ).all()
    by_delivery: dict[str, list[Attempt]] = {}
    for a in tried:
        by_delivery.setdefault(a.delivery_id, []).append(
            Attempt(a.attempt, a.at, a.status_code, a.error, a.duration_ms)
        )
    return [(_delivery(r), by_delivery.get(r.id, [])) for r in rows]


def _delivery(row: Any) -> Delivery:
    mapping = dict(row._mapping)
    mapping.pop("lease_expires_at", None)
    return Delivery(**mapping)
