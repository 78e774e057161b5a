"""Fair shares of a limited number of slots: round-robin across owners, then across each
owner's batches, in the order submitted within one.

A worker has ``hosted_concurrency`` slots for jobs on hosted providers and
``worker_concurrency`` for jobs on local devices, and a provider may have a limit of its
own (``provider_concurrency``); jobs wait for both while ``queued``. Served in arrival order,
a 1,000-job batch would hold every slot until it was done and someone else's single job
would wait behind all of it. A ``FairLine`` instead keeps one queue per owner (and per
batch within an owner) and, each time a slot frees, serves the owner that has waited
longest since it was last served: the single job goes next.

::

    owners in rotation:   A ──▶ B ──▶ C          (served: A, then A goes to the end)
    A's batches:          b1 ──▶ b2 ──▶ (none)    (the same, one level down)
    each batch:           job, job, job …        (in the order submitted)

Within a queue, waiters stand in the order of their keys (job ids sort by when the job
was submitted), not of when their wake-ups happened to arrive here. One process's line:
across processes the job row's claim decides who runs a job, and
each worker is fair among the jobs it was told about.
"""

from __future__ import annotations

import asyncio
import bisect
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

Lane = tuple[str, str | None]  # an owner id, and a batch id (None: jobs of no batch)


@dataclass
class _Waiter:
    key: str  # what waits (a job id), for its place in line
    granted: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class FairLine:
    """``capacity`` slots, handed out round-robin across owners and batches."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        # Owners in rotation order; for each, its batches in rotation; for each, a queue.
        self._owners: OrderedDict[str, OrderedDict[str | None, list[_Waiter]]] = OrderedDict()
        self._keys: dict[str, _Waiter] = {}

    @property
    def idle(self) -> bool:
        """Nothing held, nobody waiting."""
        return self.used == 0 and not self._owners

    @property
    def free(self) -> bool:
        """A slot is free and nobody waits: the next comer takes it at once."""
        return self.used < self.capacity and not self._owners

    @asynccontextmanager
    async def slot(self, key: str, lane: Lane) -> AsyncIterator[None]:
        """Wait for a slot in ``lane``'s turn, and hold it meanwhile."""
        if self.free:
            self.used += 1
        else:
            await self._wait(key, lane)
        try:
            yield
        finally:
            self.used -= 1
            self._serve()

    async def _wait(self, key: str, lane: Lane) -> None:
        owner, batch = lane
        waiter = _Waiter(key)
        queue = self._owners.setdefault(owner, OrderedDict()).setdefault(batch, [])
        bisect.insort(queue, waiter, key=lambda waiting: waiting.key)
        self._keys[key] = waiter
        try:
            await waiter.granted
        except asyncio.CancelledError:
            if waiter.granted.done() and not waiter.granted.cancelled():
                self.used -= 1  # granted just as it was canceled: hand it on
                self._serve()
            else:
                self._remove(waiter, owner, batch)
            raise
        finally:
            if self._keys.get(key) is waiter:
                del self._keys[key]

    def _remove(self, waiter: _Waiter, owner: str, batch: str | None) -> None:
        batches = self._owners.get(owner)
        if batches is None or batch not in batches:
            return
        queue = batches[batch]
        if waiter in queue:
            queue.remove(waiter)
        if not queue:
            del batches[batch]
        if not batches:
            del self._owners[owner]

    def _serve(self) -> None:
        """Grant free slots to the next waiters, in turn."""
        while self.used < self.capacity and self._owners:
            waiter = _next_in_turn(self._owners)
            if not waiter.granted.done():
                self.used += 1
                waiter.granted.set_result(None)

    def position(self, key: str) -> int | None:
        """Where ``key`` waits (1: served next), if it waits here."""
        if key not in self._keys:
            return None
        owners = OrderedDict(
            (owner, OrderedDict((b, list(q)) for b, q in batches.items()))
            for owner, batches in self._owners.items()
        )
        place = 0
        while owners:
            place += 1
            if _next_in_turn(owners).key == key:
                return place
        return None  # pragma: no cover - a waiting key is always found


def _next_in_turn(owners: OrderedDict[str, OrderedDict[str | None, list[_Waiter]]]) -> _Waiter:
    """Take the first waiter of the owner and batch whose turn it is, then move them to
    the end of their rotations."""
    owner, batches = next(iter(owners.items()))
    batch, queue = next(iter(batches.items()))
    waiter = queue.pop(0)
    if queue:
        batches.move_to_end(batch)
    else:
        del batches[batch]
    if batches:
        owners.move_to_end(owner)
    else:
        del owners[owner]
    return waiter
