"""The provider slot a job waited for while queued, held into its attempt, and the slot a
call to a provider takes: that one, or one waited for after letting it go."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from imagemill.db.slots import ProviderSlots


class Held:
    """A provider slot the job waited for while queued; ``release`` lets it go early."""

    def __init__(self, provider: str, release: Callable[[], Awaitable[object]]) -> None:
        self.provider = provider
        self._release = release
        self.released = False

    def covers(self, provider: str) -> bool:
        """Whether this is ``provider``'s slot, still held."""
        return provider == self.provider and not self.released

    async def release(self) -> None:
        if not self.released:
            self.released = True
            await self._release()


def slot_for(
    provider: str, holding: Held | None, slots: ProviderSlots
) -> contextlib.AbstractAsyncContextManager[object]:
    """``provider``'s slot for a call: the one the job holds already, or one waited for. A
    call to another provider (a fallback, an enhancer) lets the held one go first: two
    jobs calling into each other's provider would each hold what the other waits for."""
    if holding is not None and holding.covers(provider):
        return contextlib.nullcontext()
    return _released_then(holding, slots.hold(provider))


@contextlib.asynccontextmanager
async def _released_then(
    holding: Held | None, slot: contextlib.AbstractAsyncContextManager[object]
) -> AsyncIterator[None]:
    if holding is not None:
        await holding.release()
    async with slot:
        yield
