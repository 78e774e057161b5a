"""The database handle: SQLite in WAL mode, queued write transactions, rollback on error."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from imagemill.db.engine import Database


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'engine.db'}")
    async with database.write() as conn:
        await conn.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"))
    yield database
    await database.dispose()


async def test_sqlite_runs_in_wal_mode_on_both_connections(db: Database) -> None:
    async with db.write() as conn:
        assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
        assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
        assert (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar() == 30_000
    async with db.read() as conn:
        assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
        assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1


async def test_a_write_commits_and_a_failed_write_rolls_back(db: Database) -> None:
    async with db.write() as conn:
        await conn.execute(text("INSERT INTO notes (body) VALUES ('kept')"))
    with pytest.raises(RuntimeError):
        async with db.write() as conn:
            await conn.execute(text("INSERT INTO notes (body) VALUES ('lost')"))
            raise RuntimeError("boom")

    async with db.read() as conn:
        bodies = (await conn.execute(text("SELECT body FROM notes"))).scalars().all()
    assert bodies == ["kept"]


async def test_a_reader_sees_committed_data_while_a_write_is_open(db: Database) -> None:
    async with db.write() as conn:
        await conn.execute(text("INSERT INTO notes (body) VALUES ('one')"))
    async with db.write() as writer:
        await writer.execute(text("INSERT INTO notes (body) VALUES ('two')"))
        async with db.read() as reader:  # WAL: not blocked by the open write
            count = (await reader.execute(text("SELECT count(*) FROM notes"))).scalar()
    assert count == 1


async def test_concurrent_writes_queue_instead_of_failing(db: Database) -> None:
    async def insert(i: int) -> None:
        async with db.write() as conn:
            await conn.execute(text("INSERT INTO notes (body) VALUES (:b)"), {"b": str(i)})
            await asyncio.sleep(0)

    await asyncio.gather(*(insert(i) for i in range(20)))
    async with db.read() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM notes"))).scalar() == 20


def test_the_parent_directory_is_created(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "x.db"
    database = Database(f"sqlite+aiosqlite:///{target}")
    assert target.parent.is_dir()
    assert database.is_sqlite
    assert database.engine is not None
