"""The job state machine and ``transition()``, the one way a job's status changes.

::

    queued ──claim──▶ running ──▶ succeeded | failed | canceled
       │                 │                      │        │
       │                 └──retry / release──▶ queued ◀──requeue (the owner's retry)
       └──cancel / expire──▶ canceled | failed

Every change is a compare-and-set in SQL: the ``UPDATE`` names the states it may
start from (and, for a worker, the lease it holds). No row back means the job had
moved on (canceled, claimed elsewhere, finished): the caller lost the race.

Each kind of change is declared once as a ``Transition`` (checked against ``ALLOWED``
when declared) whose statement is built once, with bound parameters for what varies
per call; building SQLAlchemy expressions costs more than running them on SQLite.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    ColumnElement,
    Connection,
    Update,
    and_,
    bindparam,
    func,
    or_,
    update,
)
from sqlalchemy.types import TypeEngine

from imagemill.db import batch_completion, budgets
from imagemill.db.appending import Appending, NewEvent
from imagemill.db.prepared import Prepared
from imagemill.db.tables import UTCDateTime, jobs
from imagemill.domain import JobStatus
from imagemill.errors import IllegalTransition, ImagemillError
from imagemill.spend.budgets import to_micros

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
    F: frozenset({Q}),  # the owner retries it: the same job, attempts counted afresh
    C: frozenset({Q}),
}


def check(sources: Iterable[JobStatus], target: JobStatus) -> None:
    """Raise ``IllegalTransition`` unless every ``source → target`` is allowed."""
    for source in sources:
        if target not in ALLOWED[source]:
            raise IllegalTransition(f"a job cannot go from {source} to {target}")


def param(name: str, type_: TypeEngine[Any] | None = None) -> Any:
    """A value a transition's caller supplies: ``transition(..., params={name: value})``.

    Every transition also binds ``now`` and, when fenced, ``lease_owner``.
    """
    return bindparam(f"p_{name}", type_=type_)


NOW = param("now", UTCDateTime())


@dataclass(frozen=True)
class Transition:
    """One kind of status change: from ``sources`` to ``target``, compare-and-set.

    ``fenced``: only the worker holding the lease may make it. ``where`` adds a
    condition and ``values`` sets more columns; both may use ``param(...)``.
    """

    sources: tuple[JobStatus, ...]
    target: JobStatus
    fenced: bool = False
    where: ColumnElement[bool] | None = None
    values: Mapping[str, Any] = field(default_factory=dict)
    statement: Prepared[Update] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check(self.sources, self.target)
        conditions = [
            jobs.c.id == param("job_id"),
            jobs.c.status.in_([s.value for s in self.sources]),
        ]
        if self.fenced:
            conditions.append(jobs.c.lease_owner == param("lease_owner"))
        if self.where is not None:
            conditions.append(self.where)
        statement = (
            update(jobs)
            .where(and_(*conditions))
            .values(
                status=self.target.value,
                updated_at=NOW,
                event_seq=jobs.c.event_seq + param("event_count"),
                **self.values,
            )
            .returning(*jobs.c)
        )
        object.__setattr__(self, "statement", Prepared(statement))


def transition(
    conn: Connection,
    change: Transition,
    job_id: str,
    *,
    now: datetime,
    published: Appending,
    lease_owner: str | None = None,
    params: Mapping[str, Any] | None = None,
    new_events: Sequence[NewEvent] = (),
) -> Any:
    """Make ``change`` to ``job_id``, compare-and-set.

    ``new_events`` are appended to the job's event log in the same transaction with
    the next sequence numbers (``published`` stores them at its end). Ending a job
    settles what it held against budgets (``db/budgets.py``), and ending an item of a
    batch may complete the batch, in the same transaction too (``db/batch_completion.py``).
    Returns the updated row (values by column name), or ``None`` when the job was not
    in a state (or lease) this change may start from.
    """
    if change.fenced and lease_owner is None:
        raise ValueError("a fenced transition needs the lease owner")
    bound = {f"p_{name}": value for name, value in (params or {}).items()}
    bound.update(p_job_id=job_id, p_now=now, p_event_count=len(new_events))
    if change.fenced:
        bound["p_lease_owner"] = lease_owner
    row = change.statement.one_or_none(conn, bound)
    if row is not None:
        published.add(row, new_events, now)
        if change.target.terminal:
            if row.reservation:
                # Enhancing its prompt was spent when paid (``save_enhanced_prompt``).
                paid_before = to_micros(row.enhance_cost_usd or 0)
                cost = max(0, to_micros(row.cost_usd) - paid_before) if change.target is S else 0
                budgets.settle(conn, row.reservation, cost)
            if row.batch_id is not None:
                batch_completion.item_ended(conn, row.batch_id, now, published)
    return row


# -- the edges --------------------------------------------------------------------------------

_ERROR = {
    "error_code": param("error_code"),
    "error_message": param("error_message"),
    "error_retryable": param("error_retryable"),
}
_FINISHED = {"finished_at": NOW, "lease_expires_at": None}
_UNLEASED = {"lease_owner": None, "lease_expires_at": None}

#: A worker takes a job: queued and due, or running on a lease that expired.
CLAIM = Transition(
    (Q, R),
    R,
    where=or_(
        and_(jobs.c.status == Q.value, jobs.c.run_after <= NOW),
        and_(
            jobs.c.status == R.value,
            jobs.c.lease_expires_at < NOW,
            jobs.c.attempt < jobs.c.max_attempts,
        ),
    ),
    values={
        "lease_owner": param("worker"),
        "lease_expires_at": param("lease_until", UTCDateTime()),
        "attempt": jobs.c.attempt + 1,
        "started_at": func.coalesce(jobs.c.started_at, NOW),
    },
)
SUCCEED = Transition(
    (R,), S, fenced=True, values={"progress": 1.0, "cost_usd": param("cost_usd"), **_FINISHED}
)
#: A retryable failure with attempts left: due again at ``run_after``.
RETRY = Transition(
    (R,),
    Q,
    fenced=True,
    values={**_ERROR, "run_after": param("run_after", UTCDateTime()), **_UNLEASED},
)
FAIL_ATTEMPT = Transition((R,), F, fenced=True, values={**_ERROR, **_FINISHED})
#: Failing a job from outside its attempt (unrunnable, or an operator).
FAIL = Transition((Q, R), F, values={**_ERROR, **_FINISHED})
#: A worker shutting down gives its job back without spending the attempt.
RELEASE = Transition(
    (R,),
    Q,
    fenced=True,
    values={"attempt": jobs.c.attempt - 1, "run_after": NOW, **_UNLEASED},
)
CANCEL = Transition((Q, R), C, where=jobs.c.owner_id == param("owner_id"), values=_FINISHED)
#: The owner runs a failed or canceled job again: the same request and id, its attempts,
#: error, progress, start and provider request forgotten, with a new deadline.
REQUEUE = Transition(
    (F, C),
    Q,
    where=jobs.c.owner_id == param("owner_id"),
    values={
        "attempt": 0,
        "error_code": None,
        "error_message": None,
        "error_retryable": None,
        "progress": 0.0,
        "progress_message": None,
        "provider_ref": None,
        "run_after": NOW,
        "deadline_at": param("deadline_at", UTCDateTime()),
        "reservation": param("reservation", JSON(none_as_null=True)),
        "started_at": None,
        "finished_at": None,
        **_UNLEASED,
    },
)
#: The sweeper takes back a job whose worker stopped renewing its lease (it died): queued
#: again, so running means running somewhere, and its next claim waits its turn.
LAPSE = Transition(
    (R,),
    Q,
    where=and_(jobs.c.lease_expires_at < NOW, jobs.c.attempt < jobs.c.max_attempts),
    values={"run_after": NOW, **_UNLEASED},
)
#: The sweeper fails a job whose lease expired with no attempts left.
EXPIRE = Transition(
    (R,),
    F,
    where=and_(jobs.c.lease_expires_at < NOW, jobs.c.attempt >= jobs.c.max_attempts),
    values={**_ERROR, **_FINISHED},
)


#: The sweeper fails a job past its deadline that no worker is running (queued, or
#: running on an expired lease); a running attempt enforces the deadline itself.
OVERDUE = Transition(
    (Q, R),
    F,
    where=and_(
        jobs.c.deadline_at < NOW,
        or_(jobs.c.status == Q.value, jobs.c.lease_expires_at < NOW),
    ),
    values={**_ERROR, **_FINISHED},
)


def error_params(error: ImagemillError) -> dict[str, Any]:
    """The ``params`` of a transition that records ``error``."""
    return {
        "error_code": error.code,
        "error_message": error.message,
        "error_retryable": error.retryable,
    }
