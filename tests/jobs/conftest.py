"""Step-by-step job fixtures: a runtime without background workers or sweeps, and a
scripted provider whose ``run`` each test writes itself (block, fail, rate-limit, ...)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from imagemill.config import Settings
from imagemill.domain import Output, Task, TaskKind
from imagemill.providers.base import RunContext
from imagemill.providers.placeholder import PlaceholderProvider, render
from imagemill.providers.registry import Registry
from imagemill.runtime import Runtime
from imagemill.specs import ModelSpec, SizeRange

Script = Callable[[Task, RunContext], Awaitable[list[Output]]]
SCRIPTED_MODEL = "scripted/model"


async def _rendered(task: Task, ctx: RunContext) -> list[Output]:
    seed = task.seed or 0
    return [
        Output(
            data=render(task.prompt, SCRIPTED_MODEL, seed + i, task.width, task.height),
            seed=seed + i,
        )
        for i in range(task.n)
    ]


class ScriptedProvider:
    """A provider whose behaviour is the ``script`` coroutine a test assigns."""

    name = "scripted"

    def __init__(self) -> None:
        self.script: Script = _rendered
        self.calls: list[tuple[Task, int, str | None]] = []  # task, attempt, provider_ref seen
        self.started = asyncio.Event()
        self.canceled: list[str] = []

    def models(self) -> list[ModelSpec]:
        return [
            ModelSpec(
                id=SCRIPTED_MODEL,
                provider=self.name,
                name="model",
                kinds=[TaskKind.IMAGE],
                params_schema={"type": "object"},
                sizes=SizeRange(min_side=16, max_side=4096, default="64x64"),
            )
        ]

    async def run(self, task: Task, ctx: RunContext) -> list[Output]:
        self.calls.append((task, ctx.attempt, ctx.provider_ref))
        self.started.set()
        try:
            return await self.script(task, ctx)
        except asyncio.CancelledError:
            self.canceled.append(task.job_id)
            raise

    async def block_forever(self, task: Task, ctx: RunContext) -> list[Output]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


@pytest.fixture
def scripted() -> ScriptedProvider:
    return ScriptedProvider()


RuntimeFactory = Callable[..., Awaitable[Runtime]]


@pytest.fixture
async def make_runtime(
    settings: Settings, scripted: ScriptedProvider
) -> AsyncIterator[RuntimeFactory]:
    """Start a stepped runtime (no background workers, no sweeper); overrides tweak settings."""
    started: list[Runtime] = []

    async def make(**overrides: Any) -> Runtime:
        runtime = Runtime(
            settings.model_copy(update=overrides),
            registry=Registry([PlaceholderProvider(), scripted]),
            run_workers=False,
            sweep=False,
        )
        await runtime.start()
        started.append(runtime)
        return runtime

    yield make
    for runtime in started:
        await runtime.stop()


@pytest.fixture
async def stepped(make_runtime: RuntimeFactory) -> Runtime:
    return await make_runtime()


@pytest.fixture
def database_url(both_databases: str | None) -> str | None:
    """These tests hold on the embedded default and on PostgreSQL alike."""
    return both_databases
