"""Events stored at the end of their transaction, in their owner's turn (PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from imagemill.db.appending import Appending, owner_key
from imagemill.domain import Submission
from imagemill.events.bus import EventBus
from imagemill.events.fanout import PostgresFanout
from imagemill.jobs.service import utcnow
from imagemill.runtime import Runtime

WAIT_SECONDS = 30.0  # for something that happens at once on a quiet machine


@pytest.fixture
def database_url(postgres_url: str) -> str:
    return postgres_url


async def _queued(runtime: Runtime, owner_name: str) -> tuple[str, str]:
    owner = await runtime.accounts.owner_named(owner_name, utcnow())
    [job] = await runtime.service.submit(
        owner.id, Submission(model="placeholder", prompt="p", size="32x32")
    )
    return owner.id, job.id


@pytest.fixture
async def open_turn(postgres_url: str) -> AsyncIterator[AsyncConnection]:
    """A connection of its own, for a transaction held open by the test."""
    engine = create_async_engine(postgres_url)
    try:
        async with engine.connect() as conn:
            yield conn
    finally:
        await engine.dispose()


async def _waiting_backends(postgres_url: str) -> list[asyncpg.Record]:
    """Backends of the test's database waiting for an advisory lock, with the relations
    they hold locks on."""
    connection = await asyncpg.connect(postgres_url.replace("+asyncpg", ""))
    try:
        return await connection.fetch(
            """
            SELECT activity.pid, array_agg(held.relation::regclass::text) AS relations
            FROM pg_stat_activity activity
            JOIN pg_locks held ON held.pid = activity.pid AND held.granted
            WHERE activity.datname = current_database()
              AND activity.wait_event_type = 'Lock' AND activity.wait_event = 'advisory'
            GROUP BY activity.pid
            """
        )
    finally:
        await connection.close()


async def _until_waiting(postgres_url: str) -> asyncpg.Record:
    """The one backend waiting for a turn, once there is one (within ``WAIT_SECONDS``)."""
    for _ in range(int(WAIT_SECONDS / 0.05)):
        if waiting := await _waiting_backends(postgres_url):
            [backend] = waiting
            return backend
        await asyncio.sleep(0.05)
    raise AssertionError("nothing waited for a turn")


def _row(job_id: str, owner_id: str, seq: int) -> Any:
    return SimpleNamespace(
        id=job_id, owner_id=owner_id, event_seq=seq, webhook_url=None, webhook_events=None
    )


async def test_an_owners_events_wait_for_its_turn_and_take_ids_in_commit_order(
    stepped: Runtime, open_turn: AsyncConnection, postgres_url: str
) -> None:
    alice, alice_first = await _queued(stepped, "alice")
    _, alice_second = await _queued(stepped, "alice")
    bob, bob_job = await _queued(stepped, "bob")
    # An event of Alice's first job, stored and not yet committed: Alice's turn is held.
    held = Appending()
    held.add(_row(alice_first, alice, 100), [("log", {"message": "held"})], utcnow())
    await open_turn.begin()
    await open_turn.run_sync(lambda conn: held.store(conn, origin="elsewhere"))

    canceling = asyncio.create_task(stepped.service.cancel(alice, alice_second))
    backend = await _until_waiting(postgres_url)
    # It changed its job's row before it asked for the turn: the turn is held only for
    # storing the events, not for the whole transaction.
    assert "jobs" in backend["relations"]
    assert not canceling.done()
    # Another owner's events do not wait for Alice's turn.
    async with asyncio.timeout(WAIT_SECONDS):
        await stepped.service.cancel(bob, bob_job)

    await open_turn.commit()
    async with asyncio.timeout(WAIT_SECONDS):
        await canceling
    [held_event] = held.events
    later = [e["id"] for e in await stepped.repo.events_after(alice_second, 0)][-1]
    assert later > held_event["id"]  # the id of the transaction that committed later
    owner_log = [e["id"] for e in await stepped.repo.owner_events_after(alice, 0)]
    assert owner_log == sorted(owner_log) and held_event["id"] in owner_log


@pytest.mark.parametrize("held_owner", ["alice", "bob"])
async def test_events_of_several_owners_wait_for_each_owners_turn(
    stepped: Runtime, open_turn: AsyncConnection, postgres_url: str, held_owner: str
) -> None:
    """A transaction that appends events of two owners (the sweeper's, say) takes both
    turns, whichever of them is held elsewhere."""
    jobs = {name: await _queued(stepped, name) for name in ("alice", "bob")}
    held = Appending()
    owner_id, job_id = jobs[held_owner]
    held.add(_row(job_id, owner_id, 100), [("log", {"message": "held"})], utcnow())
    await open_turn.begin()
    await open_turn.run_sync(lambda conn: held.store(conn, origin="elsewhere"))

    both = Appending()
    for owner_id, job_id in jobs.values():
        both.add(_row(job_id, owner_id, 200), [("log", {"message": "both"})], utcnow())
    storing = stepped.db.write(lambda conn: both.store(conn, origin="here"))
    await _until_waiting(postgres_url)
    assert not storing.done()
    await open_turn.commit()
    async with asyncio.timeout(WAIT_SECONDS):
        await storing
    assert all(event["id"] > held.events[0]["id"] for event in both)


async def test_other_processes_hear_of_stored_events_with_the_ids_they_took(
    stepped: Runtime, postgres_url: str
) -> None:
    """The ids ride on the notification that the storing statement sends."""
    bus = EventBus()
    heard: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    bus.add_listener(heard.put_nowait)
    listener = PostgresFanout(make_url(postgres_url), bus, origin="another process")
    await listener.start()
    try:
        owner = await stepped.local_owner()
        requests = [Submission(model="placeholder", prompt=f"p{i}", size="32x32") for i in range(6)]
        # One transaction, one notification: six jobs' events, in no order of their ids.
        batch = await stepped.batches.create(owner.id, requests, concurrency=6, metadata={})
        stored = {
            (e["job_id"], e["seq"]): e["id"]
            for item in batch.jobs
            for e in await stepped.repo.events_after(item.id, 0)
        }
        got: dict[tuple[str, int], int] = {}
        async with asyncio.timeout(WAIT_SECONDS):
            while len(got) < len(stored):
                event = await heard.get()
                got[event["job_id"], event["seq"]] = event["id"]
        assert got == stored
    finally:
        await listener.stop()


def test_owner_keys_are_32_bit_and_stable() -> None:
    keys = [owner_key(f"own_{index}") for index in range(1000)]
    assert all(-(2**31) <= key < 2**31 for key in keys)
    assert len(set(keys)) == 1000
    assert owner_key("own_1") == owner_key("own_1")
