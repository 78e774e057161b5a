"""Reading jobs, their events and assets, and usage. The queries behind the API's GETs.

``Repository`` (``db/repository.py``) adds every change on top of these.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Integer, Select, bindparam, cast, exists, func, or_, select

from imagemill.boundary import quoted
from imagemill.db import budgets
from imagemill.db.budgets import BudgetState
from imagemill.db.engine import Database
from imagemill.db.prepared import Prepared
from imagemill.db.rows import job_from_row, load_outputs, metadata_entry
from imagemill.db.tables import (
    assets,
    batches,
    cache_entries,
    collection_items,
    events,
    job_metadata,
    jobs,
    outputs,
)
from imagemill.domain import Asset, Batch, Job, JobStatus, TaskKind
from imagemill.errors import NotFound

Q, R, S = JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SUCCEEDED

_JOBS_BY_ID = Prepared(select(jobs).where(jobs.c.id.in_(bindparam("ids", expanding=True))))
_JOB_STATUS = Prepared(
    select(jobs.c.status, jobs.c.lease_owner).where(jobs.c.id == bindparam("job_id"))
)
_TO_SCHEDULE = Prepared(
    select(
        jobs.c.owner_id,
        jobs.c.status,
        jobs.c.model,
        jobs.c.request,
        jobs.c.batch_id,
        jobs.c.enhanced_prompt,
        batches.c.concurrency,
    )
    .outerjoin(batches, batches.c.id == jobs.c.batch_id)
    .where(jobs.c.id == bindparam("job_id"))
)
_ASSET = Prepared(select(assets).where(assets.c.id == bindparam("asset_id")))
_CACHED_JOB_ID = Prepared(
    select(cache_entries.c.job_id)
    .join(jobs, jobs.c.id == cache_entries.c.job_id)
    .where(
        cache_entries.c.owner_id == bindparam("owner_id"),
        cache_entries.c.cache_key == bindparam("cache_key"),
        jobs.c.status == S.value,
    )
)


@dataclass(frozen=True, slots=True)
class UsageRow:
    day: str  # YYYY-MM-DD, UTC
    model: str
    images: int
    cached: int
    cost_usd: float


@dataclass(frozen=True, slots=True)
class JobFilter:
    status: JobStatus | None = None
    model: str | None = None
    kind: TaskKind | None = None
    text: str | None = None
    group_id: str | None = None
    batch_id: str | None = None
    created_after: datetime | None = None  # inclusive
    created_before: datetime | None = None  # exclusive
    before: str | None = None  # cursor: ids sort by creation time
    metadata: tuple[tuple[str, str], ...] = ()  # top-level key and value text, all to match
    favourite: bool = False  # only jobs with a favourite output
    collection_id: str | None = None  # only jobs with an output in this collection
    job_ids: tuple[str, ...] | None = None  # only these
    grouped: bool = False  # only jobs of a comparison


@dataclass(frozen=True, slots=True)
class Scheduled:
    """A job waiting to run, as the worker's line sees it."""

    owner_id: str
    models: tuple[str, ...]  # its model, then its fallbacks
    batch: tuple[str, int] | None = None  # its batch's id and concurrency
    enhancer: str | None = None  # the model that enhances its prompt first, if still to


@dataclass(frozen=True, slots=True)
class BatchTally:
    counts: dict[str, int]  # items per status
    running_progress: float  # the sum of the progress of the items not finished
    started: bool  # any item ran (or is running)
    shown: float  # the highest progress shown so far


