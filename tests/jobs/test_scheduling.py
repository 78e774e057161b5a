"""Fair shares (``jobs/scheduling.py``): slots go round-robin across owners and batches,
so a big batch never starves someone else's single job."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from imagemill.config import Settings
from imagemill.domain import Submission
from imagemill.errors import Conflict
from imagemill.jobs.scheduling import FairLine, Lane
from imagemill.jobs.service import utcnow
from imagemill.runtime import Runtime


async def _served_in_order(line: FairLine, waiting: list[tuple[str, Lane]]) -> list[str]:
    """Who gets each slot of ``line`` (capacity 1, held by a first job meanwhile)."""
    order: list[str] = []
    release = asyncio.Event()

    async def first() -> None:
        async with line.slot("first", ("first", None)):
            await release.wait()

    async def one(key: str, lane: Lane) -> None:
        async with line.slot(key, lane):
            order.append(key)

    holder = asyncio.create_task(first())
    await asyncio.sleep(0)
    tasks = []
    for key, lane in waiting:
        tasks.append(asyncio.create_task(one(key, lane)))
        await asyncio.sleep(0)  # each in line before the next
    positions = [line.position(key) for key, _ in waiting]
    release.set()
    await asyncio.gather(holder, *tasks)
    assert positions == [order.index(key) + 1 for key, _ in waiting], "position foretold it"
    return order


async def test_owners_are_served_in_turn_not_in_arrival_order() -> None:
    waiting = [(f"a{i}", ("alice", None)) for i in range(5)] + [("b0", ("bob", None))]
    waiting.append(("c0", ("carol", None)))
    order = await _served_in_order(FairLine(1), waiting)
    assert order == ["a0", "b0", "c0", "a1", "a2", "a3", "a4"]


async def test_an_owners_batches_are_served_in_turn() -> None:
    waiting = [(f"x{i}", ("alice", "batch_x")) for i in range(3)]
    waiting += [(f"y{i}", ("alice", "batch_y")) for i in range(2)]
    waiting.append(("b0", ("bob", None)))
    order = await _served_in_order(FairLine(1), waiting)
    assert order == ["x0", "b0", "y0", "x1", "y1", "x2"]


async def test_within_a_lane_jobs_are_served_in_the_order_submitted_not_arrived() -> None:
    """Wake-ups arrive in any order (each reads its job first); job ids sort by when the
    job was submitted, and that is the order served."""
    waiting = [(f"job_{i}", ("alice", None)) for i in (3, 1, 2)]
    order = await _served_in_order(FairLine(1), waiting)
    assert order == ["job_1", "job_2", "job_3"]


async def test_a_waiter_canceled_leaves_the_line_and_its_slot_goes_on() -> None:
    line = FairLine(1)
    async with line.slot("held", ("a", None)):
        gone = asyncio.create_task(_take(line, "gone", ("a", None)))
        kept = asyncio.create_task(_take(line, "kept", ("b", None)))
        await asyncio.sleep(0)
        assert (line.position("gone"), line.position("kept")) == (1, 2)
        gone.cancel()
        await asyncio.sleep(0)
        assert (line.position("gone"), line.position("kept")) == (None, 1)
    assert await asyncio.wait_for(kept, 5) == "kept"
    assert line.used == 0


async def _take(line: FairLine, key: str, lane: Lane) -> str:
    async with line.slot(key, lane):
        return key


async def test_a_big_batch_does_not_starve_another_owners_job(
    settings: Settings, tmp_path: Path
) -> None:
    """Owner A submits 200 jobs, then owner B one: with 4 slots, B's starts at the next
    free slot but one (first come, first served, it started after all 200)."""
    four = settings.model_copy(update={"hosted_concurrency": 4, "data_dir": tmp_path / "fair"})
    async with Runtime(four) as runtime:
        alice = await runtime.accounts.owner_named("alice", utcnow())
        bob = await runtime.accounts.owner_named("bob", utcnow())
        work = {"model": "placeholder", "size": "16x16", "params": {"latency_ms": 100}}
        many = [
            (await runtime.service.submit(alice.id, Submission(prompt=f"a{i}", **work)))[0].id
            for i in range(200)
        ]
        [single] = await runtime.service.submit(bob.id, Submission(prompt="b", **work))
        [done] = await runtime.service.wait(bob.id, [single.id], timeout=120)
        assert done.status.terminal and done.started_at is not None
        alices = await runtime.repo.get_jobs(many)
        for job in alices:  # the rest need not run
            if not job.status.terminal:
                with contextlib.suppress(Conflict):  # finished meanwhile
                    await runtime.service.cancel(alice.id, job.id)

    def started_within(start: object, end: object) -> int:
        return sum(1 for j in alices if j.started_at and start <= j.started_at < end)

    # At most: the 4 given a slot before B came but claimed after, and the one whose turn
    # came before B's.
    assert started_within(single.created_at, done.started_at) <= 5, "B waited its turn only"
    waiting = sum(1 for j in alices if not j.started_at or j.started_at >= done.started_at)
    assert waiting >= 100, f"only {waiting} of A's jobs were still waiting: nothing to jump"
