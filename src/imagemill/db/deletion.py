"""Deleting a finished job from its owner's history, with everything that hangs off it.

The job's events, outputs, cache entry and webhook deliveries go with it, and so do the
asset rows of its outputs that no other output references (a cache hit shares its
source's assets): their links answer 404 from then on. Blobs are content addressed and
may be shared by other owners' assets, so they stay in storage.
"""

from __future__ import annotations

from sqlalchemy import Connection, delete, select

from imagemill.boundary import quoted
from imagemill.db.tables import (
    assets,
    cache_entries,
    collection_items,
    deliveries,
    delivery_attempts,
    events,
    job_embeddings,
    job_metadata,
    jobs,
    outputs,
)
from imagemill.domain import JobStatus
from imagemill.errors import Conflict, NotFound


def delete_finished_job(conn: Connection, job_id: str, owner_id: str) -> None:
    """Delete the owner's job; ``NotFound`` if it is not theirs, ``Conflict`` if it has
    not finished (cancel it first)."""
    status = conn.execute(
        select(jobs.c.status).where(jobs.c.id == job_id, jobs.c.owner_id == owner_id)
    ).scalar_one_or_none()
    if status is None:
        raise NotFound(f"no job {quoted(job_id)}")
    if not JobStatus(status).terminal:
        raise Conflict(f"job {job_id} is {status}: cancel it before deleting it")
    asset_ids = set(
        conn.execute(select(outputs.c.asset_id).where(outputs.c.job_id == job_id)).scalars()
    )
    job_deliveries = select(deliveries.c.id).where(deliveries.c.job_id == job_id)
    conn.execute(
        delete(delivery_attempts).where(delivery_attempts.c.delivery_id.in_(job_deliveries))
    )
    for table in (
        deliveries,
        cache_entries,
        events,
        collection_items,
        job_embeddings,
        outputs,
        job_metadata,
    ):
        conn.execute(delete(table).where(table.c.job_id == job_id))
    conn.execute(delete(jobs).where(jobs.c.id == job_id))
    still_used = select(outputs.c.asset_id).where(outputs.c.asset_id.in_(asset_ids))
    conn.execute(delete(assets).where(assets.c.id.in_(asset_ids), assets.c.id.not_in(still_used)))
