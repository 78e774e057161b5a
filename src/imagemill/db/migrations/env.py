"""Alembic environment: migrations run on a connection handed in by ``imagemill.db.migrate``.

For authoring a migration by hand (``alembic revision --autogenerate``) it connects to
``IMAGEMILL_DATABASE_URL`` instead.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection

from imagemill.config import Settings
from imagemill.db.engine import Database
from imagemill.db.tables import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_standalone() -> None:
    db = Database(Settings().resolved_database_url)
    try:
        await db.write(_run)
    finally:
        await db.dispose()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    asyncio.run(_run_standalone())
