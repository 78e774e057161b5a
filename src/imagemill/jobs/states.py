"""The job state machine and ``transition()``, the one way a job's status changes.

::

    queued ──claim──▶ running ──▶ succeeded | failed | canceled
       │                 │
       │                 └──retry / release──▶ queued
       └──cancel / expire──▶ canceled | failed

Every change is a compare-and-set in SQL: the ``UPDATE`` names the states it may
start from (and, for a worker, the lease it holds). No row back means the job had
moved on (canceled, claimed elsewhere, finished): the caller lost the race.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, and_, insert, update
from sqlalchemy.ext.asyncio import AsyncConnection

from imagemill.db.tables import events, jobs
from imagemill.domain import JobStatus
from imagemill.errors import IllegalTransition

Q, R, S, F, C = (
    JobStatus.QUEUED,
    JobStatus.RUNNING,
    JobStatus.SUCCEEDED,
    JobStatus.FAILED,
    JobStatus.CANCELED,
)

ALLOWED: Mapping[JobStatus, frozenset[JobStatus]] = {
    Q: frozenset({R, C, F, S}),  # S: a cache hit; F: expired or unrunnable
    R: frozenset({S, F, C, Q, R}),  # R→R: a new attempt claims an expired lease
    S: frozenset(),
    F: frozenset(),
    C: frozenset(),
}


def check(sources: Iterable[JobStatus], target: JobStatus) -> None:
    """Raise ``IllegalTransition`` unless every ``source → target`` is allowed."""
    for source in sources:
        if target not in ALLOWED[source]:
            raise IllegalTransition(f"a job cannot go from {source} to {target}")


# (type, data); data may be a function of the updated row, for values only it knows.
NewEvent = tuple[str, dict[str, Any] | Callable[[Row[Any]], dict[str, Any]]]


async def transition(
    conn: AsyncConnection,
    job_id: str,
    *,
    sources: Sequence[JobStatus],
    target: JobStatus,
    now: datetime,
    lease_owner: str | None = None,
    where: ColumnElement[bool] | None = None,
    values: Mapping[str, Any] | None = None,
    new_events: Sequence[NewEvent] = (),
) -> tuple[Row[Any], list[dict[str, Any]]] | None:
    """Move ``job_id`` from one of ``sources`` to ``target``, compare-and-set.

    ``lease_owner`` fences the change to the worker holding the claim. ``new_events``
    are appended to the job's event log in the same transaction with the next
    sequence numbers. Returns the updated row and the stored events, or ``None``
    when the job was not in a state this change may start from.
    """
    check(sources, target)
    conditions = [jobs.c.id == job_id, jobs.c.status.in_([s.value for s in sources])]
    if lease_owner is not None:
        conditions.append(jobs.c.lease_owner == lease_owner)
    if where is not None:
        conditions.append(where)
    statement = (
        update(jobs)
        .where(and_(*conditions))
        .values(
            status=target.value,
            updated_at=now,
            event_seq=jobs.c.event_seq + len(new_events),
            **(values or {}),
        )
        .returning(*jobs.c)
    )
    row = (await conn.execute(statement)).one_or_none()
    if row is None:
        return None
    stored = await append_events(conn, row, new_events, now)
    return row, stored


async def append_events(
    conn: AsyncConnection, row: Row[Any], new_events: Sequence[NewEvent], now: datetime
) -> list[dict[str, Any]]:
    """Insert events numbered up to ``row.event_seq`` (already incremented by the caller)."""
    if not new_events:
        return []
    first = row.event_seq - len(new_events) + 1
    stored = [
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
    await conn.execute(insert(events), stored)
    return stored
