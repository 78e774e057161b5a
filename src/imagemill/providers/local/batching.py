"""One device, one batch at a time, and compatible requests share a batch.

Requests for a device wait in arrival order. Whenever the device is free, the oldest
waiting request runs, together with every later one that is compatible with it (the
same key: model, size, steps, …) up to ``max_batch`` images. Nothing waits on purpose:
a request arriving at an idle device runs at once, alone; requests that queue up
behind a busy device are the ones batched. This is how a GPU gets full batches under
load without adding latency when it is quiet.

A request canceled while it waits leaves the queue. One canceled while its batch runs
stops the batch between steps only if every request in it is canceled; otherwise the
others finish and its share is dropped.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass(eq=False)
class Pending(Generic[T, R]):
    """One request waiting for, or running on, the device."""

    key: Hashable
    item: T
    size: int  # images it makes: what counts against max_batch
    future: asyncio.Future[R]
    stopped: threading.Event = field(default_factory=threading.Event)


RunBatch = Callable[[Sequence[Pending[T, R]]], Sequence[R | BaseException]]


class BatchQueue(Generic[T, R]):
    """Runs batches with ``run_batch`` (synchronous, called in a worker thread), which
    returns one result or exception per request, in order."""

    def __init__(self, run_batch: RunBatch[T, R], max_batch: int) -> None:
        self._run_batch = run_batch
        self.max_batch = max_batch
        self._waiting: list[Pending[T, R]] = []
        self._runner: asyncio.Task[None] | None = None
        self.batches: list[int] = []  # sizes of the batches run, newest last (bounded)

    @property
    def busy(self) -> bool:
        """Whether the device is running a batch (a request submitted now waits)."""
        return self._runner is not None and not self._runner.done()

    async def submit(self, key: Hashable, item: T, size: int = 1) -> R:
        pending: Pending[T, R] = Pending(
            key, item, size, asyncio.get_running_loop().create_future()
        )
        self._waiting.append(pending)
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._drain())
        try:
            return await pending.future
        except asyncio.CancelledError:
            pending.stopped.set()
            if pending in self._waiting:
                self._waiting.remove(pending)
            raise

    def _take(self) -> list[Pending[T, R]]:
        """The oldest request and the compatible ones behind it, up to ``max_batch`` images."""
        first = self._waiting[0]
        batch, images = [first], first.size
        for pending in self._waiting[1:]:
            if pending.key == first.key and images + pending.size <= self.max_batch:
                batch.append(pending)
                images += pending.size
        for pending in batch:
            self._waiting.remove(pending)
        return batch

    async def _drain(self) -> None:
        while self._waiting:
            batch = self._take()
            self.batches = [*self.batches[-99:], sum(p.size for p in batch)]
            try:
                results = await asyncio.to_thread(self._run_batch, batch)
            except Exception as exc:  # the whole batch failed
                results = [exc] * len(batch)
            except asyncio.CancelledError:  # the loop is closing: nobody gets a result
                for pending in batch:
                    pending.future.cancel()
                raise
            for pending, result in zip(batch, results, strict=True):
                if pending.future.done():  # canceled meanwhile
                    continue
                if isinstance(result, BaseException):
                    pending.future.set_exception(result)
                else:
                    pending.future.set_result(result)

    async def idle(self) -> None:
        """Wait until the device has nothing running or waiting."""
        while self._runner is not None and not self._runner.done():
            await asyncio.wait({self._runner})

    async def aclose(self) -> None:
        """Stop: waiting requests are dropped, the running batch stops at its next step."""
        for pending in self._waiting:
            pending.stopped.set()
            pending.future.cancel()
        self._waiting.clear()
        if self._runner is not None:
            await asyncio.gather(self._runner, return_exceptions=True)
