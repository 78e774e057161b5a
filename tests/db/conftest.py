"""A started runtime that runs nothing by itself, so repository tests drive every step."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from imagemill.config import Settings
from imagemill.providers.placeholder import PlaceholderProvider
from imagemill.providers.registry import Registry
from imagemill.runtime import Runtime


@pytest.fixture
async def stepped(settings: Settings) -> AsyncIterator[Runtime]:
    runtime = Runtime(
        settings, registry=Registry([PlaceholderProvider()]), run_workers=False, sweep=False
    )
    await runtime.start()
    yield runtime
    await runtime.stop()


@pytest.fixture
def database_url(both_databases: str | None) -> str | None:
    """These tests hold on the embedded default and on PostgreSQL alike."""
    return both_databases
