"""Migrations: a fresh database gets the whole schema; upgrading again changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import JSON, Connection, column, insert, inspect, select, table
from sqlalchemy.sql.expression import ColumnClause

from imagemill.db.engine import Database
from imagemill.db.migrate import alembic_config, current_revision, upgrade
from imagemill.db.queries import JobFilter, Queries
from imagemill.db.tables import (
    UTCDateTime,
    deliveries,
    delivery_attempts,
    metadata,
)


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


async def test_jobs_stored_before_their_metadata_was_indexed_are_found_by_it(
    db: Database,
) -> None:
    """0009 indexes the metadata of the jobs already stored, as a new job's is."""
    await upgrade(db, "0008")
    now = datetime.now(UTC)
    request = {"model": "placeholder", "prompt": "old", "metadata": {"story_id": 42, "p": "x"}}

    def old_job(conn: Connection) -> None:
        _insert_as_then(conn, "owners", id="own_1", name="old", secret="s", created_at=now)
        _insert_as_then(
            conn,
            "jobs",
            id="job_old",
            owner_id="own_1",
            kind="image",
            model="placeholder",
            status="succeeded",
            request=request,
            prompt="old",
            progress=0.0,
            attempt=0,
            max_attempts=1,
            cached=False,
            cost_usd=0.0,
            event_seq=0,
            run_after=now,
            created_at=now,
            updated_at=now,
        )

    await db.write(old_job)
    await upgrade(db)

    found = await Queries(db).list_jobs("own_1", JobFilter(metadata=(("story_id", "42"),)), 10)
    assert [job.id for job in found] == ["job_old"]
    assert await Queries(db).list_jobs("own_1", JobFilter(metadata=(("p", "y"),)), 10) == []


async def test_deliveries_and_their_attempts_survive_0012_both_ways(db: Database) -> None:
    """0012 rebuilds ``deliveries`` on SQLite (job_id becomes optional) while attempts
    point at it: every delivery and attempt is there after the upgrade and after the
    downgrade."""
    await upgrade(db, "0011")
    now = datetime.now(UTC)

    def delivered_job(conn: Connection) -> None:
        _insert_as_then(conn, "owners", id="own_1", name="old", secret="s", created_at=now)
        _insert_as_then(
            conn,
            "jobs",
            id="job_old",
            owner_id="own_1",
            kind="image",
            model="placeholder",
            status="succeeded",
            request={"model": "placeholder"},
            prompt="",
            progress=1.0,
            attempt=1,
            max_attempts=1,
            run_after=now,
            cached=False,
            cost_usd=0.0,
            event_seq=1,
            created_at=now,
            updated_at=now,
        )
        _insert_as_then(
            conn,
            "events",
            id=1,
            job_id="job_old",
            seq=1,
            owner_id="own_1",
            type="done",
            data={},
            created_at=now,
        )
        _insert_as_then(
            conn,
            "deliveries",
            id="dlv_1",
            owner_id="own_1",
            job_id="job_old",
            event_id=1,
            event_type="done",
            url="https://example.com/hook",
            status="delivered",
            attempts=1,
            next_attempt_at=now,
            created_at=now,
        )
        _insert_as_then(
            conn,
            "delivery_attempts",
            delivery_id="dlv_1",
            attempt=1,
            at=now,
            status_code=200,
            duration_ms=5,
        )

    def kept(conn: Connection) -> tuple[list[str], list[int]]:
        ids = list(conn.execute(select(deliveries.c.id)).scalars())
        tries = list(conn.execute(select(delivery_attempts.c.attempt)).scalars())
        return ids, tries

    await db.write(delivered_job)
    await upgrade(db)
    assert await db.read(kept) == (["dlv_1"], [1])
    await db.write(lambda conn: command.downgrade(alembic_config(conn), "0011"))
    assert await db.read(kept) == (["dlv_1"], [1])
    assert await current_revision(db) == "0011"


def _insert_as_then(conn: Connection, table_name: str, /, **values: Any) -> None:
    """Insert a row of only the columns given: today's ``tables.py`` would add its columns'
    defaults, naming columns an older revision does not have."""

    def typed(key: str, value: object) -> ColumnClause[Any]:
        if isinstance(value, dict):
            return column(key, JSON)
        if isinstance(value, datetime):
            return column(key, UTCDateTime())
        return column(key)

    columns = (typed(k, v) for k, v in values.items())
    conn.execute(insert(table(table_name, *columns)).values(**values))
