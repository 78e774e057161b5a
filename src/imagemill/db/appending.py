"""The events one write transaction appends to the log, stored together at its end.

Every job event is a row of ``events``: numbered per job (``seq``, from the job row's
``event_seq``, which the transaction's own ``UPDATE`` moved on) and across the log
(``id``, from a sequence). A stream of all of an owner's jobs resumes after the last
``id`` it saw, so for each owner, ids must grow in commit order: a transaction that took
id 7 and committed after one that took id 8 would be passed by a reader that saw 8.

On PostgreSQL transactions that append events for an owner take turns from their first
event to their commit (an advisory lock per owner, ``EVENT_ORDER_LOCK``). That is why
the events are collected while the transaction changes its rows and stored only at its
end, in one statement that takes the turn, inserts them all and sends their
``NOTIFY`` (``events/fanout.py``): the turn is held for that statement and the commit,
two round trips, not for everything the transaction did before (a turn held from the
first statement capped a whole deployment at one owner's ~25 jobs a second). Waiting
for a turn holds only row locks that a transaction holding a turn never asks for (it
inserts events and webhook deliveries, nothing else), so turns cannot deadlock; several
owners' turns are taken in one order. On SQLite one writer runs at a time and ids
follow commits anyway.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, bindparam, func, insert, select, text

from imagemill.db.prepared import Prepared
from imagemill.db.tables import deliveries, events
from imagemill.domain import DEFAULT_WEBHOOK_EVENTS
from imagemill.events.fanout import CHANNEL, notification, numbered
from imagemill.ids import new_id

#: ``(type, data)``, or data computed from the job's updated row.
NewEvent = tuple[str, dict[str, Any] | Callable[[Row[Any]], dict[str, Any]]]
EVENT_ORDER_LOCK = 0x1A9E_E7E5  # the class of PostgreSQL's advisory locks for the turns

_TAKE_TURN = select(func.pg_advisory_xact_lock(EVENT_ORDER_LOCK, bindparam("owner_key")))
# Each event's log-wide position comes back with its job and number (in any order: asking
# for the order given would make it one statement per event).
_INSERT_EVENTS = Prepared(insert(events).returning(events.c.job_id, events.c.seq, events.c.id))
_INSERT_DELIVERIES = insert(deliveries)
# PostgreSQL: the owner's turn, the events, and their notification (its payload up to
# the ids, which follow in ``numbered`` order), in one round trip. The turn is the outer
# side of the insert's only join, so no event takes an id before the turn is held.
_STORE_IN_TURN = text(
    """
    WITH turn AS (SELECT true AS taken FROM pg_advisory_xact_lock(:lock_class, :owner_key)),
    stored AS (
        INSERT INTO events (job_id, seq, owner_id, type, data, created_at)
        SELECT r.job_id, r.seq, r.owner_id, r.type, r.data, r.created_at
        FROM turn, json_to_recordset(CAST(:rows AS json)) AS r(
            job_id varchar, seq integer, owner_id varchar, type varchar, data json,
            created_at timestamptz
        )
        RETURNING job_id, seq, id
    ),
    notified AS (
        SELECT count(*) AS sent FROM (
            SELECT pg_notify(:channel, :head || (
                SELECT json_agg(id ORDER BY job_id COLLATE "C", seq) FROM stored
            )::text || '}')
        ) AS notify
    )
    SELECT stored.job_id, stored.seq, stored.id FROM stored, notified
    """
)


def owner_key(owner_id: str) -> int:
    """The advisory lock key of ``owner_id``'s turns (32 bits; a collision only makes two
    owners take turns together)."""
    return zlib.crc32(owner_id.encode()) - 2**31


class Appending:
    """The events a transaction appends, in order; ``store`` writes them. Iterating gives
    each as a dict (``job_id``, ``seq``, ``owner_id``, ``type``, ``data``, ``created_at``;
    ``id`` once stored; ``webhook`` when it wakes the webhook sender)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.rows: dict[str, Row[Any]] = {}  # each job's row as this transaction left it
        self._webhooks: list[tuple[Row[Any], list[dict[str, Any]]]] = []

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.events)

    def __bool__(self) -> bool:
        return bool(self.events)

    def add(self, row: Row[Any], new_events: Sequence[NewEvent], now: datetime) -> None:
        """Append ``new_events`` to the job of ``row`` (its ``id``, ``owner_id``,
        ``event_seq`` already moved on by ``len(new_events)``, ``webhook_url``,
        ``webhook_events``)."""
        if not new_events:
            return
        self.rows[row.id] = row
        first = row.event_seq - len(new_events) + 1
        added = [
            {
                "job_id": row.id,
                "seq": first + offset,
                "owner_id": row.owner_id,
                "type": kind,
                "data": data(row) if callable(data) else data,
                "created_at": now,
            }
            for offset, (kind, data) in enumerate(new_events)
        ]
        self.events += added
        if row.webhook_url:
            self._webhooks.append((row, added))

    def wake_webhooks(self) -> None:
        """Have the sender woken once this commits (a delivery was queued meanwhile)."""
        if self.events:
            self.events[-1]["webhook"] = True

    def store(self, conn: Connection, *, origin: str | None = None) -> None:
        """Insert the events (and the webhook deliveries they make), each given its ``id``.
        ``origin`` (PostgreSQL, several processes): in their owners' turns, and notified
        to the other processes as coming from ``origin``."""
        if not self.events:
            return
        rows = [{k: v for k, v in event.items() if k != "webhook"} for event in self.events]
        returned: Sequence[Any]
        if origin is None:
            returned = _INSERT_EVENTS.many(conn, rows)
        else:
            *first, last = sorted({owner_key(e["owner_id"]) for e in self.events})
            for key in first:
                conn.execute(_TAKE_TURN, {"owner_key": key})
            params = {
                "lock_class": EVENT_ORDER_LOCK,
                "owner_key": last,
                "rows": json.dumps(rows, default=_iso),
                "channel": CHANNEL,
                "head": notification(origin, numbered(self.events), numbered_later=True),
            }
            returned = conn.execute(_STORE_IN_TURN, params).all()
        ids = {(job, seq): id_ for job, seq, id_ in returned}
        for event in self.events:
            event["id"] = ids[event["job_id"], event["seq"]]
        queued = [delivery for row, added in self._webhooks for delivery in _deliveries(row, added)]
        if queued:
            conn.execute(_INSERT_DELIVERIES, queued)


def _iso(value: Any) -> str:
    """A time as PostgreSQL reads it, refusing a naive one as ``UTCDateTime`` does."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.isoformat()
    raise TypeError(f"an event cannot hold {value!r}")


def _deliveries(row: Row[Any], added: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A pending delivery for each of ``added`` that the job's webhook wants; those wake
    the sender."""
    wanted = set(row.webhook_events or DEFAULT_WEBHOOK_EVENTS)
    queued = []
    for event in added:
        if event["type"] not in wanted:
            continue
        event["webhook"] = True
        queued.append(
            {
                "id": new_id("dlv"),
                "owner_id": row.owner_id,
                "job_id": row.id,
                "event_id": event["id"],
                "event_type": event["type"],
                "url": row.webhook_url,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": event["created_at"],
                "created_at": event["created_at"],
            }
        )
    return queued
