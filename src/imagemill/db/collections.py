"""Favourites and collections in SQL: an owner marks outputs as favourites
(``outputs.favourite``) and files outputs into named collections (boards).

An output is named by its job and index (``OutputRef``); every call checks that the job is
the caller's, so nobody marks or files what another owner made. Deleting a job takes its
outputs out of every collection (``db/deletion.py``); deleting a collection leaves its
images where they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, select, tuple_, update
from sqlalchemy.exc import IntegrityError

from imagemill.boundary import quoted
from imagemill.db.engine import Database
from imagemill.db.tables import collection_items, collections, jobs, outputs
from imagemill.errors import Conflict, InvalidInput, NotFound
from imagemill.ids import new_id

OutputRef = tuple[str, int]  # (job id, output index)


@dataclass(frozen=True, slots=True)
class Collection:
    id: str
    owner_id: str
    name: str
    created_at: datetime
    updated_at: datetime
    size: int = 0  # outputs filed in it
    items: list[OutputRef] = field(default_factory=list)  # newest first, when asked for


class Collections:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def set_favourite(self, owner_id: str, ref: OutputRef, favourite: bool) -> None:
        """Mark (or unmark) one of the owner's outputs; ``NotFound`` if there is none."""
        job_id, index = ref
        statement = (
            update(outputs)
            .where(
                outputs.c.job_id == job_id,
                outputs.c.index == index,
                outputs.c.job_id.in_(select(jobs.c.id).where(jobs.c.owner_id == owner_id)),
            )
            .values(favourite=favourite)
        )
        changed = await self.db.write(lambda conn: conn.execute(statement).rowcount)
        if not changed:
            raise NotFound(f"no output {index} of job {quoted(job_id)}")

    async def create(self, owner_id: str, name: str, now: datetime) -> Collection:
        collection_id = new_id("col")
        statement = collections.insert().values(
            id=collection_id, owner_id=owner_id, name=name, created_at=now, updated_at=now
        )
        try:
            await self.db.write(lambda conn: conn.execute(statement))
        except IntegrityError as exc:
            raise Conflict(f"a collection named {quoted(name)} exists", field="name") from exc
        return await self.get(owner_id, collection_id)

    async def list(self, owner_id: str) -> list[Collection]:
        """The owner's collections by name, each with its size."""
        size = (
            select(func.count())
            .where(collection_items.c.collection_id == collections.c.id)
            .scalar_subquery()
        )
        query = (
            select(collections, size.label("size"))
            .where(collections.c.owner_id == owner_id)
            .order_by(collections.c.name)
        )
        return await self.db.read(
            lambda conn: [Collection(**row._mapping) for row in conn.execute(query).all()]
        )

    async def get(self, owner_id: str, collection_id: str) -> Collection:
        """The collection with its items, newest first; ``NotFound`` for another's."""

        def work(conn: Connection) -> Collection:
            row = _owned(conn, owner_id, collection_id)
            items = conn.execute(
                select(collection_items.c.job_id, collection_items.c.output_index)
                .where(collection_items.c.collection_id == collection_id)
                .order_by(collection_items.c.added_at.desc(), collection_items.c.job_id.desc())
            ).all()
            refs = [(job_id, index) for job_id, index in items]
            return Collection(**row._mapping, size=len(refs), items=refs)

        return await self.db.read(work)

    async def rename(
        self, owner_id: str, collection_id: str, name: str, now: datetime
    ) -> Collection:
        def work(conn: Connection) -> None:
            _owned(conn, owner_id, collection_id)
            conn.execute(
                update(collections)
                .where(collections.c.id == collection_id)
                .values(name=name, updated_at=now)
            )

        try:
            await self.db.write(work)
        except IntegrityError as exc:
            raise Conflict(f"a collection named {quoted(name)} exists", field="name") from exc
        return await self.get(owner_id, collection_id)

    async def delete(self, owner_id: str, collection_id: str) -> None:
        """The collection goes; the images filed in it stay."""

        def work(conn: Connection) -> None:
            _owned(conn, owner_id, collection_id)
            conn.execute(
                delete(collection_items).where(collection_items.c.collection_id == collection_id)
            )
            conn.execute(delete(collections).where(collections.c.id == collection_id))

        await self.db.write(work)

    async def add(
        self, owner_id: str, collection_id: str, refs: Sequence[OutputRef], now: datetime
    ) -> Collection:
        """File ``refs`` (the owner's outputs) in the collection; one already there stays
        as it was. ``InvalidInput`` naming ``items.N`` for an output that is not there."""

        def work(conn: Connection) -> None:
            _owned(conn, owner_id, collection_id)
            found = set(_owned_outputs(conn, owner_id, refs))
            for position, ref in enumerate(refs):
                if ref not in found:
                    raise InvalidInput(
                        f"no output {ref[1]} of job {quoted(ref[0])}", field=f"items.{position}"
                    )
            there = {
                (job_id, index)
                for job_id, index in conn.execute(
                    select(collection_items.c.job_id, collection_items.c.output_index).where(
                        collection_items.c.collection_id == collection_id,
                        tuple_(collection_items.c.job_id, collection_items.c.output_index).in_(
                            list(refs)
                        ),
                    )
                )
            }
            new = list(dict.fromkeys(ref for ref in refs if ref not in there))
            if new:  # filed by a concurrent request meanwhile: there once all the same
                conn.execute(
                    self.db.insert(collection_items).on_conflict_do_nothing(),
                    [
                        {
                            "collection_id": collection_id,
                            "job_id": job_id,
                            "output_index": index,
                            "added_at": now,
                        }
                        for job_id, index in new
                    ],
                )
            conn.execute(
                update(collections).where(collections.c.id == collection_id).values(updated_at=now)
            )

        await self.db.write(work)
        return await self.get(owner_id, collection_id)

    async def remove(self, owner_id: str, collection_id: str, ref: OutputRef) -> None:
        """Take one output out of the collection (the image stays)."""

        def work(conn: Connection) -> int:
            _owned(conn, owner_id, collection_id)
            return conn.execute(
                delete(collection_items).where(
                    collection_items.c.collection_id == collection_id,
                    collection_items.c.job_id == ref[0],
                    collection_items.c.output_index == ref[1],
                )
            ).rowcount

        if not await self.db.write(work):
            raise NotFound(f"output {ref[1]} of job {quoted(ref[0])} is not in this collection")


def _owned(conn: Connection, owner_id: str, collection_id: str) -> Any:
    row = conn.execute(
        select(collections).where(
            collections.c.id == collection_id, collections.c.owner_id == owner_id
        )
    ).one_or_none()
    if row is None:
        raise NotFound(f"no collection {quoted(collection_id)}")
    return row


def _owned_outputs(conn: Connection, owner_id: str, refs: Sequence[OutputRef]) -> list[OutputRef]:
    """Which of ``refs`` are outputs of the owner's jobs."""
    if not refs:
        return []
    rows = conn.execute(
        select(outputs.c.job_id, outputs.c.index)
        .join(jobs, jobs.c.id == outputs.c.job_id)
        .where(
            jobs.c.owner_id == owner_id,
            tuple_(outputs.c.job_id, outputs.c.index).in_(list(refs)),
        )
    ).all()
    return [(job_id, index) for job_id, index in rows]