class Queries:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def spend_context(
        self, owner_id: str, cache_keys: Sequence[str], scopes: Sequence[str], now: datetime
    ) -> tuple[set[str], list[BudgetState]]:
        """For an estimate, in one snapshot: which of ``cache_keys`` the owner has a
        succeeded job for (a cache hit, if the request may reuse it), and the budgets
        of ``scopes`` in their current periods."""

        def work(conn: Connection) -> tuple[set[str], list[BudgetState]]:
            params = [{"owner_id": owner_id, "cache_key": key} for key in set(cache_keys)]
            cached = {p["cache_key"] for p in params if _CACHED_JOB_ID.scalar(conn, p)}
            return cached, budgets.states(conn, scopes, now)

        return await self.db.read(work)

    async def find_idempotent(self, owner_id: str, key: str) -> list[Job]:
        """The jobs an earlier request with this Idempotency-Key created (a whole group)."""
        query = select(jobs.c.id, jobs.c.group_id).where(
            jobs.c.owner_id == owner_id, jobs.c.idempotency_key == key
        )
        return await self.db.read(lambda conn: _jobs_of_request(conn, query))

    async def find_fingerprinted(
        self, owner_id: str, fingerprint: str, since: datetime
    ) -> list[Job]:
        """The latest job (with its group) of a request with this fingerprint, created at
        or after ``since``: what a retry of that same request joins."""
        query = (
            select(jobs.c.id, jobs.c.group_id)
            .where(
                jobs.c.owner_id == owner_id,
                jobs.c.request_fingerprint == fingerprint,
                jobs.c.created_at >= since,
            )
            .order_by(jobs.c.created_at.desc(), jobs.c.id.desc())
            .limit(1)
        )
        return await self.db.read(lambda conn: _jobs_of_request(conn, query))

    async def cached_job(self, owner_id: str, cache_key: str) -> Job | None:
        """The succeeded job a request with this cache key may reuse, if any."""
        return await self.db.read(lambda conn: cached_job_of(conn, owner_id, cache_key))

    async def get_job(self, job_id: str, owner_id: str | None = None) -> Job:
        """The job, with its outputs; ``NotFound`` also when another owner has it."""
        found = await self.get_jobs([job_id])
        if not found or (owner_id is not None and found[0].owner_id != owner_id):
            raise NotFound(f"no job {quoted(job_id)}")
        return found[0]

    async def get_jobs(self, job_ids: Sequence[str]) -> list[Job]:
        """Jobs in the order asked for (missing ids are left out)."""
        if not job_ids:
            return []
        return await self.db.lookup(lambda conn: jobs_by_id(conn, job_ids))

    async def list_jobs(self, owner_id: str, where: JobFilter, limit: int) -> list[Job]:
        conditions = [jobs.c.owner_id == owner_id]
        if where.status:
            conditions.append(jobs.c.status == where.status.value)
        if where.model:
            conditions.append(jobs.c.model == where.model)
        if where.kind:
            conditions.append(jobs.c.kind == where.kind.value)
        if where.group_id:
            conditions.append(jobs.c.group_id == where.group_id)
        if where.batch_id:
            conditions.append(jobs.c.batch_id == where.batch_id)
        if where.text:
            pattern = "%" + where.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            contains = pattern + "%"
            # A text kind's outputs are searched too (captions, descriptions), by job.
            written = exists().where(
                outputs.c.job_id == jobs.c.id, outputs.c.text.ilike(contains, escape="\\")
            )
            conditions.append(
                or_(
                    jobs.c.prompt.ilike(contains, escape="\\"),
                    jobs.c.enhanced_prompt.ilike(contains, escape="\\"),
                    written,
                )
            )
        if where.created_after:
            conditions.append(jobs.c.created_at >= where.created_after)
        if where.created_before:
            conditions.append(jobs.c.created_at < where.created_before)
        if where.before:
            conditions.append(jobs.c.id < where.before)
        if where.grouped:
            conditions.append(jobs.c.group_id.is_not(None))
        if where.job_ids is not None:
            conditions.append(jobs.c.id.in_(where.job_ids))
        if where.favourite:
            conditions.append(
                exists().where(outputs.c.job_id == jobs.c.id, outputs.c.favourite.is_(True))
            )
        if where.collection_id:
            filed = select(collection_items.c.job_id).where(
                collection_items.c.collection_id == where.collection_id
            )
            conditions.append(jobs.c.id.in_(filed))
        for key, text in where.metadata:
            matching = select(job_metadata.c.job_id).where(
                job_metadata.c.owner_id == owner_id,
                job_metadata.c.entry == metadata_entry(key, text),
            )
            conditions.append(jobs.c.id.in_(matching))
        query = select(jobs).where(*conditions).order_by(jobs.c.id.desc()).limit(limit)

        def work(conn: Connection) -> list[Job]:
            rows = conn.execute(query).all()
            by_job = load_outputs(conn, [r.id for r in rows])
            return [job_from_row(row, by_job.get(row.id, [])) for row in rows]

        return await self.db.read(work)

    async def events_after(self, job_id: str, after_seq: int) -> list[dict[str, Any]]:
        query = (
            select(events)
            .where(events.c.job_id == job_id, events.c.seq > after_seq)
            .order_by(events.c.seq)
        )
        return await self.db.read(
            lambda conn: [dict(r._mapping) for r in conn.execute(query).all()]
        )

    async def owner_events_after(
        self, owner_id: str, after_id: int, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """The owner's events (every job) after log position ``after_id``, in log order."""
        query = (
            select(events)
            .where(events.c.owner_id == owner_id, events.c.id > after_id)
            .order_by(events.c.id)
            .limit(limit)
        )
        return await self.db.read(
            lambda conn: [dict(r._mapping) for r in conn.execute(query).all()]
        )

    async def batch_events_after(
        self, batch_id: str, after_id: int, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """The events of a batch's items after log position ``after_id``, in log order."""
        query = (
            select(events)
            .join(jobs, jobs.c.id == events.c.job_id)
            .where(jobs.c.batch_id == batch_id, events.c.id > after_id)
            .order_by(events.c.id)
            .limit(limit)
        )
        return await self.db.read(
            lambda conn: [dict(r._mapping) for r in conn.execute(query).all()]
        )

    async def batch_tally(self, batch_id: str) -> BatchTally:
        """A batch's items per status, the sum of the progress of those not finished,
        whether any item started, and the highest progress shown so far: what its
        progress events need, cheaply."""
        query = (
            select(jobs.c.status, func.count(), func.sum(jobs.c.progress), func.max(jobs.c.attempt))
            .where(jobs.c.batch_id == batch_id)
            .group_by(jobs.c.status)
        )
        shown = select(batches.c.progress).where(batches.c.id == batch_id)

        def work(conn: Connection) -> BatchTally:
            counts = dict.fromkeys((s.value for s in JobStatus), 0)
            running, started = 0.0, False
            for status, count, progress, attempt in conn.execute(query).all():
                counts[status] = count
                started |= status != JobStatus.QUEUED.value or bool(attempt)
                if not JobStatus(status).terminal:
                    running += float(progress or 0.0)
            return BatchTally(counts, running, started, float(conn.execute(shown).scalar_one()))

        return await self.db.read(work)

    async def last_event_id(self, owner_id: str) -> int:
        """The log position of the owner's latest event (0 if none)."""
        query = select(func.max(events.c.id)).where(events.c.owner_id == owner_id)
        return int(await self.db.read(lambda conn: conn.execute(query).scalar()) or 0)

    async def get_asset(self, asset_id: str, owner_id: str | None = None) -> Asset:
        row = await self.db.fetch_one(_ASSET, {"asset_id": asset_id})
        if row is None or (owner_id is not None and row.owner_id != owner_id):
            raise NotFound(f"no asset {quoted(asset_id)}")
        return Asset(**row._mapping)

    async def usage(
        self, owner_id: str, since: datetime | None, until: datetime | None
    ) -> list[UsageRow]:
        """Images and cost per model and UTC day, from the outputs recorded, and the prompts
        enhanced before rendering (a cost of the text model, with no image)."""

        def day_of(moment: Any) -> Any:
            return func.date(moment) if self.db.is_sqlite else func.date_trunc("day", moment)

        def within(moment: Any) -> list[Any]:
            return [
                *([moment >= since] if since is not None else []),
                *([moment < until] if until is not None else []),
            ]

        day = day_of(outputs.c.created_at)
        conditions = [jobs.c.owner_id == owner_id, *within(outputs.c.created_at)]
        query = (
            select(
                day.label("day"),
                outputs.c.model,
                func.count().label("images"),
                func.sum(cast(outputs.c.cached, Integer)).label("cached"),
                func.sum(outputs.c.cost_usd).label("cost_usd"),
            )
            .join(jobs, jobs.c.id == outputs.c.job_id)
            .where(*conditions)
            .group_by(day, outputs.c.model)
            .order_by(day, outputs.c.model)
        )
        # Prompts enhanced before rendering: the text model's call, a line of its own.
        enhanced_day = day_of(jobs.c.started_at)
        enhanced = [
            jobs.c.owner_id == owner_id,
            jobs.c.enhance_model.is_not(None),
            *within(jobs.c.started_at),
        ]
        enhancements = (
            select(
                enhanced_day.label("day"),
                jobs.c.enhance_model.label("model"),
                func.sum(jobs.c.enhance_cost_usd).label("cost_usd"),
            )
            .where(*enhanced)
            .group_by(enhanced_day, jobs.c.enhance_model)
        )

        def work(conn: Connection) -> dict[tuple[str, str], UsageRow]:
            lines: dict[tuple[str, str], UsageRow] = {}
            for r in conn.execute(query).all():
                key = (str(r.day)[:10], r.model)
                cost = float(r.cost_usd or 0.0)
                lines[key] = UsageRow(key[0], r.model, r.images, int(r.cached or 0), cost)
            for r in conn.execute(enhancements).all():
                key = (str(r.day)[:10], r.model)
                line = lines.get(key, UsageRow(key[0], r.model, 0, 0, 0.0))
                lines[key] = replace(line, cost_usd=line.cost_usd + float(r.cost_usd or 0.0))
            return lines

        lines = await self.db.read(work)
        return [
            UsageRow(line.day, line.model, line.images, line.cached, round(line.cost_usd, 6))
            for _, line in sorted(lines.items())
        ]

    async def job_status(self, job_id: str) -> tuple[JobStatus, str | None] | None:
        """Status and lease owner, cheaply (the heartbeat's and the waiters' check)."""
        row = await self.db.fetch_one(_JOB_STATUS, {"job_id": job_id})
        return (JobStatus(row.status), row.lease_owner) if row else None

    async def to_schedule(self, job_id: str) -> Scheduled | None:
        """What the worker's line needs of a job, cheaply; ``None`` unless it may run."""
        row = await self.db.fetch_one(_TO_SCHEDULE, {"job_id": job_id})
        if row is None or row.status != Q.value:
            return None  # ended, or claimed by another worker (a lapsed lease is re-sent)
        request = json.loads(row.request) if isinstance(row.request, str) else row.request
        fallback = [f["model"] for f in (request or {}).get("fallback") or ()]
        batch = (row.batch_id, row.concurrency) if row.batch_id else None
        enhance = (request or {}).get("enhance")
        enhancer = enhance["model"] if enhance and not row.enhanced_prompt else None
        return Scheduled(row.owner_id, (row.model, *fallback), batch, enhancer)

    async def get_batch(self, batch_id: str, owner_id: str) -> Batch:
        """The owner's batch with its items; ``NotFound`` also when another owner has it."""
        query = select(batches).where(batches.c.id == batch_id, batches.c.owner_id == owner_id)
        found = await self.db.read(lambda conn: batches_with_items(conn, query))
        if not found:
            raise NotFound(f"no batch {quoted(batch_id)}")
        return found[0]

    async def list_batches(self, owner_id: str, before: str | None, limit: int) -> list[Batch]:
        """The owner's batches, newest first, with their items."""
        query = select(batches).where(batches.c.owner_id == owner_id)
        if before:
            query = query.where(batches.c.id < before)
        query = query.order_by(batches.c.id.desc()).limit(limit)
        return await self.db.read(lambda conn: batches_with_items(conn, query))

    async def stale_jobs(self, now: datetime, queued_before: datetime, limit: int) -> list[Any]:
        """Queued jobs due since ``queued_before`` and running jobs whose lease expired."""
        query = (
            select(jobs.c.id, jobs.c.status, jobs.c.attempt, jobs.c.max_attempts)
            .where(
                ((jobs.c.status == Q.value) & (jobs.c.run_after <= queued_before))
                | ((jobs.c.status == R.value) & (jobs.c.lease_expires_at < now))
            )
            .order_by(jobs.c.run_after)
            .limit(limit)
        )
        return await self.db.read(lambda conn: list(conn.execute(query).all()))

    async def due_queued(self, now: datetime, limit: int, skip: Sequence[str] = ()) -> list[str]:
        """Up to ``limit`` queued jobs due by ``now``, the newest first, but those in
        ``skip`` (work stealing: ``jobs/stealing.py``)."""
        query = (
            select(jobs.c.id)
            .where(jobs.c.status == Q.value, jobs.c.run_after <= now)
            .order_by(jobs.c.run_after.desc())
            .limit(limit)
        )
        if skip:
            query = query.where(jobs.c.id.not_in(skip))
        return await self.db.read(lambda conn: list(conn.execute(query).scalars()))

    async def overdue_jobs(self, now: datetime, limit: int) -> list[str]:
        """Jobs past their deadline that no worker is running."""
        query = (
            select(jobs.c.id)
            .where(
                jobs.c.status.in_([Q.value, R.value]),
                jobs.c.deadline_at < now,
                (jobs.c.status == Q.value) | (jobs.c.lease_expires_at < now),
            )
            .order_by(jobs.c.deadline_at)
            .limit(limit)
        )
        return await self.db.read(lambda conn: list(conn.execute(query).scalars()))


def _jobs_of_request(conn: Connection, query: Select[Any]) -> list[Job]:
    """The jobs one request made: the one ``query`` (id, group id) finds, or its group."""
    row = conn.execute(query).one_or_none()
    if row is None:
        return []
    if row.group_id is None:
        return jobs_by_id(conn, [row.id])
    group = select(jobs.c.id).where(jobs.c.group_id == row.group_id).order_by(jobs.c.id)
    return jobs_by_id(conn, list(conn.execute(group).scalars()))


def jobs_by_id(conn: Connection, job_ids: Sequence[str]) -> list[Job]:
    rows = _JOBS_BY_ID.rows(conn, {"ids": list(job_ids)})
    by_job = load_outputs(conn, [r.id for r in rows])
    found = {row.id: job_from_row(row, by_job.get(row.id, [])) for row in rows}
    return [found[i] for i in job_ids if i in found]


def batches_with_items(conn: Connection, query: Select[Any]) -> list[Batch]:
    rows = conn.execute(query).all()
    items = select(jobs).where(jobs.c.batch_id.in_([r.id for r in rows])).order_by(jobs.c.id)
    job_rows = conn.execute(items).all() if rows else []
    by_job = load_outputs(conn, [r.id for r in job_rows])
    by_batch: dict[str, list[Job]] = {}
    for row in job_rows:
        by_batch.setdefault(row.batch_id, []).append(job_from_row(row, by_job.get(row.id, [])))
    return [
        Batch(
            id=r.id,
            owner_id=r.owner_id,
            concurrency=r.concurrency,
            metadata=r.metadata,
            progress=r.progress,
            created_at=r.created_at,
            jobs=by_batch.get(r.id, []),
            webhook_url=r.webhook_url,
            deadline_seconds=r.deadline_seconds,
            completions=r.completions,
        )
        for r in rows
    ]


def cached_job_of(conn: Connection, owner_id: str, cache_key: str) -> Job | None:
    params = {"owner_id": owner_id, "cache_key": cache_key}
    job_id = _CACHED_JOB_ID.scalar(conn, params)
    return jobs_by_id(conn, [job_id])[0] if job_id else None
