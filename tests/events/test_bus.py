"""The in-process event bus: subscriptions filtered by job and owner, synchronous listeners."""

from __future__ import annotations

import asyncio
from typing import Any

from imagemill.domain import Submission
from imagemill.events.bus import QUEUE_SIZE, EventBus
from imagemill.runtime import Runtime


def _event(job_id: str, owner_id: str, seq: int = 1, kind: str = "status") -> dict[str, Any]:
    return {"job_id": job_id, "owner_id": owner_id, "seq": seq, "type": kind, "data": {}}


def _drain(queue: Any) -> list[dict[str, Any]]:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


def test_subscriptions_get_only_what_they_asked_for() -> None:
    bus = EventBus()
    events = [
        _event("job_a", "own_1", 1),
        _event("job_b", "own_1", 1),
        _event("job_c", "own_2", 1),
        _event("job_a", "own_1", 2),
    ]

    with (
        bus.subscribe() as everything,
        bus.subscribe({"job_a"}) as job_a,
        bus.subscribe(owner_id="own_1") as owner_1,
        bus.subscribe({"job_a", "job_c"}, owner_id="own_2") as both,
    ):
        bus.publish(events)
        assert _drain(everything.queue) == events
        assert _drain(job_a.queue) == [events[0], events[3]]
        assert _drain(owner_1.queue) == [events[0], events[1], events[3]]
        assert _drain(both.queue) == [events[2]]


def test_leaving_a_subscription_stops_delivery() -> None:
    bus = EventBus()
    with bus.subscribe() as subscription:
        pass
    bus.publish([_event("job_a", "own_1")])
    assert subscription.queue.empty()


def test_listeners_see_every_event_in_order() -> None:
    bus = EventBus()
    seen: list[tuple[str, int]] = []
    also: list[str] = []
    bus.add_listener(lambda e: seen.append((e["job_id"], e["seq"])))
    bus.add_listener(lambda e: also.append(e["type"]))

    bus.publish([_event("job_a", "own_1", 1), _event("job_b", "own_2", 1, "done")])
    bus.publish([])

    assert seen == [("job_a", 1), ("job_b", 1)]
    assert also == ["status", "done"]


async def test_a_committed_repository_change_reaches_subscribers(runtime: Runtime) -> None:
    owner = await runtime.local_owner()
    with runtime.bus.subscribe(owner_id=owner.id) as subscription:
        [job] = await runtime.service.submit(
            owner.id, Submission(model="placeholder", prompt="p", size="32x32")
        )
        [done] = await runtime.service.wait(owner.id, [job.id], timeout=10)
        assert done.status == "succeeded"
        received = _drain(subscription.queue)
    assert [e["seq"] for e in received] == list(range(1, len(received) + 1))
    assert {e["job_id"] for e in received} == {job.id}
    assert received[0]["data"]["status"] == "queued"
    assert received[-1]["type"] == "done"


async def test_next_waits_for_an_event_or_gives_up() -> None:
    bus = EventBus()
    with bus.subscribe() as subscription:
        assert await subscription.next(within=0.01) is None
        asyncio.get_running_loop().call_later(0.01, bus.publish, [_event("job_a", "own_1")])
        event = await subscription.next(within=1)
    assert event is not None and event["job_id"] == "job_a"


async def test_a_subscriber_that_falls_behind_is_marked_lagged_not_grown() -> None:
    bus = EventBus()
    with bus.subscribe() as subscription:
        bus.publish([_event("job_a", "own_1", seq) for seq in range(1, QUEUE_SIZE + 10)])

        assert subscription.lagged
        assert subscription.queue.qsize() == QUEUE_SIZE
        assert await subscription.next(within=1) is None  # read the log instead

        subscription.resync()
        assert not subscription.lagged and subscription.queue.empty()
        bus.publish([_event("job_a", "own_1", 5000)])
        event = await subscription.next(within=1)
    assert event is not None and event["seq"] == 5000
