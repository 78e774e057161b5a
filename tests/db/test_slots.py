"""Slot rows across processes: a dead holder's slot is freed by its lease, but a job's
slot goes to no other while that job still reads running, whatever the leases, and the
job itself may take it back (so no slot stays taken by a job that moved on)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import update

from imagemill.db.slots import ProviderSlots
from imagemill.db.tables import provider_slots
from imagemill.domain import JobStatus, Submission
from imagemill.jobs.service import utcnow
from imagemill.runtime import Runtime

BATCH = "batch:b"


async def _job(runtime: Runtime) -> str:
    owner = await runtime.local_owner()
    [job] = await runtime.service.submit(owner.id, Submission(model="placeholder", prompt="x"))
    return job.id


async def _taken(slots: ProviderSlots, key: str, within: float = 0.6) -> bool:
    """Whether ``key`` gets the batch's one slot within ``within`` seconds (then lets go)."""
    started = asyncio.Event()

    async def hold() -> None:
        async with slots.hold(BATCH, key, limit=1):
            started.set()

    holding = asyncio.create_task(hold())
    try:
        await asyncio.wait_for(started.wait(), within)
        return True
    except TimeoutError:
        return False
    finally:
        holding.cancel()  # a wait for the slot, if it got none
        await asyncio.gather(holding, return_exceptions=True)


async def _held_by_the_dead(runtime: Runtime, holder: str) -> None:
    """The slot's row as a process leaves it when it dies holding it: its lease ran out."""
    statement = (
        update(provider_slots)
        .where(provider_slots.c.provider == BATCH, provider_slots.c.slot == 0)
        .values(holder=holder, expires_at=utcnow() - timedelta(seconds=1))
    )
    await runtime.db.write(lambda conn: conn.execute(statement))


@pytest.fixture
def slots(stepped: Runtime) -> ProviderSlots:
    return ProviderSlots(stepped.db, {}, lease_seconds=30)


async def test_a_running_jobs_slot_waits_until_the_job_is_queued_again(
    stepped: Runtime, slots: ProviderSlots
) -> None:
    died, other = await _job(stepped), await _job(stepped)
    until = utcnow() + timedelta(hours=1)
    assert (await stepped.repo.claim(died, "dead-worker", until, utcnow())) is not None
    assert await _taken(slots, other)  # the row exists, free
    await _held_by_the_dead(stepped, died)

    assert not await _taken(slots, other), "its job still reads running"
    assert await _taken(slots, died), "a job takes back its own slot"

    await _held_by_the_dead(stepped, died)
    await stepped.repo.release(died, "dead-worker", utcnow())  # queued again, as the sweeper does
    assert (await stepped.repo.get_job(died)).status is JobStatus.QUEUED
    assert await _taken(slots, other)


async def test_a_slot_held_by_no_job_is_free_once_its_lease_ran_out(
    stepped: Runtime, slots: ProviderSlots
) -> None:
    assert await _taken(slots, "first")
    await _held_by_the_dead(stepped, "slot_someone")
    assert await _taken(slots, "next")


async def test_a_live_holder_keeps_its_slot(stepped: Runtime, slots: ProviderSlots) -> None:
    entered, leave = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with slots.hold(BATCH, "holder", limit=1):
            entered.set()
            await leave.wait()

    holding = asyncio.create_task(hold())
    await entered.wait()
    other = ProviderSlots(stepped.db, {}, lease_seconds=30)  # another process
    assert not await _taken(other, "holder"), "not even for the same key: it is not expired"
    leave.set()
    await holding
    assert await _taken(other, "next")


async def test_a_job_back_from_a_dead_process_takes_its_own_slot_not_a_free_one(
    stepped: Runtime, slots: ProviderSlots
) -> None:
    """Two slots: one free, one still the job's from before its process died. It takes
    its own back (on PostgreSQL too, where NULL sorts first), leaving the free one free."""
    job, other = await _job(stepped), await _job(stepped)
    until = utcnow() + timedelta(hours=1)
    assert (await stepped.repo.claim(job, "dead-worker", until, utcnow())) is not None
    entered, leave = asyncio.Event(), asyncio.Event()

    async def hold(key: str) -> None:
        async with slots.hold(BATCH, key, limit=2):
            entered.set()
            await leave.wait()

    first = asyncio.create_task(hold("someone"))  # make both rows exist
    await entered.wait()
    leave.set()
    await first
    statement = (
        update(provider_slots)
        .where(provider_slots.c.provider == BATCH, provider_slots.c.slot == 1)
        .values(holder=job, expires_at=utcnow() - timedelta(seconds=1))
    )
    await stepped.db.write(lambda conn: conn.execute(statement))
    entered, leave = asyncio.Event(), asyncio.Event()
    back = asyncio.create_task(hold(job))
    await entered.wait()
    try:
        assert await _taken(ProviderSlots(stepped.db, {}, lease_seconds=30), other, within=0.6)
    finally:
        leave.set()
        await back
