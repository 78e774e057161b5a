"""The slot a call takes: the one its job holds for that provider, or, for another
provider, one waited for after the held one is let go (never both at once)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from imagemill.jobs.holding import Held, slot_for


class Slots:
    """ProviderSlots as the call sees it: which slots it takes, with what it holds then."""

    def __init__(self, held: list[str]) -> None:
        self.held = held
        self.taken: list[tuple[str, list[str]]] = []

    @contextlib.asynccontextmanager
    async def hold(self, provider: str) -> AsyncIterator[None]:
        self.taken.append((provider, list(self.held)))
        yield


async def test_a_call_to_the_held_provider_takes_no_other_slot() -> None:
    held: list[str] = ["openai"]
    slots = Slots(held)
    holding = Held("openai", lambda: _let_go(held))
    async with slot_for("openai", holding, slots):  # type: ignore[arg-type]
        pass
    assert slots.taken == [] and held == ["openai"]


async def test_a_call_elsewhere_lets_the_held_slot_go_before_waiting() -> None:
    held: list[str] = ["openai"]
    slots = Slots(held)
    holding = Held("openai", lambda: _let_go(held))
    async with slot_for("gemini", holding, slots):  # type: ignore[arg-type]
        pass
    assert slots.taken == [("gemini", [])], "nothing held while waiting for another"
    assert not holding.covers("openai")
    async with slot_for("openai", holding, slots):  # type: ignore[arg-type]
        pass
    assert slots.taken[-1] == ("openai", []), "let go, it is waited for again"


async def test_without_a_held_slot_the_call_waits_for_one() -> None:
    slots = Slots([])
    async with slot_for("openai", None, slots):  # type: ignore[arg-type]
        pass
    assert slots.taken == [("openai", [])]


async def _let_go(held: list[str]) -> None:
    held.clear()
