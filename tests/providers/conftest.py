"""Hosted-provider fixtures: a stepped runtime whose settings point at fake servers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from imagemill.config import Settings
from imagemill.runtime import Runtime
from providers.running import ProviderRuntime


@pytest.fixture
async def provider_runtime(settings: Settings) -> AsyncIterator[ProviderRuntime]:
    """A runtime with every installed provider, no background workers and no sweeper;
    keyword arguments are settings (credentials and base URLs of the fakes)."""
    started: list[Runtime] = []

    async def make(**overrides: Any) -> Runtime:
        runtime = Runtime(
            Settings(**{**settings.model_dump(), "provider_timeout_seconds": 2.0, **overrides}),
            run_workers=False,
            sweep=False,
        )
        await runtime.start()
        started.append(runtime)
        return runtime

    yield make
    for runtime in started:
        await runtime.stop()
