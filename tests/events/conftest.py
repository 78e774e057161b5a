"""Event fixtures: a runtime without background workers or sweeps, stepped by the test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from imagemill.config import Settings
from imagemill.runtime import Runtime


@pytest.fixture
async def stepped(settings: Settings) -> AsyncIterator[Runtime]:
    async with Runtime(settings, run_workers=False, sweep=False) as runtime:
        yield runtime


@pytest.fixture
def database_url(both_databases: str | None) -> str | None:
    """These tests hold on the embedded default and on PostgreSQL alike."""
    return both_databases
