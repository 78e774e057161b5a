"""The bounds on memory held at once: the weighted semaphore and an attempt's reservation."""

from __future__ import annotations

import asyncio

import pytest

from imagemill.memory import Reservation, WeightedSemaphore


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_holders_take_their_weight_and_wait_for_room() -> None:
    slots = WeightedSemaphore(100)
    order: list[str] = []

    async def decode(name: str, pixels: int, hold: asyncio.Event) -> None:
        async with slots.hold(pixels):
            order.append(f"{name}+")
            await hold.wait()
            order.append(f"{name}-")

    first, second, huge = asyncio.Event(), asyncio.Event(), asyncio.Event()
    tasks = [asyncio.create_task(decode("a", 60, first))]
    await _settle()
    tasks.append(asyncio.create_task(decode("b", 60, second)))
    tasks.append(asyncio.create_task(decode("huge", 10_000, huge)))
    await _settle()
    assert order == ["a+"] and slots.in_use == 60  # b would pass the capacity: it waits
    first.set()
    await _settle()
    assert order == ["a+", "a-", "b+"]  # huge is larger than the whole: it runs alone
    second.set()
    await _settle()
    assert order[-1] == "huge+" and slots.in_use == 100
    huge.set()
    await asyncio.gather(*tasks)
    assert slots.in_use == 0


async def test_waiters_are_served_in_arrival_order() -> None:
    """A large weight first in line is not overtaken by small ones that would fit."""
    slots = WeightedSemaphore(10)
    first = await slots.acquire(6)
    large = asyncio.create_task(slots.acquire(8))
    await _settle()
    small = asyncio.create_task(slots.acquire(2))  # would fit now, but the large came first
    await _settle()
    assert not large.done() and not small.done()
    slots.release(first)
    await _settle()
    assert large.done() and small.done() and slots.in_use == 10


async def test_a_canceled_waiter_leaves_the_line_and_lets_the_next_in() -> None:
    slots = WeightedSemaphore(10)
    held = await slots.acquire(5)
    large = asyncio.create_task(slots.acquire(10))
    await _settle()
    small = asyncio.create_task(slots.acquire(3))
    await _settle()
    assert not small.done()  # behind the large one
    large.cancel()
    await _settle()
    assert small.done() and slots.in_use == 8
    slots.release(held)
    slots.release(small.result())
    assert slots.in_use == 0


def test_a_capacity_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="capacity"):
        WeightedSemaphore(0)


async def test_a_reservation_waits_once_then_takes_without_waiting() -> None:
    """An attempt holding some of the budget never waits for more: two attempts each
    holding half and waiting for the other's half would wait forever."""
    slots = WeightedSemaphore(10)
    first, second = Reservation(slots), Reservation(slots)
    await first.take(6)
    await second.take(4)
    await asyncio.wait_for(first.take(6), timeout=1)  # past the capacity, at once
    await asyncio.wait_for(second.take(6), timeout=1)
    assert slots.in_use == 22 and (first.held, second.held) == (12, 10)
    third = Reservation(slots)
    waiting = asyncio.create_task(third.take(1))
    await _settle()
    assert not waiting.done()  # a new attempt waits until the others give room back
    first.release()
    second.release()
    await _settle()
    assert waiting.done() and slots.in_use == 1 and first.held == 0
    third.release()
    assert slots.in_use == 0


async def test_takes_of_one_reservation_at_once_wait_in_turn() -> None:
    """Two calls of one attempt (DALL·E's one image per call) reading together: only one
    waits in the semaphore's line; the other follows it without waiting again."""
    slots = WeightedSemaphore(10)
    other = Reservation(slots)
    await other.take(8)
    with Reservation(slots) as attempt:
        calls = [asyncio.create_task(attempt.take(5)) for _ in range(2)]
        await _settle()
        assert not any(call.done() for call in calls) and slots.in_use == 8
        other.release()
        await asyncio.wait_for(asyncio.gather(*calls), timeout=1)
        assert attempt.held == 10
    assert slots.in_use == 0  # given back on leaving the block


async def test_a_waiter_canceled_as_room_is_made_ends_canceled_holding_nothing() -> None:
    """Canceled in the line, and room made before it runs again (which drops it from
    the line): it ends canceled, as asked, not with an error of the semaphore's."""
    slots = WeightedSemaphore(10)
    await slots.acquire(10)
    waiter = asyncio.create_task(slots.acquire(5))
    await _settle()
    waiter.cancel()
    slots.release(10)
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert slots.in_use == 0
    assert await asyncio.wait_for(slots.acquire(10), timeout=1) == 10  # the line is clear


async def test_a_reservation_given_back_takes_nothing_more() -> None:
    """A call still going once its attempt ended (given back) is refused, even one that
    was waiting for room: what it took would never be given back."""
    slots = WeightedSemaphore(10)
    holder = Reservation(slots)
    await holder.take(10)
    ended = Reservation(slots)
    waiting = asyncio.create_task(ended.take(5))
    await _settle()
    ended.release()
    holder.release()
    with pytest.raises(RuntimeError, match="given back"):
        await waiting
    with pytest.raises(RuntimeError, match="given back"):
        await ended.take(1)
    assert slots.in_use == 0
