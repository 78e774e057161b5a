"""The run context a provider gets: progress clamped, provider ref saved, previews,
deadline, and no nudges where nobody can send one; and the helpers adapters share:
calls side by side, bodies read within the response budget."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from imagemill.errors import ContentRejected
from imagemill.providers.base import RunContext, read_body, side_by_side


async def test_the_context_forwards_and_remembers() -> None:
    progress: list[tuple[float, str | None]] = []
    refs: list[str] = []
    previews: list[bytes] = []

    async def on_progress(fraction: float, message: str | None) -> None:
        progress.append((fraction, message))

    async def on_ref(ref: str) -> None:
        refs.append(ref)

    async def on_preview(image: bytes) -> None:
        previews.append(image)

    async with httpx.AsyncClient() as http:
        ctx = RunContext(
            http=http,
            deadline=time.monotonic() + 30,
            attempt=2,
            provider_ref="old",
            on_progress=on_progress,
            on_provider_ref=on_ref,
            on_preview=on_preview,
        )
        assert ctx.provider_ref == "old"
        await ctx.save_provider_ref("new")
        await ctx.progress(-0.5)
        await ctx.progress(0.4, "denoising")
        await ctx.progress(7)
        await ctx.preview(b"webp")

        assert ctx.provider_ref == "new"
        assert refs == ["new"]
        assert progress == [(0.0, None), (0.4, "denoising"), (1.0, None)]
        assert previews == [b"webp"]
        assert 29 < ctx.time_left() <= 30
        assert ctx.http is http


def test_time_left_never_goes_negative() -> None:
    assert _context(httpx.AsyncClient(), seconds=-5).time_left() == 0.0


async def test_a_context_nobody_nudges_waits_out_the_interval() -> None:
    async with httpx.AsyncClient() as http:
        ctx = _context(http)
        assert await ctx.nudged(0.01) is False
        assert ctx.webhook_url("replicate") is None


async def test_side_by_side_answers_in_order() -> None:
    async def after(seconds: float, value: int) -> int:
        await asyncio.sleep(seconds)
        return value

    assert await side_by_side([after(0.02, 1), after(0.0, 2), after(0.01, 3)]) == [1, 2, 3]


async def test_side_by_side_stops_the_other_calls_when_one_fails() -> None:
    """Nothing of the attempt goes on once it has failed: the others are canceled and
    have ended by the time the error is raised."""
    ended: list[str] = []

    async def slow(name: str) -> str:
        try:
            await asyncio.sleep(30)
        finally:
            ended.append(name)
        return name

    async def fails() -> str:
        await asyncio.sleep(0.01)
        raise ContentRejected("no")

    with pytest.raises(ContentRejected):
        await asyncio.wait_for(side_by_side([slow("a"), fails(), slow("b")]), timeout=5)
    assert sorted(ended) == ["a", "b"]


async def test_read_body_counts_the_length_first_and_any_more_once_read() -> None:
    events: list[str] = []

    async def hold_memory(nbytes: int) -> None:
        events.append(f"hold {nbytes}")

    async def body() -> AsyncIterator[bytes]:
        events.append("read")
        yield b"x" * 10

    async with httpx.AsyncClient() as http:
        ctx = _context(http, hold_memory=hold_memory)
        sized = httpx.Response(200, headers={"content-length": "10"}, content=body())
        assert await read_body(sized, ctx) == b"x" * 10
        assert events == ["hold 10", "read"]
        events.clear()
        # Said to be 4 bytes (compressed on the wire, say), came out as 10: 6 more counted.
        short = httpx.Response(200, headers={"content-length": "4"}, content=body())
        assert await read_body(short, ctx) == b"x" * 10
        assert events == ["hold 4", "read", "hold 6"]


def _context(http: httpx.AsyncClient, seconds: float = 30, **overrides: Any) -> RunContext:
    fields: dict[str, Any] = {
        "http": http,
        "deadline": time.monotonic() + seconds,
        "attempt": 1,
        "provider_ref": None,
        "on_progress": _nothing,
        "on_provider_ref": _nothing,
        "on_preview": _nothing,
    }
    return RunContext(**{**fields, **overrides})


async def _nothing(*_: object) -> None:
    return None
