"""The database handle: async engines, SQLite tuning, read and write transactions.

On SQLite (the embedded default) writes go through one connection that opens its
transactions with ``BEGIN IMMEDIATE``: writers queue in-process instead of failing
with "database is locked" half-way through, and WAL mode lets readers run alongside.
On PostgreSQL both kinds share one pooled engine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

SQLITE_BUSY_TIMEOUT_MS = 30_000


class Database:
    """Owns the engines. ``write()`` and ``read()`` hand out connections in a transaction."""

    def __init__(self, url: str) -> None:
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite:
            if self.url.database and self.url.database != ":memory:":
                Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
            # Transactions always end in COMMIT or ROLLBACK here, so the pool's own
            # reset-on-return would only add a round trip to the driver thread.
            self._writer = create_async_engine(
                self.url, pool_size=1, max_overflow=0, pool_reset_on_return=None
            )
            self._reader = create_async_engine(
                self.url, pool_size=4, max_overflow=4, pool_reset_on_return=None
            )
            _tune_sqlite(self._writer, begin="BEGIN IMMEDIATE")
            _tune_sqlite(self._reader, begin=None)
        else:
            self._writer = self._reader = create_async_engine(
                self.url, pool_size=10, max_overflow=10, pool_pre_ping=True
            )

    @property
    def engine(self) -> AsyncEngine:
        return self._writer

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction: committed on success, rolled back on error."""
        async with self._writer.begin() as conn:
            yield conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reading. On SQLite each statement is its own snapshot
        (autocommit): a completion writes a job's status and outputs in one
        transaction, so reading the job before its outputs stays consistent."""
        async with self._reader.connect() as conn:
            yield conn

    async def dispose(self) -> None:
        await self._writer.dispose()
        if self._reader is not self._writer:
            await self._reader.dispose()


def _tune_sqlite(engine: AsyncEngine, *, begin: str | None) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take over transaction control from the driver so "begin" below decides.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        if begin is not None:  # None: autocommit, every statement its own transaction
            conn.exec_driver_sql(begin)
