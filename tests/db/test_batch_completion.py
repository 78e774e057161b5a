"""A batch's completion: counted and queued for its webhook exactly once per round, by the
transaction that ended its last item, even when the last two end at once on PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from imagemill.db.engine import Database
from imagemill.db.records import BatchDraft, StoredOutput
from imagemill.db.repository import Repository
from imagemill.db.tables import deliveries
from imagemill.db.webhooks import Delivery
from imagemill.domain import JobStatus, Submission
from imagemill.errors import ProviderUnavailable
from imagemill.ids import new_id
from imagemill.jobs.service import utcnow
from imagemill.providers.placeholder import render
from imagemill.runtime import Runtime

HOOK = "https://hooks.example/batches"
LEASE = timedelta(seconds=30)
ITEM = {"model": "placeholder", "size": "32x32"}


async def _batch(
    runtime: Runtime, items: int, webhook_url: str | None = HOOK, **fields: Any
) -> tuple[str, list[str]]:
    """A batch of ``items`` queued placeholder jobs, inserted as ``POST /v1/batches`` does
    once its checks passed; its id and its items' ids."""
    owner = await runtime.local_owner()
    batch_id = new_id("bat")
    drafts = []
    for index in range(items):
        submission = Submission(**{**ITEM, "prompt": f"item {index}", **fields})
        drafts += await runtime.service.drafts(owner.id, submission, batch_id=batch_id)
    batch = BatchDraft(batch_id, owner.id, concurrency=2, webhook_url=webhook_url)
    jobs = await runtime.repo.create_batch(batch, drafts, utcnow())
    return batch_id, [job.id for job in jobs]


async def _fail(repo: Repository, job_id: str, worker: str | None = None) -> bool:
    return await repo.fail(job_id, ProviderUnavailable("down"), utcnow(), worker=worker)


async def _completions(runtime: Runtime, batch_id: str) -> tuple[int, list[Delivery]]:
    owner = await runtime.local_owner()
    batch = await runtime.repo.get_batch(batch_id, owner.id)
    return batch.completions, [d for d, _ in await runtime.webhooks.of_batch(batch_id)]


async def test_the_item_that_ends_last_completes_the_batch_once(stepped: Runtime) -> None:
    batch_id, (first, second, third) = await _batch(stepped, 3)
    owner = await stepped.local_owner()
    now = utcnow()
    assert await stepped.repo.claim(first, "w1", now + LEASE, now) is not None

    assert await _fail(stepped.repo, first, worker="w1")
    await stepped.service.cancel(owner.id, second)
    assert await _completions(stepped, batch_id) == (0, []), "an item is still queued"
    assert await _fail(stepped.repo, third)  # from outside its attempt (the sweeper's way)

    completions, [delivery] = await _completions(stepped, batch_id)
    assert completions == 1
    assert (delivery.batch_id, delivery.batch_round, delivery.job_id) == (batch_id, 1, None)
    assert (delivery.url, delivery.status, delivery.event_type) == (HOOK, "pending", "done")
    counts = {"queued": 0, "running": 0, "succeeded": 0, "failed": 2, "canceled": 1}
    assert delivery.payload == {"status": "failed", "counts": counts}


async def test_a_retry_reopens_the_batch_for_one_more_round(stepped: Runtime) -> None:
    batch_id, items = await _batch(stepped, 2)
    owner = await stepped.local_owner()
    await stepped.batches.cancel(owner.id, batch_id)
    assert (await _completions(stepped, batch_id))[0] == 1

    retried = await stepped.batches.retry(owner.id, batch_id)
    assert retried.status is JobStatus.QUEUED and retried.completions == 1
    await _fail(stepped.repo, items[0])
    assert (await _completions(stepped, batch_id))[0] == 1, "one item is queued again"
    await stepped.batches.cancel(owner.id, batch_id)
    await stepped.batches.cancel(owner.id, batch_id)  # nothing left to end: no new round

    completions, found = await _completions(stepped, batch_id)
    assert completions == 2
    assert [(d.batch_round, d.payload and d.payload["status"]) for d in found] == [
        (1, "canceled"),
        (2, "failed"),
    ]


async def test_without_a_webhook_url_a_completion_is_counted_and_nothing_is_sent(
    stepped: Runtime,
) -> None:
    batch_id, _ = await _batch(stepped, 2, webhook_url=None)
    owner = await stepped.local_owner()

    canceled = await stepped.batches.cancel(owner.id, batch_id)

    assert canceled.completions == 1
    assert await _completions(stepped, batch_id) == (1, [])


