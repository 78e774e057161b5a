"""Event streams: every event exactly once and in order, whether it came from the log,
the bus, another process's writes (no bus) or after the subscriber fell behind."""

from __future__ import annotations

import asyncio
from typing import Any

from imagemill.db.repository import Repository
from imagemill.domain import Submission
from imagemill.events.bus import QUEUE_SIZE
from imagemill.events.stream import job_events, owner_events
from imagemill.jobs.service import utcnow
from imagemill.runtime import Runtime


async def _collect(stream: Any, until: int | None = None) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    async for batch in stream:
        seen += batch
        if until is not None and len(seen) >= until:
            break
    return seen


async def test_a_job_stream_replays_then_follows_to_done(stepped: Runtime) -> None:
    owner = await stepped.local_owner()
    [job] = await stepped.service.submit(
        owner.id,
        Submission(model="placeholder", prompt="p", size="16x16", params={"latency_ms": 300}),
    )
    follower = asyncio.create_task(_collect(job_events(stepped.repo, stepped.bus, job.id)))
    await stepped.worker.run_one(job.id)

    events = await asyncio.wait_for(follower, 10)

    stored = [e for e in events if not e.get("live")]
    assert [e["seq"] for e in stored] == list(range(1, len(stored) + 1))
    assert events[-1]["type"] == "done"
    # Progress went live as it came, each report right after the stored event before it.
    reports = [e for e in events if e.get("live")]
    assert reports and all(e["type"] == "progress" for e in reports)
    last = 0
    for event in events:
        if event.get("live"):
            assert event["seq"] == last and event["id"] is None
        else:
            last = event["seq"]


async def test_events_written_without_the_bus_are_found_in_the_log(stepped: Runtime) -> None:
    owner = await stepped.local_owner()
    [job] = await stepped.service.submit(
        owner.id, Submission(model="placeholder", prompt="p", size="16x16")
    )
    elsewhere = Repository(stepped.db)  # another process: writes the log, tells no bus here
    claimed = await elsewhere.claim(job.id, "w-far", utcnow().replace(year=2100), utcnow())
    assert claimed is not None
    stream = job_events(stepped.repo, stepped.bus, job.id, recheck=0.05)

    async def write_later() -> None:
        await asyncio.sleep(0.1)
        for step in range(3):
            await elsewhere.record_event(job.id, "w-far", "log", {"message": str(step)}, utcnow())

    writer = asyncio.create_task(write_later())
    events = await asyncio.wait_for(_collect(stream, until=5), 10)
    await writer

    assert [e["type"] for e in events] == ["status", "status", "log", "log", "log"]
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5]


async def test_a_subscriber_that_fell_behind_catches_up_from_the_log(stepped: Runtime) -> None:
    owner = await stepped.local_owner()
    [job] = await stepped.service.submit(
        owner.id, Submission(model="placeholder", prompt="p", size="16x16")
    )
    stream = owner_events(stepped.repo, stepped.bus, owner.id, after_id=0, recheck=0.05)
    first = await anext(stream)  # the log so far: the job's first event
    assert [e["type"] for e in first] == ["status"]

    # Flood the bus with events the log does not have: the subscription overflows.
    bogus = {"job_id": job.id, "owner_id": owner.id, "seq": 0, "type": "log", "data": {}}
    stepped.bus.publish([{**bogus, "id": 10**9 + i} for i in range(QUEUE_SIZE + 5)])
    await stepped.worker.run_one(job.id)

    caught_up: list[dict[str, Any]] = []
    while not any(e["type"] == "done" for e in caught_up):
        caught_up += await asyncio.wait_for(anext(stream), 5)

    real = [e for e in caught_up if e["id"] < 10**9]
    positions = [e["id"] for e in [*first, *real]]
    assert positions == sorted(set(positions)), "no event twice, in log order"
    assert [e["seq"] for e in [*first, *real]] == list(range(1, len(positions) + 1))
    await stream.aclose()


async def test_with_several_processes_on_the_bus_the_log_says_what_is_new(
    stepped: Runtime,
) -> None:
    """Another process's notification can overtake this one's publication (29 after 30):
    each event on a shared bus only rings the bell, and the stream reads the log."""
    owner = await stepped.local_owner()
    submission = Submission(model="placeholder", prompt="p", size="16x16")
    jobs = [(await stepped.service.submit(owner.id, submission))[0] for _ in range(2)]
    stepped.bus.in_log_order = False  # as a PostgreSQL fan-out sets it
    stream = owner_events(stepped.repo, stepped.bus, owner.id, recheck=5)
    assert await anext(stream) == []  # from now on: nothing yet

    elsewhere = Repository(stepped.db)  # writes the log, tells no bus here
    lease = utcnow().replace(year=2100)
    for job in jobs:
        assert await elsewhere.claim(job.id, "w-far", lease, utcnow()) is not None
    earlier, later = (await stepped.repo.owner_events_after(owner.id, 0))[-2:]
    stepped.bus.publish([later])  # the later event arrives first

    arrived = await asyncio.wait_for(anext(stream), 5)

    assert [e["id"] for e in arrived] == [earlier["id"], later["id"]]
    await stream.aclose()
