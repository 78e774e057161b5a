"""The database handle: each transaction is one synchronous function, run as one unit.

Queries are plain SQLAlchemy Core on a ``Connection``; ``Database.write(fn)`` runs
``fn`` in one transaction (committed when it returns, rolled back when it raises) and
``Database.read(fn)`` runs it in one read-only snapshot (``Database.lookup(fn)`` too, for
reads of a few rows by key, where the hand-off would cost more than the read). Code
inside ``fn`` cannot await anything, so no transaction is ever held open across network
I/O.

- SQLite (the embedded default) runs on the standard library driver in threads, the
  way datasette does it. Every write goes through one thread holding one connection
  that opens its transactions with ``BEGIN IMMEDIATE`` (writers queue in-process
  instead of failing with "database is locked"); WAL mode lets a few reader threads
  run alongside. A transaction costs one hand-off to its thread, where an asyncio
  SQLite driver pays one per statement. Write functions queued while the thread was
  busy share one commit (group commit); if any of them fails, the shared transaction
  is rolled back and each runs again on its own, so the outcome is exactly that of
  running them one by one.
- Other databases (PostgreSQL) use SQLAlchemy's async engine; ``fn`` runs through
  ``AsyncConnection.run_sync``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import re
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Table, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import InvalidatePoolError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import StaticPool

from imagemill.boundary import storable_json
from imagemill.db.prepared import Prepared

T = TypeVar("T")
Work = Callable[[Connection], T]

SQLITE_BUSY_TIMEOUT_MS = 30_000
SQLITE_READERS = 4  # reader threads; the pool has one more connection, for lookups
MAX_GROUP_COMMIT = 64  # write functions sharing one SQLite commit, at most
PING_AFTER_IDLE_SECONDS = 10.0  # a PostgreSQL connection idle this long is checked first


# The escapes a stored JSON value needs to hold text that cannot be sent on: a lone
# surrogate (a pair matches too, and is left as it is) or NUL.
_SUSPECT_ESCAPE = re.compile(r"\\u(?:[dD][89a-fA-F]|0000)")


def read_json(text: str) -> Any:
    """A stored JSON column's value, with any string that could not be sent on made
    storable: a row written before imagemill checked its input (or by hand) must not
    break every page that lists it."""
    value = json.loads(text)
    return storable_json(value) if _SUSPECT_ESCAPE.search(text) else value


class Database:
    """Owns the engines and the threads that run SQLite transactions.

    ``ping_after_idle``: seconds a pooled PostgreSQL connection may sit unused before it
    is checked (and replaced if gone) on its next use."""

    def __init__(self, url: str | URL, *, ping_after_idle: float = PING_AFTER_IDLE_SECONDS) -> None:
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite:
            self._open_sqlite()
        else:
            self._async = create_async_engine(
                self.url,
                pool_size=10,
                max_overflow=10,
                json_deserializer=read_json,
            )
            _ping_after_idle(self._async.sync_engine, ping_after_idle)
            # The same pool; its transactions see one snapshot from their first statement.
            self._snapshots = self._async.execution_options(isolation_level="REPEATABLE READ")
            # The same pool again: each statement on its own, no BEGIN and COMMIT around it.
            self._statements = self._async.execution_options(isolation_level="AUTOCOMMIT")

    def _open_sqlite(self) -> None:
        # The stdlib driver, whatever driver the URL names (``sqlite+aiosqlite://`` too).
        url = self.url.set(drivername="sqlite+pysqlite")
        in_memory = url.database in (None, "", ":memory:")
        if not in_memory:
            Path(str(url.database)).parent.mkdir(parents=True, exist_ok=True)
        thread_safe = {"check_same_thread": False}
        # Transactions always end in COMMIT or ROLLBACK, so the pool's reset-on-return
        # would only add a statement.
        if in_memory:  # one connection, or every connection would see its own database
            self._writer = create_engine(
                url, poolclass=StaticPool, connect_args=thread_safe, json_deserializer=read_json
            )
            self._reader = self._writer
        else:
            self._writer = create_engine(
                url,
                pool_size=1,
                max_overflow=0,
                pool_reset_on_return=None,
                connect_args=thread_safe,
                json_deserializer=read_json,
            )
            self._reader = create_engine(
                url,
                pool_size=SQLITE_READERS + 1,  # the event loop's own, for lookups
                max_overflow=0,
                pool_reset_on_return=None,
                connect_args=thread_safe,
                json_deserializer=read_json,
            )
        _tune_sqlite(self._writer, begin="BEGIN IMMEDIATE")
        if self._reader is not self._writer:
            _tune_sqlite(self._reader, begin="BEGIN")
        self._write_thread = _WriteThread(self._writer)
        self._read_threads = ThreadPoolExecutor(
            SQLITE_READERS, thread_name_prefix="imagemill-db-read"
        )
        self._lookups: Connection | None = None  # the event loop's own, kept open

    def write(self, work: Work[T]) -> asyncio.Future[T]:
        """Run ``work`` in a write transaction: committed on return, rolled back on error.

        The transaction runs to its end even if the awaiting task is canceled.
        """
        if self.is_sqlite:
            return self._write_thread.submit(work)
        return asyncio.ensure_future(self._write_async(work))

    async def _write_async(self, work: Work[T]) -> T:
        async with self._async.begin() as conn:
            return await conn.run_sync(work)

    async def read(self, work: Work[T]) -> T:
        """Run ``work`` for reading, in one snapshot: every statement in ``work`` sees
        the same committed state (a batch and its items, a job and its outputs), on
        SQLite (a deferred read transaction in WAL) and on PostgreSQL (repeatable read)."""
        if self.is_sqlite:
            if self._reader is self._writer:  # in memory: one connection, used by one thread
                return await self._write_thread.submit(work)
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._read_threads, _connected, self._reader, work)
        async with self._snapshots.begin() as conn:
            return await conn.run_sync(work)

    async def lookup(self, work: Work[T]) -> T:
        """Run ``work``, a read of a few rows by key (a job's status, an API key's owner),
        in one snapshot as ``read`` does. On SQLite it runs here, on the event loop: such
        a read takes SQLite tens of microseconds, less than handing it to a reader thread
        and being woken with its answer (an 8 KB OpenAI-compatible call: 14.3 → 11.3 ms of
        CPU, and 89,000 → 50,000 context switches in 15 s). In WAL mode a reader never
        waits for a writer. Anything that scans (history, search) goes to ``read``."""
        if not self.is_sqlite or self._reader is self._writer:
            return await self.read(work)
        if self._lookups is None:
            self._lookups = self._reader.connect()
        with self._lookups.begin():
            return work(self._lookups)

    async def fetch_one(self, statement: Prepared[Any], params: Mapping[str, Any]) -> Any:
        """The one row (or ``None``) ``statement`` reads by key with ``params``: an API key's
        owner, a job's status. On SQLite on the event loop, as ``lookup`` does; on
        PostgreSQL as a statement of its own, outside any transaction (one statement sees
        one snapshot anyway): one round trip where a transaction takes three (BEGIN, the
        statement, COMMIT), and a third of the client's CPU.

        Raises ``sqlalchemy.exc.MultipleResultsFound`` if it matched several rows."""
        if self.is_sqlite:
            return await self.lookup(lambda conn: statement.one_or_none(conn, params))
        async with self._statements.connect() as conn:
            return await conn.run_sync(lambda sync: statement.one_or_none(sync, params))

    def insert(self, table: Table) -> sqlite.Insert | postgresql.Insert:
        """An ``INSERT`` in this database's dialect, for ``ON CONFLICT`` clauses."""
        return sqlite.insert(table) if self.is_sqlite else postgresql.insert(table)

    async def dispose(self) -> None:
        if not self.is_sqlite:
            await self._async.dispose()
            return
        await asyncio.to_thread(self._write_thread.stop)  # queued transactions finish first
        if self._lookups is not None:
            self._lookups.close()
        self._read_threads.shutdown(wait=True)
        self._writer.dispose()
        if self._reader is not self._writer:
            self._reader.dispose()