async def test_a_batch_of_cache_hits_is_complete_as_it_is_created(stepped: Runtime) -> None:
    owner = await stepped.local_owner()
    seeded = Submission(**ITEM, prompt="item 0", seed=7)
    [source] = await stepped.service.submit(owner.id, seeded)
    now = utcnow()
    assert await stepped.repo.claim(source.id, "w1", now + LEASE, now) is not None
    data = render("item 0", "placeholder", 7, 32, 32)
    sha256, key = await stepped.blobs.put_content(data)
    output = StoredOutput(
        sha256=sha256,
        content_type="image/png",
        width=32,
        height=32,
        byte_size=len(data),
        storage_key=key,
        model="placeholder",
        fallback=False,
        seed=7,
        requested_width=32,
        requested_height=32,
        cost_usd=0.0,
        revised_prompt=None,
    )
    assert await stepped.repo.complete(source.id, "w1", [output], source.cache_key, now)

    batch_id, _ = await _batch(stepped, 1, seed=7)

    completions, [delivery] = await _completions(stepped, batch_id)
    assert completions == 1 and delivery.payload is not None
    assert delivery.payload["status"] == "succeeded"


async def test_a_round_is_stored_once_and_a_delivery_carries_one_subject(
    stepped: Runtime,
) -> None:
    """The schema's own guarantee, whatever the code does: ``(batch_id, batch_round)`` is
    unique, and a delivery carries a job's event or a batch's completion."""
    batch_id, _ = await _batch(stepped, 1)
    owner = await stepped.local_owner()
    await stepped.batches.cancel(owner.id, batch_id)
    now = utcnow()
    row = {
        "owner_id": owner.id,
        "event_type": "done",
        "url": HOOK,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }

    async def insert_delivery(**values: Any) -> None:
        statement = insert(deliveries).values(id=new_id("dlv"), **row, **values)
        await stepped.db.write(lambda conn: conn.execute(statement))

    with pytest.raises(IntegrityError):
        await insert_delivery(batch_id=batch_id, batch_round=1)
    with pytest.raises(IntegrityError):
        await insert_delivery()  # neither a job's event nor a batch's completion
    await insert_delivery(batch_id=batch_id, batch_round=2)  # the next round is fine


# -- the race, on PostgreSQL ------------------------------------------------------------------


@pytest.fixture
async def two_processes(
    stepped: Runtime, database_url: str | None
) -> AsyncIterator[tuple[Repository, Repository]]:
    """Two repositories on connection pools of their own, as two processes have, and
    without the event-order lock (``origin=None``), which would otherwise make every
    event-storing transaction wait its turn: only the batch's row lock stands between
    the two last items."""
    assert database_url is not None, "PostgreSQL only: SQLite runs one writer at a time"
    first, second = Database(database_url), Database(database_url)
    try:
        yield Repository(first), Repository(second)
    finally:
        await first.dispose()
        await second.dispose()


async def _waiting_on_locks(
    admin: asyncpg.Connection, count: int, ending: asyncio.Future[Any]
) -> None:
    """Until ``count`` sessions of this database wait on a lock, or ``ending`` is over
    without waiting for any (20 s at most)."""
    deadline = time.monotonic() + 20
    query = (
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    while not ending.done() and await admin.fetchval(query) < count:
        assert time.monotonic() < deadline, (
            f"fewer than {count} sessions wait on a lock: is the batch locked before its "
            "items are counted?"
        )
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("both_databases", ["postgres"], indirect=True)  # SQLite has no race
@pytest.mark.parametrize("gated", [True, False], ids=["gated", "free"])
async def test_the_last_two_items_ending_at_once_complete_the_batch_once(
    stepped: Runtime,
    two_processes: tuple[Repository, Repository],
    database_url: str | None,
    gated: bool,
) -> None:
    """20 rounds of the last two items of a batch failing at the same moment, from two
    connection pools. ``gated``: a third session holds the batch's row until both have
    ended their item and wait for it, so every round is the worst interleaving (counting
    without the lock, both would see the other's item still running, and neither would
    complete the batch); ``free``: they simply run at once."""
    assert database_url is not None
    one, other = two_processes
    admin = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        for _ in range(20):
            batch_id, (first, second) = await _batch(stepped, 2)
            now = utcnow()
            assert await one.claim(first, "w1", now + LEASE, now) is not None
            assert await other.claim(second, "w2", now + LEASE, now) is not None
            holder = admin.transaction()
            if gated:
                await holder.start()
                await admin.execute("SELECT 1 FROM batches WHERE id = $1 FOR UPDATE", batch_id)
            ending = asyncio.gather(
                _fail(one, first, worker="w1"), _fail(other, second, worker="w2")
            )
            if gated:
                await _waiting_on_locks(admin, 2, ending)
                await holder.rollback()
            assert await ending == [True, True]

            completions, found = await _completions(stepped, batch_id)
            assert (completions, [d.batch_round for d in found]) == (1, [1])
    finally:
        await admin.close()
