"""Bounds on the memory one process's work takes at once, however much arrives together.

Two things in imagemill hold memory in proportion to their size rather than to their
number: decoding an image (about 4 bytes a pixel: ``AssetWriter``'s decodes) and a
provider's answer, read from the network and held until its images are stored (a 2 MB
PNG is about 2.7 MB of base64 in a JSON body, then its bytes, then the stored copy).
Hosted jobs are not limited in number (``IMAGEMILL_HOSTED_CONCURRENCY``: thousands in
flight), so without a bound a burst of large answers arriving together takes megabytes
times the burst. Each is bounded by a ``WeightedSemaphore``: work takes its weight (pixels,
bytes) out of a fixed capacity and waits, first come first served, while the others leave
no room.

An attempt may read several bodies (an image per call, then downloads of its output
URLs) and holds them all until its outputs are stored. It holds them through a
``Reservation``: only its first take waits; later ones are taken at once, even past the
capacity, because work that holds memory while it waits for more can wait forever on
others doing the same.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager

UNSIZED_BODY_BYTES = 4 * 1024 * 1024  # an answer without Content-Length: a large image's

# Counts ``nbytes`` more of an answer against the response budget (``Reservation.take``).
HoldMemory = Callable[[int], Awaitable[None]]


def expected_bytes(headers: Mapping[str, str]) -> int:
    """What an answer with these headers will hold: its ``Content-Length``, else
    ``UNSIZED_BODY_BYTES`` (counted again once read if it came out longer)."""
    length = headers.get("content-length", "")
    return int(length) if length.isdigit() else UNSIZED_BODY_BYTES


async def unbounded(nbytes: int) -> None:
    """A ``HoldMemory`` with no budget behind it (no worker): nothing is counted."""


class WeightedSemaphore:
    """A semaphore whose holders take a weight out of ``capacity`` (bytes, pixels).

    ``acquire(weight)`` waits until the holders leave room for it; a weight larger than
    the capacity is taken as the whole capacity (it runs alone rather than never), one
    below 1 as 1. Waiters are served in arrival order, so small weights do not starve a
    large one.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.in_use = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    def _share(self, weight: int) -> int:
        """What ``weight`` takes of the capacity."""
        return min(max(weight, 1), self.capacity)

    async def acquire(self, weight: int) -> int:
        """Wait for room and take ``weight``; returns the share taken (give it back with
        ``release``)."""
        share = self._share(weight)
        if not self._waiters and self.in_use + share <= self.capacity:
            self.in_use += share
            return share
        granted = asyncio.get_running_loop().create_future()
        waiter = (share, granted)
        self._waiters.append(waiter)
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self.release(share)  # granted as it was canceled: give it back
            else:
                with contextlib.suppress(ValueError):  # ``_grant`` may have dropped it
                    self._waiters.remove(waiter)
                self._grant()  # it may have been first in line, holding others up
            raise
        return share

    def take_now(self, weight: int) -> int:
        """Take ``weight`` without waiting, past the capacity if need be (``Reservation``'s
        later takes); returns the share taken."""
        share = self._share(weight)
        self.in_use += share
        return share

    def release(self, share: int) -> None:
        self.in_use -= share
        self._grant()

    @asynccontextmanager
    async def hold(self, weight: int) -> AsyncIterator[None]:
        share = await self.acquire(weight)
        try:
            yield
        finally:
            self.release(share)

    def _grant(self) -> None:
        while self._waiters:
            share, granted = self._waiters[0]
            if granted.done():  # canceled while queued, not yet removed
                self._waiters.popleft()
                continue
            if self.in_use + share > self.capacity:
                return
            self._waiters.popleft()
            self.in_use += share
            granted.set_result(None)


class Reservation:
    """What one piece of work (an attempt) holds of a ``WeightedSemaphore``, given back
    together by ``release`` or on leaving its ``with`` block. The first ``take`` waits for
    room; the later ones do not (see the module's docstring). A take after ``release``
    raises ``RuntimeError``: work still reading once its attempt ended would hold memory
    nobody gives back."""

    def __init__(self, semaphore: WeightedSemaphore) -> None:
        self._semaphore = semaphore
        self._first = asyncio.Lock()  # one take of this reservation waits at a time
        self.held = 0
        self._released = False

    async def take(self, weight: int) -> None:
        if not self.held:
            async with self._first:
                if not self.held:
                    self._check_open()
                    share = await self._semaphore.acquire(weight)
                    if self._released:  # given back while this take waited
                        self._semaphore.release(share)
                    self._check_open()
                    self.held += share
                    return
        self._check_open()
        self.held += self._semaphore.take_now(weight)

    def _check_open(self) -> None:
        if self._released:
            raise RuntimeError("this reservation was given back: its work has ended")

    def release(self) -> None:
        self._released = True
        held, self.held = self.held, 0
        if held:
            self._semaphore.release(held)

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()
