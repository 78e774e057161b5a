"""The device queue: one batch at a time, compatible requests together, in arrival order."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from imagemill.providers.local.batching import BatchQueue, Pending


class Device:
    """A fake device: records each batch and holds it until the test lets it through."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self._passes = threading.Semaphore(0)  # one per batch allowed to finish
        self.started = threading.Event()
        self.saw_stopped: list[list[bool]] = []

    def let_through(self, batches: int) -> None:
        self._passes.release(batches)

    def run(self, batch: Sequence[Pending[str, str]]) -> list[str | BaseException]:
        self.batches.append([p.item for p in batch])
        self.started.set()
        self._passes.acquire(timeout=5)
        self.saw_stopped.append([p.stopped.is_set() for p in batch])
        return [f"done {p.item}" for p in batch]


async def _started(device: Device) -> None:
    await asyncio.to_thread(device.started.wait, 5)
    device.started.clear()


async def test_an_idle_device_runs_at_once_and_the_queue_behind_it_is_batched() -> None:
    device = Device()
    queue: BatchQueue[str, str] = BatchQueue(device.run, max_batch=3)
    first = asyncio.create_task(queue.submit("a", "first"))
    await _started(device)  # runs alone: nothing waits on purpose
    later = [
        asyncio.create_task(queue.submit(key, name, size))
        for key, name, size in [
            ("a", "a1", 1),
            ("b", "b1", 1),
            ("a", "a2", 2),
            ("a", "a3", 1),  # would make 4 images with a1 and a2: next batch
            ("b", "b2", 1),
        ]
    ]
    await asyncio.sleep(0.05)
    device.let_through(10)
    results = await asyncio.gather(first, *later)

    assert results[0] == "done first" and results[1:] == [
        f"done {n}" for n in ("a1", "b1", "a2", "a3", "b2")
    ]
    assert device.batches == [["first"], ["a1", "a2"], ["b1", "b2"], ["a3"]]
    assert queue.batches == [1, 3, 2, 1]


async def test_a_canceled_waiting_request_leaves_the_queue() -> None:
    device = Device()
    queue: BatchQueue[str, str] = BatchQueue(device.run, max_batch=4)
    running = asyncio.create_task(queue.submit("k", "running"))
    await _started(device)
    waiting = asyncio.create_task(queue.submit("k", "gone"))
    kept = asyncio.create_task(queue.submit("k", "kept"))
    await asyncio.sleep(0.01)
    waiting.cancel()
    device.let_through(10)
    assert await kept == "done kept" and await running == "done running"
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert device.batches == [["running"], ["kept"]]


async def test_a_running_batch_learns_which_requests_were_canceled() -> None:
    device = Device()
    queue: BatchQueue[str, str] = BatchQueue(device.run, max_batch=4)
    blocker = asyncio.create_task(queue.submit("x", "blocker"))
    await _started(device)
    one = asyncio.create_task(queue.submit("k", "one"))
    two = asyncio.create_task(queue.submit("k", "two"))
    await asyncio.sleep(0.01)
    device.let_through(1)
    await blocker
    await _started(device)  # one and two run together now
    one.cancel()
    await asyncio.sleep(0.01)
    device.let_through(1)
    assert await two == "done two"
    assert device.saw_stopped[-1] == [True, False]  # the batch could drop one's share


async def test_a_failing_batch_fails_each_of_its_requests() -> None:
    def explode(batch: Sequence[Pending[str, str]]) -> list[str | BaseException]:
        raise RuntimeError("device lost")

    queue: BatchQueue[str, str] = BatchQueue(explode, max_batch=2)
    results = await asyncio.gather(
        queue.submit("k", "a"), queue.submit("k", "b"), return_exceptions=True
    )
    assert [str(r) for r in results] == ["device lost", "device lost"]


async def test_per_request_errors_stay_with_their_request() -> None:
    def mixed(batch: Sequence[Pending[str, str]]) -> list[str | BaseException]:
        return [ValueError(p.item) if p.item == "bad" else p.item for p in batch]

    queue: BatchQueue[str, str] = BatchQueue(mixed, max_batch=4)
    results = await asyncio.gather(
        queue.submit("k", "good"), queue.submit("k", "bad"), return_exceptions=True
    )
    assert results[0] == "good" and isinstance(results[1], ValueError)
