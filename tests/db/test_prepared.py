"""Hot statements run straight on SQLite's cursor: the same rows, values, defaults and
errors as ``Connection.execute``, on SQLite and on PostgreSQL (where they go through it)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Connection,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, StatementError

from imagemill.db.engine import Database
from imagemill.db.prepared import Prepared
from imagemill.db.tables import UTCDateTime

metadata = MetaData()
notes = Table(
    "prepared_notes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(40), nullable=False, unique=True),
    Column("index", Integer, nullable=False, default=7),  # a name that is a tuple method
    Column("made_at", UTCDateTime, nullable=False),
    Column("data", JSON),
    Column("flag", Boolean, nullable=False, default=False),
    Column("score", Float, nullable=False, default=0.5),
)
MADE_AT = datetime(2026, 11, 30, 12, 30, 15, 123456, tzinfo=UTC)

INSERT = Prepared(insert(notes).returning(notes.c.id, notes.c.name))
INSERT_QUIETLY = Prepared(insert(notes))
BY_NAMES = Prepared(select(notes).where(notes.c.name.in_(bindparam("names", expanding=True))))
RENAME = Prepared(
    update(notes)
    .where(notes.c.name == bindparam("old"), notes.c.flag.is_(False))
    .values(name=bindparam("new"), made_at=bindparam("at", type_=UTCDateTime()))
    .returning(notes.c.name, notes.c.made_at)
)


@pytest.fixture
async def db(tmp_path: Path, both_databases: str | None) -> AsyncIterator[Database]:
    database = Database(both_databases or f"sqlite:///{tmp_path / 'prepared.db'}")
    await database.write(metadata.create_all)
    yield database
    await database.write(metadata.drop_all)
    await database.dispose()


def _note(name: str, **more: Any) -> dict[str, Any]:
    return {"name": name, "made_at": MADE_AT, **more}


async def test_values_go_in_and_come_out_as_sqlalchemy_would_have_them(db: Database) -> None:
    data = {"tags": ["a", "ü"], "nested": {"n": 1.5, "none": None}}
    await db.write(lambda conn: INSERT.one(conn, _note("full", data=data, flag=True, score=2.0)))

    def both(conn: Connection) -> tuple[Any, Any]:
        prepared = BY_NAMES.one(conn, {"names": ["full"]})
        plain = conn.execute(select(notes).where(notes.c.name == "full")).one()
        return prepared, plain

    prepared, plain = await db.read(both)
    assert prepared._mapping == dict(plain._mapping)
    assert prepared.made_at == MADE_AT and prepared.made_at.tzinfo is not None
    assert prepared.data == data and prepared.flag is True and prepared.score == 2.0
    assert prepared._mapping["index"] == 7  # filled from the column's default
    with pytest.raises(AttributeError):
        _ = prepared.no_such_column


async def test_columns_left_out_take_their_python_defaults(db: Database) -> None:
    await db.write(lambda conn: INSERT_QUIETLY.many(conn, [_note("one"), _note("two")]))
    rows = await db.read(lambda conn: BY_NAMES.rows(conn, {"names": ["one", "two"]}))
    assert sorted((r.name, r.flag, r.score, r.data) for r in rows) == [
        ("one", False, 0.5, None),
        ("two", False, 0.5, None),
    ]


async def test_many_returns_every_row_of_a_returning_statement(db: Database) -> None:
    names = [f"n{i}" for i in range(5)]
    inserted = await db.write(lambda conn: INSERT.many(conn, [_note(n) for n in names]))
    assert sorted(r.name for r in inserted) == names
    assert len({r.id for r in inserted}) == 5


async def test_in_lists_of_any_length_including_none(db: Database) -> None:
    await db.write(lambda conn: INSERT_QUIETLY.many(conn, [_note(f"x{i}") for i in range(30)]))
    for wanted in ([], ["x3"], [f"x{i}" for i in range(0, 30, 2)], ["x1", "missing"]):
        found = await db.read(lambda conn, w=wanted: BY_NAMES.rows(conn, {"names": w}))
        assert sorted(r.name for r in found) == sorted(set(wanted) - {"missing"})


async def test_not_in_an_empty_list_is_true(db: Database) -> None:
    await db.write(lambda conn: INSERT_QUIETLY.many(conn, [_note("a"), _note("b")]))
    others = Prepared(
        select(notes.c.name).where(notes.c.name.not_in(bindparam("names", expanding=True)))
    )
    assert sorted(r.name for r in await db.read(lambda conn: others.rows(conn, {"names": []}))) == [
        "a",
        "b",
    ]
    assert [r.name for r in await db.read(lambda conn: others.rows(conn, {"names": ["a"]}))] == [
        "b"
    ]


async def test_an_update_binds_and_returns_typed_values(db: Database) -> None:
    await db.write(lambda conn: INSERT.one(conn, _note("old")))
    later = MADE_AT + timedelta(days=1)
    params = {"old": "old", "new": "new", "at": later}
    row = await db.write(lambda conn: RENAME.one_or_none(conn, params))
    assert (row.name, row.made_at) == ("new", later)
    assert await db.write(lambda conn: RENAME.one_or_none(conn, params)) is None  # no "old"


async def test_driver_errors_are_sqlalchemys(db: Database) -> None:
    await db.write(lambda conn: INSERT.one(conn, _note("taken")))
    with pytest.raises(IntegrityError):
        await db.write(lambda conn: INSERT.one(conn, _note("taken")))
    with pytest.raises(IntegrityError):
        await db.write(lambda conn: INSERT_QUIETLY.many(conn, [_note("free"), _note("taken")]))
    assert [
        r.name for r in await db.read(lambda conn: BY_NAMES.rows(conn, {"names": ["free"]}))
    ] == []


async def test_a_missing_value_is_refused_naming_it(db: Database) -> None:
    with pytest.raises(StatementError, match="'old'"):
        await db.write(lambda conn: RENAME.rows(conn, {"new": "x", "at": MADE_AT}))
