"""Budgets in SQL (``db/budgets.py``): reserving is exact under concurrency, on SQLite and
PostgreSQL, and across two servers sharing one PostgreSQL database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Connection

from imagemill.config import Settings
from imagemill.db import budgets
from imagemill.errors import BudgetExceeded
from imagemill.jobs.service import utcnow
from imagemill.runtime import Runtime
from imagemill.spend.budgets import Limit, Period


@pytest.fixture
async def owner_id(stepped: Runtime) -> str:
    owner = await stepped.accounts.owner_named("shop", utcnow())
    await stepped.budgets.set(owner.id, owner.id, Limit(1_000_000, Period.DAY), utcnow())
    return owner.id


async def _hold(runtime: Runtime, owner_id: str, micros: int) -> bool:
    """One reservation of ``micros`` in a transaction of its own; whether it fit."""

    def work(conn: Connection) -> budgets.Reservation | None:
        return budgets.reserve(conn, [owner_id], micros, utcnow())

    try:
        await runtime.db.write(work)
    except BudgetExceeded:
        return False
    return True


async def test_64_concurrent_reservations_fill_a_budget_exactly(
    stepped: Runtime, owner_id: str
) -> None:
    fits = await asyncio.gather(*(_hold(stepped, owner_id, 40_000) for _ in range(64)))
    [state] = await stepped.budgets.of([owner_id], utcnow())
    assert fits.count(True) == 25  # $1.00 at $0.04 each: exact, with no float drift
    assert (state.reserved_micros, state.remaining_micros) == (1_000_000, 0)


async def test_settling_spends_the_real_cost_and_gives_the_hold_back(
    stepped: Runtime, owner_id: str
) -> None:
    def reserve(conn: Connection) -> budgets.Reservation | None:
        return budgets.reserve(conn, [owner_id], 300_000, utcnow())

    held = await stepped.db.write(reserve)
    assert held is not None and held["micros"] == 300_000
    await stepped.db.write(lambda conn: budgets.settle(conn, held, 120_000))
    [state] = await stepped.budgets.of([owner_id], utcnow())
    assert (state.spent_micros, state.reserved_micros, state.remaining_micros) == (
        120_000,
        0,
        880_000,
    )


async def test_a_free_job_is_never_refused_but_is_settled_and_no_budget_holds_nothing(
    stepped: Runtime, owner_id: str
) -> None:
    assert await _hold(stepped, owner_id, 1_000_000)  # the whole dollar held
    free = await stepped.db.write(lambda conn: budgets.reserve(conn, [owner_id], 0, utcnow()))
    assert free is not None and free["micros"] == 0  # not refused, though nothing is left
    await stepped.db.write(lambda conn: budgets.settle(conn, free, 5_000))  # it reported a cost
    [state] = await stepped.budgets.of([owner_id], utcnow())
    assert state.spent_micros == 5_000
    unbudgeted = await stepped.accounts.owner_named("free", utcnow())
    held = await stepped.db.write(
        lambda conn: budgets.reserve(conn, [unbudgeted.id], 10**9, utcnow())
    )
    assert held is None


@pytest.fixture
def postgres_settings(settings: Settings, postgres_url: str) -> Settings:
    return settings.model_copy(update={"database_url": postgres_url})


@pytest.fixture
async def two_servers(postgres_settings: Settings) -> AsyncIterator[tuple[Runtime, Runtime]]:
    """Two runtimes on one PostgreSQL database, each with its own connection pool: to
    the database, as two processes are."""
    first = Runtime(postgres_settings, run_workers=False, sweep=False)
    second = Runtime(postgres_settings, run_workers=False, sweep=False)
    async with first, second:
        yield first, second


async def test_two_servers_on_one_postgresql_database_never_overshoot_a_budget(
    two_servers: tuple[Runtime, Runtime],
) -> None:
    first, second = two_servers
    owner = await first.accounts.owner_named("shop", utcnow())
    await first.budgets.set(owner.id, owner.id, Limit(200_000, Period.DAY), utcnow())
    fits = await asyncio.gather(
        *(_hold((first, second)[n % 2], owner.id, 40_000) for n in range(64))
    )
    [state] = await second.budgets.of([owner.id], utcnow())
    assert fits.count(True) == 5
    assert state.reserved_micros == 200_000
