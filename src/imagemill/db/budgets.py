"""Budgets in SQL: reserving a job's estimate at submit, settling it when the job ends,
and the budgets operators set (``spend/budgets.py`` has the periods and amounts).

Reserving is one conditional ``UPDATE`` of the period's row in ``budget_spend``
(``spent + reserved + amount <= limit``), in the transaction that inserts the job:

- PostgreSQL (READ COMMITTED): an ``UPDATE`` that finds the row changed by a transaction
  that committed meanwhile evaluates its condition again on the new row, so concurrent
  submits, in any number of processes, never take a budget past its limit together;
  the period's row is created first by an ``INSERT … ON CONFLICT DO NOTHING``, which
  waits for a concurrent insert of the same row to end.
- SQLite: ``BEGIN IMMEDIATE`` already runs writers one at a time.

A job's reservation is kept on its row (``jobs.reservation``); ``transition()``
(``jobs/states.py``) calls ``settle`` in the transaction of every terminal edge: a
succeeded job's real cost moves to ``spent``, and whatever the job ends as, its hold
is given back. An owner's retry of a failed or canceled job reserves again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, bindparam, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from imagemill.boundary import quoted
from imagemill.db.engine import Database
from imagemill.db.prepared import Prepared
from imagemill.db.tables import UTCDateTime, api_keys, budget_spend, budgets, jobs, owners
from imagemill.domain import JobStatus
from imagemill.errors import BudgetExceeded, NotFound, TooManyRequests
from imagemill.spend.budgets import Limit, Period, to_micros, to_usd

Reservation = dict[str, Any]  # {"micros": N, "budgets": [[scope, period start ISO], ...]}

_BUDGETS_OF = Prepared(
    select(budgets).where(budgets.c.scope.in_(bindparam("scopes", expanding=True)))
)
_SPEND_ROW = {
    "scope": bindparam("b_scope"),
    "period_start": bindparam("b_start", type_=UTCDateTime()),
    "spent_micros": 0,
    "reserved_micros": 0,
}
_OPEN_PERIOD: dict[str, Prepared[Any]] = {
    "sqlite": Prepared(sqlite.insert(budget_spend).values(_SPEND_ROW).on_conflict_do_nothing()),
    "postgresql": Prepared(
        postgresql.insert(budget_spend).values(_SPEND_ROW).on_conflict_do_nothing()
    ),
}
_THIS_PERIOD = (budget_spend.c.scope == bindparam("b_scope")) & (
    budget_spend.c.period_start == bindparam("b_start", type_=UTCDateTime())
)
_RESERVE = Prepared(
    update(budget_spend)
    .where(
        _THIS_PERIOD,
        budget_spend.c.spent_micros + budget_spend.c.reserved_micros + bindparam("amount")
        <= bindparam("limit"),
    )
    .values(reserved_micros=budget_spend.c.reserved_micros + bindparam("amount"))
    .returning(budget_spend.c.scope)
)
_SPEND = Prepared(select(budget_spend).where(_THIS_PERIOD))
_SETTLE = Prepared(
    update(budget_spend)
    .where(_THIS_PERIOD)
    .values(
        reserved_micros=budget_spend.c.reserved_micros - bindparam("held"),
        spent_micros=budget_spend.c.spent_micros + bindparam("cost"),
    )
)


@dataclass(frozen=True, slots=True)
class BudgetState:
    """A budget and where its current period stands, in USD millionths."""

    scope: str  # the key's id, or the owner's
    owner_id: str
    limit: Limit
    period_start: datetime
    spent_micros: int
    reserved_micros: int

    @property
    def applies_to(self) -> Literal["key", "owner"]:
        """``"key"`` or ``"owner"`` (all of the owner's keys, and keyless calls)."""
        return "owner" if self.scope == self.owner_id else "key"

    @property
    def remaining_micros(self) -> int:
        return max(0, self.limit.limit_micros - self.spent_micros - self.reserved_micros)

    @property
    def resets_at(self) -> datetime | None:
        return self.limit.period.end(self.period_start)

    def described(self, requested_micros: int = 0) -> dict[str, Any]:
        """What the caller may know of it, in USD (``BudgetExceeded.budget``)."""
        resets_at = self.resets_at
        return {
            "scope": self.applies_to,
            "period": self.limit.period.value,
            "limit": to_usd(self.limit.limit_micros),
            "spent": to_usd(self.spent_micros),
            "reserved": to_usd(self.reserved_micros),
            "remaining": to_usd(self.remaining_micros),
            "requested": to_usd(requested_micros),
            "resets_at": resets_at.isoformat().replace("+00:00", "Z") if resets_at else None,
        }


@dataclass(frozen=True, slots=True)
class InFlightLimit:
    """An API key's limit on its jobs queued or running at once (``spend/limits.py``)."""

    key_id: str
    limit: int


_LOCK_KEY = Prepared(
    select(api_keys.c.id).where(api_keys.c.id == bindparam("key_id")).with_for_update()
)
_IN_FLIGHT = Prepared(
    select(func.count())
    .select_from(jobs)
    .where(
        jobs.c.key_id == bindparam("key_id"),
        jobs.c.status.in_([JobStatus.QUEUED.value, JobStatus.RUNNING.value]),
    )
)


def lock_key(conn: Connection, in_flight: InFlightLimit | None) -> None:
    """Take the key's row for the rest of the transaction (PostgreSQL; SQLite's writers
    run one at a time anyway): submits of one key with a limit on jobs in flight count
    them one after the other, in any number of processes."""
    if in_flight is not None:
        _LOCK_KEY.rows(conn, {"key_id": in_flight.key_id})


def check_in_flight(conn: Connection, in_flight: InFlightLimit | None) -> None:
    """``TooManyRequests`` if, with what this transaction recorded, the key has more
    jobs queued or running than its limit (the transaction then rolls back)."""
    if in_flight is None:
        return
    count = _IN_FLIGHT.scalar(conn, {"key_id": in_flight.key_id})
    if count > in_flight.limit:
        raise TooManyRequests(
            f"this API key may have {in_flight.limit} jobs queued or running at once; "
            "wait for some to finish",
            policy="jobs",
            retry_after=None,
        )


def scopes_of(owner_id: str, key_id: str | None) -> list[str]:
    """The budgets a caller's requests count against: its key's, then its owner's."""
    return [key_id, owner_id] if key_id else [owner_id]


def reserve(
    conn: Connection, scopes: Sequence[str], micros: int, now: datetime
) -> Reservation | None:
    """Hold ``micros`` against every budget set for ``scopes`` (in the current period of
    each), or raise ``BudgetExceeded`` naming the first that has not enough left (the
    caller's transaction then rolls back whatever was held). ``None``: no budget applies.
    A job priced at nothing holds nothing and is never refused, but is settled like any
    other (a provider may report a cost where the price table has none)."""
    micros = max(0, micros)
    found = {row.scope: row for row in _BUDGETS_OF.rows(conn, {"scopes": list(scopes)})}
    held = []
    for scope in scopes:
        row = found.get(scope)
        if row is None:
            continue
        start = Period(row.period).start(now)
        where = {"b_scope": scope, "b_start": start}
        _OPEN_PERIOD[conn.dialect.name].rows(conn, where)
        if micros == 0:  # priced at nothing, but what it reports it cost is spent
            held.append([scope, start.isoformat()])
            continue
        if _RESERVE.one_or_none(conn, {**where, "amount": micros, "limit": row.limit_micros}):
            held.append([scope, start.isoformat()])
            continue
        state = _state(row, start, _SPEND.one(conn, where))
        raise BudgetExceeded(_refusal(state, micros), state.described(micros))
    return {"micros": micros, "budgets": held} if held else None


def charge(conn: Connection, reservation: Mapping[str, Any], cost_micros: int) -> Reservation:
    """Spend ``cost_micros`` paid before the job ends (its prompt enhanced), taken from its
    hold as far as the hold goes; the reservation with what it still holds."""
    held = reservation.get("micros", 0)
    taken = min(held, cost_micros)
    _spend(conn, reservation, taken, cost_micros)
    return {**reservation, "micros": held - taken}


def settle(conn: Connection, reservation: Mapping[str, Any], cost_micros: int) -> None:
    """End a job's hold: ``cost_micros`` (its real cost; 0 unless it succeeded) is spent
    in each period it held from, and the hold is given back."""
    _spend(conn, reservation, reservation.get("micros", 0), cost_micros)


def _spend(conn: Connection, reservation: Mapping[str, Any], released: int, cost: int) -> None:
    """In each period ``reservation`` held from: ``released`` less held, ``cost`` spent."""
    _SETTLE.many(
        conn,
        [
            {
                "b_scope": scope,
                "b_start": datetime.fromisoformat(start),
                "held": released,
                "cost": cost,
            }
            for scope, start in reservation.get("budgets", [])
        ],
    )


def states(conn: Connection, scopes: Sequence[str], now: datetime) -> list[BudgetState]:
    """The budgets set for ``scopes``, in that order, each in its current period."""
    found = {row.scope: row for row in _BUDGETS_OF.rows(conn, {"scopes": list(scopes)})}
    result = []
    for scope in scopes:
        row = found.get(scope)
        if row is not None:
            start = Period(row.period).start(now)
            result.append(
                _state(row, start, _SPEND.one_or_none(conn, {"b_scope": scope, "b_start": start}))
            )
    return result


def _state(budget: Any, start: datetime, spend: Any) -> BudgetState:
    return BudgetState(
        scope=budget.scope,
        owner_id=budget.owner_id,
        limit=Limit(budget.limit_micros, Period(budget.period)),
        period_start=start,
        spent_micros=spend.spent_micros if spend else 0,
        reserved_micros=spend.reserved_micros if spend else 0,
    )


def _refusal(state: BudgetState, requested: int) -> str:
    whose = "this API key's" if state.applies_to == "key" else "the owner's"
    left = to_usd(state.remaining_micros)
    resets = state.resets_at
    when = f"; it resets at {resets:%Y-%m-%d %H:%M} UTC" if resets else ""
    return (
        f"this request may cost up to ${to_usd(requested):.6g}, and {whose} budget of "
        f"{state.limit} has ${left:.2f} left (${to_usd(state.spent_micros):.2f} spent, "
        f"${to_usd(state.reserved_micros):.2f} held by unfinished jobs){when}"
    )


_LOCK_SPEND = Prepared(select(budget_spend.c.scope).where(_THIS_PERIOD).with_for_update())
_SET_SPENT = Prepared(
    update(budget_spend).where(_THIS_PERIOD).values(spent_micros=bindparam("spent"))
)


def _recount(conn: Connection, scope: str, owner_id: str, period: Period, now: datetime) -> None:
    """What ``scope`` spent in the current ``period``, counted from its jobs (those that
    ended in it: what succeeded cost, and prompts enhanced for ones that did not): a
    budget set, or changed to another period, counts what was spent before it existed.

    The period's row is locked first (PostgreSQL), so a job ending meanwhile adds its
    cost after this count, which cannot see it, never before it is overwritten."""
    start = period.start(now)
    where = {"b_scope": scope, "b_start": start}
    _OPEN_PERIOD[conn.dialect.name].rows(conn, where)
    _LOCK_SPEND.rows(conn, where)
    whose = jobs.c.owner_id == owner_id if scope == owner_id else jobs.c.key_id == scope
    ended = [jobs.c.finished_at >= start]
    end = period.end(start)
    if end is not None:
        ended.append(jobs.c.finished_at < end)
    spent = conn.execute(
        select(func.coalesce(func.sum(jobs.c.cost_usd), 0.0)).where(whose, *ended)
    ).scalar()
    _SET_SPENT.rows(conn, {**where, "spent": to_micros(spent or 0.0)})


class Budgets:
    """The budgets operators set (``imagemill budgets``, ``/v1/admin/budgets``)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def set(self, scope: str, owner_id: str, limit: Limit, now: datetime) -> BudgetState:
        """Set (or change) the budget of ``scope``: what its jobs spent in the current
        period, before the budget existed too, counts against the new limit."""
        values = {
            "scope": scope,
            "owner_id": owner_id,
            "limit_micros": limit.limit_micros,
            "period": limit.period.value,
            "created_at": now,
            "updated_at": now,
        }
        statement = self.db.insert(budgets).values(values)
        statement = statement.on_conflict_do_update(
            index_elements=[budgets.c.scope],
            set_={
                "limit_micros": statement.excluded.limit_micros,
                "period": statement.excluded.period,
                "updated_at": statement.excluded.updated_at,
            },
        )

        def work(conn: Connection) -> BudgetState:
            conn.execute(statement)
            _recount(conn, scope, owner_id, limit.period, now)
            return states(conn, [scope], now)[0]

        return await self.db.write(work)

    async def owner_of(self, scope: str) -> str:
        """The owner of ``scope``: an API key's id (revoked or not) or an owner's id;
        ``NotFound`` for anything else."""
        key = select(api_keys.c.owner_id).where(api_keys.c.id == scope)
        owner = select(owners.c.id).where(owners.c.id == scope)

        def work(conn: Connection) -> str | None:
            return conn.execute(key).scalar() or conn.execute(owner).scalar()

        found = await self.db.read(work)
        if found is None:
            raise NotFound(
                f"no API key or owner {quoted(scope)} (`imagemill keys ls` shows key ids)"
            )
        return str(found)

    async def remove(self, scope: str) -> bool:
        """Remove the budget of ``scope``; whether there was one. Its spending so far is
        kept: set again within the period, it counts."""
        statement = delete(budgets).where(budgets.c.scope == scope)
        return bool(await self.db.write(lambda conn: conn.execute(statement).rowcount))

    async def of(self, scopes: Sequence[str], now: datetime) -> list[BudgetState]:
        return await self.db.read(lambda conn: states(conn, scopes, now))

    async def all(self, now: datetime) -> list[BudgetState]:
        """Every budget set, oldest first, each in its current period."""

        def work(conn: Connection) -> list[BudgetState]:
            query = select(budgets.c.scope).order_by(budgets.c.created_at, budgets.c.scope)
            return states(conn, [row.scope for row in conn.execute(query)], now)

        return await self.db.read(work)
