"""Migrations: a fresh database gets the whole schema; upgrading again changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect

from imagemill.db.engine import Database
from imagemill.db.migrate import alembic_config, current_revision, upgrade
from imagemill.db.tables import metadata


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'nested' / 'fresh.db'}")
    yield database
    await database.dispose()


def _head() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


async def _tables(db: Database) -> set[str]:
    return set(await db.read(lambda conn: inspect(conn).get_table_names()))


async def test_a_fresh_database_has_no_revision(db: Database) -> None:
    assert await current_revision(db) is None


async def test_upgrade_creates_every_table(db: Database, tmp_path: Path) -> None:
    await upgrade(db)

    assert (tmp_path / "nested" / "fresh.db").exists()
    assert await _tables(db) == {*metadata.tables, "alembic_version"}
    assert await current_revision(db) == _head()


async def test_upgrade_twice_is_a_no_op(db: Database) -> None:
    await upgrade(db)
    before = await _tables(db)

    await upgrade(db)

    assert await _tables(db) == before
    assert await current_revision(db) == _head()


async def test_the_migrations_match_the_tables(db: Database) -> None:
    """Nothing in ``tables.py`` is missing from the migrations (autogenerate finds no diff)."""
    await upgrade(db)

    def diff(sync: Connection) -> list[Any]:
        return list(compare_metadata(MigrationContext.configure(sync), metadata))

    assert await db.read(diff) == []
