"""The run context a provider gets: progress clamped, provider ref saved, previews,
deadline, and no nudges where nobody can send one."""

from __future__ import annotations

import time

import httpx

from imagemill.providers.base import RunContext


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
    async def nothing(*_: object) -> None:
        return None

    ctx = RunContext(
        http=httpx.AsyncClient(),
        deadline=time.monotonic() - 5,
        attempt=1,
        provider_ref=None,
        on_progress=nothing,
        on_provider_ref=nothing,
        on_preview=nothing,
    )
    assert ctx.time_left() == 0.0


async def test_a_context_nobody_nudges_waits_out_the_interval() -> None:
    async def nothing(*_: object) -> None:
        return None

    async with httpx.AsyncClient() as http:
        ctx = RunContext(
            http=http,
            deadline=time.monotonic() + 30,
            attempt=1,
            provider_ref=None,
            on_progress=nothing,
            on_provider_ref=nothing,
            on_preview=nothing,
        )
        assert await ctx.nudged(0.01) is False
        assert ctx.webhook_url("replicate") is None