def _ping_after_idle(engine: Engine, seconds: float) -> None:
    """Check a pooled PostgreSQL connection before use when it sat idle ``seconds`` or
    more, and replace it if it is gone (the server restarted, a proxy dropped it).

    SQLAlchemy's ``pool_pre_ping`` checks on every checkout: on asyncpg that is BEGIN, a
    query and ROLLBACK, three round trips before each transaction. Here only an idle
    connection is checked: one in use within ``seconds`` of a server restart fails its
    transaction once (an error to its caller, like any failed write), and the pool then
    replaces every connection from before."""
    returned_at = "imagemill_returned_at"

    @event.listens_for(engine, "checkin")
    def returned(dbapi_connection: Any, record: Any) -> None:
        record.info[returned_at] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def taken(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        idle_since = record.info.get(returned_at)
        if idle_since is None or time.monotonic() - idle_since < seconds:
            return
        try:
            dbapi_connection.ping()
        except Exception as exc:
            # The pool takes a fresh connection, and replaces the others of before too:
            # the server probably restarted.
            raise InvalidatePoolError("a pooled connection was gone") from exc


class _WriteThread:
    """The one thread that runs SQLite write transactions, in the order they came."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._queue: queue.SimpleQueue[_Queued | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="imagemill-db-write", daemon=True)
        self._thread.start()

    def submit(self, work: Work[T]) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Queued(work, future, loop))
        return future

    def stop(self) -> None:
        """Finish what is queued, then end the thread."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while (first := self._queue.get()) is not None:
            batch = [first]
            while len(batch) < MAX_GROUP_COMMIT:
                try:
                    queued = self._queue.get_nowait()
                except queue.Empty:
                    break
                if queued is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(queued)
            self._run_batch(batch)

    def _run_batch(self, batch: list[_Queued]) -> None:
        if len(batch) > 1:
            try:
                with self.engine.begin() as conn:
                    results = [queued.work(conn) for queued in batch]
            except Exception:
                pass  # someone failed (or the commit did): each runs alone below
            else:
                for queued, result in zip(batch, results, strict=True):
                    queued.resolve(result, None)
                return
        for queued in batch:
            try:
                with self.engine.begin() as conn:
                    result = queued.work(conn)
            except BaseException as exc:
                queued.resolve(None, exc)
            else:
                queued.resolve(result, None)


@dataclass(frozen=True, slots=True)
class _Queued:
    work: Work[Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop

    def resolve(self, result: Any, error: BaseException | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            self.loop.call_soon_threadsafe(_settle, self.future, result, error)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _connected(engine: Engine, work: Work[T]) -> T:
    with engine.begin() as conn:
        return work(conn)


def _tune_sqlite(engine: Engine, *, begin: str) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take over transaction control from the driver so "begin" below decides.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Straight to the driver: this runs for every transaction.
        conn.connection.driver_connection.execute(begin)
