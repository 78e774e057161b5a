"""In-process fan-out of committed job events to live subscribers.

The event log in the database is the record; the bus only wakes up listeners in this
process (SSE streams, ``Prefer: wait``, a worker watching for cancellation). A
subscriber that falls behind by more than its queue holds is marked ``lagged`` instead
of growing without bound; it catches up from the log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

Event = dict[str, Any]
QUEUE_SIZE = 1000


class Subscription:
    def __init__(self, job_ids: set[str] | None, owner_id: str | None) -> None:
        self.job_ids = job_ids
        self.owner_id = owner_id
        self.queue: asyncio.Queue[Event] = asyncio.Queue(QUEUE_SIZE)
        self.lagged = False  # events were dropped: read the log to catch up
        self._woken = asyncio.Event()

    def wants(self, event: Event) -> bool:
        if self.job_ids is not None and event.get("job_id") not in self.job_ids:
            return False
        return self.owner_id is None or event.get("owner_id") == self.owner_id

    def deliver(self, event: Event) -> None:
        if event.get("partial"):  # announced, not carried (another process's): read the log
            self.lagged = True
        else:
            try:
                self.queue.put_nowait(event)
            except asyncio.QueueFull:
                self.lagged = True
        self._woken.set()

    async def next(self, within: float | None = None) -> Event | None:
        """The next event; ``None`` if none comes ``within`` seconds, or when ``lagged``."""
        while self.queue.empty() and not self.lagged:
            self._woken.clear()
            try:
                async with asyncio.timeout(within):
                    await self._woken.wait()
            except TimeoutError:
                return None
        if self.lagged:
            return None
        return self.queue.get_nowait()

    def resync(self) -> None:
        """Forget what is queued (the log is read instead) and take events again."""
        while not self.queue.empty():
            self.queue.get_nowait()
        self.lagged = False


class EventBus:
    def __init__(self) -> None:
        # False once other processes' events arrive too (``events/fanout.py``): theirs and
        # this process's then reach the bus in no known order against the log's.
        self.in_log_order = True
        self._subscriptions: set[Subscription] = set()
        self._listeners: list[Callable[[Event], None]] = []

    def publish(self, events: list[Event]) -> None:
        for event in events:
            for subscription in self._subscriptions:
                if subscription.wants(event):
                    subscription.deliver(event)
            for listener in self._listeners:
                listener(event)

    @contextmanager
    def subscribe(
        self, job_ids: set[str] | None = None, owner_id: str | None = None
    ) -> Iterator[Subscription]:
        subscription = Subscription(job_ids, owner_id)
        self._subscriptions.add(subscription)
        try:
            yield subscription
        finally:
            self._subscriptions.discard(subscription)

    def add_listener(self, listener: Callable[[Event], None]) -> None:
        """Call ``listener`` synchronously for every event (must not block)."""
        self._listeners.append(listener)
