"""The database handle: SQLite in WAL mode, one function per transaction, rollback on error."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, bindparam, column, event, select, table, text
from sqlalchemy.util import await_only

from imagemill.db.engine import SQLITE_READERS, Database
from imagemill.db.prepared import Prepared


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'engine.db'}")
    await database.write(
        lambda conn: conn.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"))
    )
    yield database
    await database.dispose()


def _pragmas(conn: Connection) -> tuple[object, ...]:
    return tuple(
        conn.exec_driver_sql(f"PRAGMA {name}").scalar()
        for name in ("journal_mode", "foreign_keys", "busy_timeout")
    )


def _bodies(conn: Connection) -> list[str]:
    return list(conn.execute(text("SELECT body FROM notes ORDER BY id")).scalars())


def _insert(body: str) -> object:
    return lambda conn: conn.execute(text("INSERT INTO notes (body) VALUES (:b)"), {"b": body})


async def test_sqlite_runs_in_wal_mode_on_both_kinds_of_connection(db: Database) -> None:
    assert await db.write(_pragmas) == ("wal", 1, 30_000)
    assert await db.read(_pragmas) == ("wal", 1, 30_000)


async def test_a_write_commits_and_a_failed_write_rolls_back(db: Database) -> None:
    await db.write(_insert("kept"))

    def insert_then_fail(conn: Connection) -> None:
        conn.execute(text("INSERT INTO notes (body) VALUES ('lost')"))
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await db.write(insert_then_fail)
    assert await db.read(_bodies) == ["kept"]


async def test_a_reader_sees_committed_data_while_a_write_is_open(db: Database) -> None:
    await db.write(_insert("one"))
    writing, read_done = threading.Event(), threading.Event()

    def slow_write(conn: Connection) -> None:
        conn.execute(text("INSERT INTO notes (body) VALUES ('two')"))
        writing.set()
        assert read_done.wait(10), "the reader was blocked by the open write"

    write = asyncio.ensure_future(db.write(slow_write))
    await asyncio.to_thread(writing.wait, 10)
    seen = await db.read(_bodies)  # WAL: not blocked, and does not see the uncommitted row
    read_done.set()
    await write
    assert seen == ["one"]
    assert await db.read(_bodies) == ["one", "two"]


async def test_concurrent_writes_queue_in_order_instead_of_failing(db: Database) -> None:
    await asyncio.gather(*(db.write(_insert(str(i))) for i in range(50)))
    assert await db.read(_bodies) == [str(i) for i in range(50)]


async def test_transactions_run_off_the_event_loop_thread(db: Database) -> None:
    loop_thread = threading.get_ident()
    threads = {
        await db.write(lambda _: threading.get_ident()),
        await db.read(lambda _: threading.get_ident()),
    }
    assert loop_thread not in threads


async def test_an_asyncio_driver_url_runs_on_the_same_engine(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'legacy.db'}")
    try:
        assert await database.read(lambda conn: conn.dialect.driver) == "pysqlite"
    finally:
        await database.dispose()


async def test_an_in_memory_database_is_one_database(tmp_path: Path) -> None:
    database = Database("sqlite://")
    try:
        await database.write(lambda conn: conn.execute(text("CREATE TABLE t (x INTEGER)")))
        await database.write(lambda conn: conn.execute(text("INSERT INTO t VALUES (1)")))
        assert await database.read(lambda conn: conn.execute(text("SELECT x FROM t")).all()) == [
            (1,)
        ]
    finally:
        await database.dispose()


def test_the_parent_directory_is_created(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "x.db"
    database = Database(f"sqlite:///{target}")
    assert target.parent.is_dir()
    assert database.is_sqlite


async def test_writes_queued_while_the_writer_is_busy_share_one_commit(db: Database) -> None:
    commits = []
    event.listen(db._writer, "commit", lambda _conn: commits.append(1))
    started, release = threading.Event(), threading.Event()

    def blocker(conn: Connection) -> str:
        started.set()
        assert release.wait(10)
        return "first"

    first = db.write(blocker)
    await asyncio.to_thread(started.wait, 10)
    rest = [db.write(_insert(str(i))) for i in range(10)]  # queued behind the blocker
    release.set()

    assert await first == "first"
    await asyncio.gather(*rest)
    assert len(commits) == 2, "the ten queued writes were committed together"
    assert await db.read(_bodies) == [str(i) for i in range(10)]


async def test_one_failing_write_in_a_group_fails_alone(db: Database) -> None:
    release = threading.Event()

    def fail(conn: Connection) -> None:
        conn.execute(text("INSERT INTO notes (body) VALUES ('doomed')"))
        raise LookupError("this one only")

    blocker = db.write(lambda _: release.wait(10))
    writes = [db.write(_insert("a")), db.write(fail), db.write(_insert("b"))]
    await asyncio.sleep(0.05)
    release.set()
    await blocker

    outcomes = await asyncio.gather(*writes, return_exceptions=True)

    assert isinstance(outcomes[1], LookupError)
    assert not isinstance(outcomes[0], BaseException)
    assert not isinstance(outcomes[2], BaseException)
    assert await db.read(_bodies) == ["a", "b"]


async def test_a_canceled_caller_does_not_stop_its_transaction(db: Database) -> None:
    release = threading.Event()
    blocker = db.write(lambda _: release.wait(10))
    waiting = asyncio.ensure_future(asyncio.shield(db.write(_insert("kept"))))
    await asyncio.sleep(0.01)
    waiting.cancel()
    release.set()
    await blocker
    await db.write(lambda _: None)  # runs after the canceled caller's write
    assert await db.read(_bodies) == ["kept"]


@pytest.fixture
async def either(both_databases: str | None, tmp_path: Path) -> AsyncIterator[Database]:
    """A bare database on SQLite and on PostgreSQL, with one table."""
    database = Database(both_databases or f"sqlite:///{tmp_path / 'either.db'}")
    await database.write(lambda conn: conn.execute(text("CREATE TABLE snap (body TEXT)")))
    yield database
    await database.dispose()


async def test_a_read_sees_one_snapshot_even_when_a_write_commits_halfway(
    either: Database,
) -> None:
    """A batch read before its items, or a job before its outputs, must not mix two moments."""
    insert = text("INSERT INTO snap (body) VALUES (:b)")
    await either.write(lambda conn: conn.execute(insert, {"b": "before"}))
    loop = asyncio.get_running_loop()

    async def write() -> None:
        await either.write(lambda conn: conn.execute(insert, {"b": "meanwhile"}))

    def commit_meanwhile() -> None:
        if either.is_sqlite:  # the read runs on a reading thread: the loop is free
            asyncio.run_coroutine_threadsafe(write(), loop).result(10)
        else:  # the read runs in a greenlet on the loop
            await_only(write())

    def read_twice(conn: Connection) -> tuple[list[str], list[str]]:
        count = text("SELECT body FROM snap ORDER BY body")
        first = list(conn.execute(count).scalars())
        commit_meanwhile()
        return first, list(conn.execute(count).scalars())

    first, second = await either.read(read_twice)

    assert first == second == ["before"]
    after = await either.read(lambda conn: list(conn.execute(text("SELECT body FROM snap"))))
    assert len(after) == 2, "the write did commit, after the read's snapshot was taken"


async def test_a_lookup_reads_committed_data_on_the_event_loop(db: Database) -> None:
    """Lookups run on the loop's own thread (no hand-off) and see what was committed;
    with every reader thread busy, a lookup still gets a connection at once."""
    await db.write(_insert("seen"))
    loop_thread = threading.get_ident()

    def bodies_here(conn: Connection) -> tuple[list[str], bool]:
        return _bodies(conn), threading.get_ident() == loop_thread

    release = threading.Event()

    def held(conn: Connection) -> list[str]:
        release.wait(timeout=30)
        return _bodies(conn)

    busy = [asyncio.ensure_future(db.read(held)) for _ in range(SQLITE_READERS)]
    try:
        assert await asyncio.wait_for(db.lookup(bodies_here), timeout=10) == (["seen"], True)
    finally:
        release.set()
    assert await asyncio.gather(*busy) == [["seen"]] * SQLITE_READERS


_SNAP = table("snap", column("body"))
_BODY = Prepared(select(_SNAP.c.body).where(_SNAP.c.body == bindparam("body")))


async def test_fetch_one_reads_a_row_by_key_in_one_statement_of_its_own(
    either: Database,
) -> None:
    insert = text("INSERT INTO snap (body) VALUES (:b)")
    await either.write(lambda conn: conn.execute(insert, [{"b": "one"}, {"b": "two"}]))

    in_transaction: list[bool] = []

    def executed(conn: Connection, *_: object) -> None:
        if not either.is_sqlite:
            in_transaction.append(conn.connection.driver_connection.is_in_transaction())

    event.listen(Engine, "after_cursor_execute", executed)
    try:
        assert (await either.fetch_one(_BODY, {"body": "two"})).body == "two"
        assert await either.fetch_one(_BODY, {"body": "three"}) is None
        await either.read(lambda conn: _BODY.one(conn, {"body": "one"}))
    finally:
        event.remove(Engine, "after_cursor_execute", executed)
    if not either.is_sqlite:  # no BEGIN and COMMIT around it: one round trip, not three
        assert in_transaction == [False, False, True]


async def test_a_postgres_connection_gone_while_idle_is_replaced_before_use(
    postgres_url: str,
) -> None:
    """Pooled connections are checked only after sitting idle (no round trips spent on
    every transaction); one the server dropped meanwhile is replaced, and the write
    that takes it succeeds."""
    db, admin = Database(postgres_url, ping_after_idle=0.2), Database(postgres_url)
    try:
        pid = await db.write(lambda conn: conn.execute(text("SELECT pg_backend_pid()")).scalar())
        terminate = text("SELECT pg_terminate_backend(:pid)").bindparams(pid=pid)
        assert await admin.write(lambda conn: conn.execute(terminate).scalar())
        await asyncio.sleep(0.3)
        assert await db.write(lambda conn: conn.execute(text("SELECT 1")).scalar()) == 1
    finally:
        await db.dispose()
        await admin.dispose()
