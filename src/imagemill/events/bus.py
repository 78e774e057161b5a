"""In-process fan-out of committed job events to live subscribers.

The event log in the database is the record; the bus only wakes up listeners in this
process (SSE streams, ``Prefer: wait``, a worker watching for cancellation).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

Event = dict[str, Any]


class Subscription:
    def __init__(self, job_ids: set[str] | None, owner_id: str | None) -> None:
        self.job_ids = job_ids
        self.owner_id = owner_id
        self.queue: asyncio.Queue[Event] = asyncio.Queue()

    def wants(self, event: Event) -> bool:
        if self.job_ids is not None and event["job_id"] not in self.job_ids:
            return False
        return self.owner_id is None or event["owner_id"] == self.owner_id


class EventBus:
    def __init__(self) -> None:
        self._subscriptions: set[Subscription] = set()
        self._listeners: list[Callable[[Event], None]] = []

    def publish(self, events: list[Event]) -> None:
        for event in events:
            for subscription in self._subscriptions:
                if subscription.wants(event):
                    subscription.queue.put_nowait(event)
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
