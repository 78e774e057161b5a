"""Job queries: jobs, outputs, assets, events, cache entries. All of their SQL lives here.

Each public method is one transaction. Events written by a transaction are handed
to ``on_events`` after it commits, so live subscribers never see an event that a
rollback later erased.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from imagemill.db.engine import Database
from imagemill.db.tables import assets, cache_entries, events, jobs, outputs
from imagemill.domain import (
    Asset,
    Job,
    JobError,
    JobOutput,
    JobStatus,
    Request,
    TaskKind,
)
from imagemill.errors import Conflict, ImagemillError, LeaseLost, NotFound
from imagemill.ids import new_id
from imagemill.jobs.states import NewEvent, append_events, transition

EventSink = Callable[[list[dict[str, Any]]], None]
Q, R, S, F, C = (
    JobStatus.QUEUED,
    JobStatus.RUNNING,
    JobStatus.SUCCEEDED,
    JobStatus.FAILED,
    JobStatus.CANCELED,
)


@dataclass(frozen=True, slots=True)
class JobDraft:
    """A job about to be inserted. ``cached_from`` makes it a finished cache hit."""

    id: str
    owner_id: str
    request: Request
    max_attempts: int
    group_id: str | None = None
    cache_key: str | None = None
    idempotency_key: str | None = None
    cached_from: Job | None = None


@dataclass(frozen=True, slots=True)
class StoredOutput:
    """An output already in blob storage, ready to be recorded with the job's completion."""

    sha256: str
    content_type: str
    width: int | None
    height: int | None
    byte_size: int
    storage_key: str
    model: str
    fallback: bool
    seed: int | None
    requested_width: int | None
    requested_height: int | None
    cost_usd: float
    revised_prompt: str | None


@dataclass(frozen=True, slots=True)
class JobFilter:
    status: JobStatus | None = None
    model: str | None = None
    kind: TaskKind | None = None
    text: str | None = None
    group_id: str | None = None
    before: str | None = None  # cursor: ids sort by creation time


class Repository:
    def __init__(self, db: Database, on_events: EventSink | None = None) -> None:
        self.db = db
        self.on_events = on_events

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[tuple[AsyncConnection, list[dict[str, Any]]]]:
        published: list[dict[str, Any]] = []
        async with self.db.write() as conn:
            yield conn, published
        if published and self.on_events is not None:
            self.on_events(published)

    # -- submit ---------------------------------------------------------------------------

    async def create_jobs(self, drafts: Sequence[JobDraft], now: datetime) -> list[Job]:
        """Insert jobs (one comparison group at most) in one transaction."""
        created: list[Job] = []
        try:
            async with self._write() as (conn, published):
                for draft in drafts:
                    job, stored = await self._insert_job(conn, draft, now)
                    created.append(job)
                    published += stored
        except IntegrityError as exc:
            # Only the (owner, idempotency key) constraint can clash: someone won the race.
            key = drafts[0].idempotency_key
            if key is None:
                raise
            raise Conflict("a request with this Idempotency-Key is being created") from exc
        return created

    async def _insert_job(
        self, conn: AsyncConnection, draft: JobDraft, now: datetime
    ) -> tuple[Job, list[dict[str, Any]]]:
        request = draft.request
        source = draft.cached_from
        status = S if source else Q
        new_events: list[NewEvent] = [("status", {"status": status.value, "attempt": 0})]
        if source:
            new_events += [
                ("output", _output_event(o.index, o.asset_id, o)) for o in source.outputs
            ]
            new_events.append(("done", {"status": S.value, "cached": True}))
        row = {
            "id": draft.id,
            "owner_id": draft.owner_id,
            "group_id": draft.group_id,
            "kind": request.kind.value,
            "model": request.model,
            "status": status.value,
            "request": request.model_dump(mode="json"),
            "prompt": request.prompt,
            "progress": 1.0 if source else 0.0,
            "attempt": 0,
            "max_attempts": draft.max_attempts,
            "run_after": now,
            "cache_key": draft.cache_key,
            "cached": source is not None,
            "cost_usd": 0.0,
            "idempotency_key": draft.idempotency_key,
            "event_seq": len(new_events),
            "created_at": now,
            "started_at": now if source else None,
            "finished_at": now if source else None,
            "updated_at": now,
        }
        inserted = (await conn.execute(jobs.insert().returning(*jobs.c), [row])).one()
        job_outputs = (
            [replace(o, cached=True, cost_usd=0.0) for o in source.outputs] if source else []
        )
        if source:
            await conn.execute(
                outputs.insert(),
                [
                    {
                        "job_id": draft.id,
                        "index": o.index,
                        "asset_id": o.asset_id,
                        "model": o.model,
                        "fallback": o.fallback,
                        "cached": True,
                        "seed": o.seed,
                        "requested_width": o.requested_width,
                        "requested_height": o.requested_height,
                        "cost_usd": 0.0,
                        "revised_prompt": o.revised_prompt,
                        "created_at": now,
                    }
                    for o in source.outputs
                ],
            )
        return _job_from_row(inserted, job_outputs), await append_events(
            conn, inserted, new_events, now
        )

    async def find_idempotent(self, owner_id: str, key: str) -> list[Job]:
        """The jobs an earlier request with this Idempotency-Key created (a whole group)."""
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(jobs.c.id, jobs.c.group_id).where(
                        jobs.c.owner_id == owner_id, jobs.c.idempotency_key == key
                    )
                )
            ).one_or_none()
            if row is None:
                return []
            if row.group_id is None:
                ids = [row.id]
            else:
                query = select(jobs.c.id).where(jobs.c.group_id == row.group_id).order_by(jobs.c.id)
                ids = list((await conn.execute(query)).scalars())
        return await self.get_jobs(ids)

    async def cached_job(self, owner_id: str, cache_key: str) -> Job | None:
        async with self.db.read() as conn:
            job_id = (
                await conn.execute(
                    select(cache_entries.c.job_id)
                    .join(jobs, jobs.c.id == cache_entries.c.job_id)
                    .where(
                        cache_entries.c.owner_id == owner_id,
                        cache_entries.c.cache_key == cache_key,
                        jobs.c.status == S.value,
                    )
                )
            ).scalar_one_or_none()
        return (await self.get_jobs([job_id]))[0] if job_id else None

    # -- reading --------------------------------------------------------------------------

    async def get_job(self, job_id: str, owner_id: str | None = None) -> Job:
        """The job, with its outputs; ``NotFound`` also when another owner has it."""
        found = await self.get_jobs([job_id])
        if not found or (owner_id is not None and found[0].owner_id != owner_id):
            raise NotFound(f"no job {job_id!r}")
        return found[0]

    async def get_jobs(self, job_ids: Sequence[str]) -> list[Job]:
        """Jobs in the order asked for (missing ids are left out)."""
        if not job_ids:
            return []
        async with self.db.read() as conn:
            rows = (await conn.execute(select(jobs).where(jobs.c.id.in_(job_ids)))).all()
            by_job = await _load_outputs(conn, [r.id for r in rows])
        found = {row.id: _job_from_row(row, by_job.get(row.id, [])) for row in rows}
        return [found[i] for i in job_ids if i in found]

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
        if where.text:
            pattern = "%" + where.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            conditions.append(jobs.c.prompt.ilike(pattern + "%", escape="\\"))
        if where.before:
            conditions.append(jobs.c.id < where.before)
        query = select(jobs).where(*conditions).order_by(jobs.c.id.desc()).limit(limit)
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
            by_job = await _load_outputs(conn, [r.id for r in rows])
        return [_job_from_row(row, by_job.get(row.id, [])) for row in rows]

    async def events_after(self, job_id: str, after_seq: int) -> list[dict[str, Any]]:
        query = (
            select(events)
            .where(events.c.job_id == job_id, events.c.seq > after_seq)
            .order_by(events.c.seq)
        )
        async with self.db.read() as conn:
            return [dict(r._mapping) for r in (await conn.execute(query)).all()]

    async def get_asset(self, asset_id: str, owner_id: str | None = None) -> Asset:
        async with self.db.read() as conn:
            row = (await conn.execute(select(assets).where(assets.c.id == asset_id))).one_or_none()
        if row is None or (owner_id is not None and row.owner_id != owner_id):
            raise NotFound(f"no asset {asset_id!r}")
        return Asset(**row._mapping)

    async def set_thumbnail(self, asset_id: str, key: str) -> None:
        async with self._write() as (conn, _):
            await conn.execute(
                update(assets).where(assets.c.id == asset_id).values(thumbnail_key=key)
            )

    # -- running --------------------------------------------------------------------------

    async def claim(
        self, job_id: str, worker: str, lease_until: datetime, now: datetime
    ) -> Job | None:
        """Take the job for ``worker``: queued and due, or running on an expired lease."""
        due = or_(
            and_(jobs.c.status == Q.value, jobs.c.run_after <= now),
            and_(
                jobs.c.status == R.value,
                jobs.c.lease_expires_at < now,
                jobs.c.attempt < jobs.c.max_attempts,
            ),
        )
        async with self._write() as (conn, published):
            changed = await transition(
                conn,
                job_id,
                sources=[Q, R],
                target=R,
                now=now,
                where=due,
                values={
                    "lease_owner": worker,
                    "lease_expires_at": lease_until,
                    "attempt": jobs.c.attempt + 1,
                    "started_at": func.coalesce(jobs.c.started_at, now),
                },
                new_events=[("status", lambda row: {"status": R.value, "attempt": row.attempt})],
            )
            if changed is None:
                return None
            row, stored = changed
            published += stored
        return _job_from_row(row, [])

    async def heartbeat(self, job_id: str, worker: str, lease_until: datetime) -> bool:
        """Extend the lease; ``False`` means the worker no longer holds the job."""
        async with self._write() as (conn, _):
            result = await conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.status == R.value, jobs.c.lease_owner == worker)
                .values(lease_expires_at=lease_until)
            )
        return bool(result.rowcount)

    async def record_event(
        self, job_id: str, worker: str, kind: str, data: dict[str, Any], now: datetime
    ) -> None:
        """Append a ``progress``, ``preview`` or ``log`` event of a running job (fenced)."""
        values: dict[str, Any] = {"event_seq": jobs.c.event_seq + 1, "updated_at": now}
        if kind == "progress":
            values.update(progress=data["progress"], progress_message=data.get("message"))
        async with self._write() as (conn, published):
            row = (
                await conn.execute(
                    update(jobs)
                    .where(
                        jobs.c.id == job_id, jobs.c.status == R.value, jobs.c.lease_owner == worker
                    )
                    .values(**values)
                    .returning(jobs.c.id, jobs.c.owner_id, jobs.c.event_seq)
                )
            ).one_or_none()
            if row is None:
                raise LeaseLost(f"job {job_id} is no longer held by this worker")
            published += await append_events(conn, row, [(kind, data)], now)

    async def save_provider_ref(self, job_id: str, worker: str, ref: str) -> None:
        async with self._write() as (conn, _):
            result = await conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.status == R.value, jobs.c.lease_owner == worker)
                .values(provider_ref=ref)
            )
        if not result.rowcount:
            raise LeaseLost(f"job {job_id} is no longer held by this worker")

    async def complete(
        self,
        job_id: str,
        worker: str,
        stored: Sequence[StoredOutput],
        cache_key: str | None,
        now: datetime,
    ) -> Job | None:
        """Record outputs and mark the job succeeded, fenced on the lease. ``None``: lease lost."""
        try:
            async with self._write() as (conn, published):
                owner_id = (
                    await conn.execute(select(jobs.c.owner_id).where(jobs.c.id == job_id))
                ).scalar_one()
                asset_ids = await self._upsert_assets(conn, owner_id, stored, now)
                output_rows = [
                    _output_row(job_id, index, asset_ids[o.sha256], o, now)
                    for index, o in enumerate(stored)
                ]
                changed = await transition(
                    conn,
                    job_id,
                    sources=[R],
                    target=S,
                    now=now,
                    lease_owner=worker,
                    values={
                        "progress": 1.0,
                        "finished_at": now,
                        "cost_usd": sum(o.cost_usd for o in stored),
                        "lease_expires_at": None,
                    },
                    new_events=[
                        *(
                            ("output", _output_event(r["index"], r["asset_id"], o))
                            for r, o in zip(output_rows, stored, strict=True)
                        ),
                        ("status", {"status": S.value}),
                        ("done", {"status": S.value}),
                    ],
                )
                if changed is None:
                    raise LeaseLost(job_id)  # roll the asset rows back too
                await conn.execute(outputs.insert(), output_rows)
                cacheable = cache_key and not any(o.fallback for o in stored)
                if cacheable:
                    await conn.execute(
                        self._insert_ignore(cache_entries),
                        [
                            {
                                "owner_id": owner_id,
                                "cache_key": cache_key,
                                "job_id": job_id,
                                "created_at": now,
                            }
                        ],
                    )
                published += changed[1]
        except LeaseLost:
            return None
        return _job_from_row(
            changed[0],
            [
                JobOutput(
                    index=r["index"],
                    asset_id=r["asset_id"],
                    model=o.model,
                    fallback=o.fallback,
                    cached=False,
                    seed=o.seed,
                    width=o.width,
                    height=o.height,
                    requested_width=o.requested_width,
                    requested_height=o.requested_height,
                    content_type=o.content_type,
                    byte_size=o.byte_size,
                    sha256=o.sha256,
                    cost_usd=o.cost_usd,
                    revised_prompt=o.revised_prompt,
                )
                for r, o in zip(output_rows, stored, strict=True)
            ],
        )

    async def _upsert_assets(
        self, conn: AsyncConnection, owner_id: str, stored: Sequence[StoredOutput], now: datetime
    ) -> dict[str, str]:
        """Asset ids by sha256, inserting rows for bytes this owner has not stored before."""
        shas = {o.sha256: o for o in stored}
        query = select(assets.c.sha256, assets.c.id).where(
            assets.c.owner_id == owner_id, assets.c.sha256.in_(list(shas))
        )
        await conn.execute(
            self._insert_ignore(assets),
            [
                {
                    "id": new_id("ast"),
                    "owner_id": owner_id,
                    "sha256": o.sha256,
                    "content_type": o.content_type,
                    "width": o.width,
                    "height": o.height,
                    "byte_size": o.byte_size,
                    "storage_key": o.storage_key,
                    "created_at": now,
                }
                for o in shas.values()
            ],
        )
        return {r.sha256: r.id for r in (await conn.execute(query)).all()}

    async def retry_later(
        self, job_id: str, worker: str, error: ImagemillError, run_after: datetime, now: datetime
    ) -> bool:
        """running → queued after a retryable failure, due again at ``run_after``."""
        async with self._write() as (conn, published):
            changed = await transition(
                conn,
                job_id,
                sources=[R],
                target=Q,
                now=now,
                lease_owner=worker,
                values={
                    **_error_values(error),
                    "run_after": run_after,
                    "lease_owner": None,
                    "lease_expires_at": None,
                },
                new_events=[
                    ("error", {**error.to_dict(), "will_retry": True}),
                    ("status", {"status": Q.value, "retry_at": run_after.isoformat()}),
                ],
            )
            if changed:
                published += changed[1]
        return changed is not None

    async def fail(
        self, job_id: str, error: ImagemillError, now: datetime, worker: str | None = None
    ) -> bool:
        """→ failed with ``error``; fenced on ``worker`` when given."""
        async with self._write() as (conn, published):
            changed = await transition(
                conn,
                job_id,
                sources=[R] if worker else [Q, R],
                target=F,
                now=now,
                lease_owner=worker,
                values={**_error_values(error), "finished_at": now, "lease_expires_at": None},
                new_events=[
                    ("error", {**error.to_dict(), "will_retry": False}),
                    ("status", {"status": F.value}),
                    ("done", {"status": F.value}),
                ],
            )
            if changed:
                published += changed[1]
        return changed is not None

    async def release(self, job_id: str, worker: str, now: datetime) -> bool:
        """Give a running job back to the queue without spending an attempt (shutdown)."""
        async with self._write() as (conn, published):
            changed = await transition(
                conn,
                job_id,
                sources=[R],
                target=Q,
                now=now,
                lease_owner=worker,
                values={
                    "attempt": jobs.c.attempt - 1,
                    "run_after": now,
                    "lease_owner": None,
                    "lease_expires_at": None,
                },
                new_events=[("status", {"status": Q.value, "released": True})],
            )
            if changed:
                published += changed[1]
        return changed is not None

    async def cancel(self, job_id: str, owner_id: str, now: datetime) -> Job:
        async with self._write() as (conn, published):
            changed = await transition(
                conn,
                job_id,
                sources=[Q, R],
                target=C,
                now=now,
                where=jobs.c.owner_id == owner_id,
                values={"finished_at": now, "lease_expires_at": None},
                new_events=[("status", {"status": C.value}), ("done", {"status": C.value})],
            )
            if changed:
                published += changed[1]
        job = await self.get_job(job_id, owner_id)
        if changed is None:
            raise Conflict(
                f"job {job_id} is already {job.status}; only queued or running jobs can be canceled"
            )
        return job

    async def job_status(self, job_id: str) -> tuple[JobStatus, str | None] | None:
        """Status and lease owner, cheaply (the heartbeat's and the waiters' check)."""
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(jobs.c.status, jobs.c.lease_owner).where(jobs.c.id == job_id)
                )
            ).one_or_none()
        return (JobStatus(row.status), row.lease_owner) if row else None

    # -- sweeping -------------------------------------------------------------------------

    async def stale_jobs(self, now: datetime, queued_before: datetime, limit: int) -> list[Any]:
        """Queued jobs due since ``queued_before`` and running jobs whose lease expired."""
        query = (
            select(jobs.c.id, jobs.c.status, jobs.c.attempt, jobs.c.max_attempts)
            .where(
                or_(
                    and_(jobs.c.status == Q.value, jobs.c.run_after <= queued_before),
                    and_(jobs.c.status == R.value, jobs.c.lease_expires_at < now),
                )
            )
            .order_by(jobs.c.run_after)
            .limit(limit)
        )
        async with self.db.read() as conn:
            return list((await conn.execute(query)).all())

    async def expire(self, job_id: str, error: ImagemillError, now: datetime) -> bool:
        """Fail a running job whose lease expired with no attempts left."""
        async with self._write() as (conn, published):
            changed = await transition(
                conn,
                job_id,
                sources=[R],
                target=F,
                now=now,
                where=and_(jobs.c.lease_expires_at < now, jobs.c.attempt >= jobs.c.max_attempts),
                values={**_error_values(error), "finished_at": now, "lease_expires_at": None},
                new_events=[
                    ("error", {**error.to_dict(), "will_retry": False}),
                    ("status", {"status": F.value}),
                    ("done", {"status": F.value}),
                ],
            )
            if changed:
                published += changed[1]
        return changed is not None

    def _insert_ignore(self, table: Any) -> Any:
        dialect = sqlite if self.db.is_sqlite else postgresql
        return dialect.insert(table).on_conflict_do_nothing()


# -- mapping ------------------------------------------------------------------------------


async def _load_outputs(conn: AsyncConnection, job_ids: list[str]) -> dict[str, list[JobOutput]]:
    if not job_ids:
        return {}
    query = (
        select(
            outputs,
            assets.c.width,
            assets.c.height,
            assets.c.content_type,
            assets.c.byte_size,
            assets.c.sha256,
        )
        .join(assets, assets.c.id == outputs.c.asset_id)
        .where(outputs.c.job_id.in_(job_ids))
        .order_by(outputs.c.job_id, outputs.c.index)
    )
    by_job: dict[str, list[JobOutput]] = {}
    for r in (await conn.execute(query)).all():
        by_job.setdefault(r.job_id, []).append(
            JobOutput(
                index=r._mapping["index"],
                asset_id=r.asset_id,
                model=r.model,
                fallback=r.fallback,
                cached=r.cached,
                seed=r.seed,
                width=r.width,
                height=r.height,
                requested_width=r.requested_width,
                requested_height=r.requested_height,
                content_type=r.content_type,
                byte_size=r.byte_size,
                sha256=r.sha256,
                cost_usd=r.cost_usd,
                revised_prompt=r.revised_prompt,
            )
        )
    return by_job


def _job_from_row(row: Row[Any], job_outputs: list[JobOutput]) -> Job:
    error = None
    if row.error_code and row.status != S.value:
        error = JobError(row.error_code, row.error_message or "", bool(row.error_retryable))
    return Job(
        id=row.id,
        owner_id=row.owner_id,
        status=JobStatus(row.status),
        kind=TaskKind(row.kind),
        model=row.model,
        request=Request.model_validate(row.request),
        group_id=row.group_id,
        progress=row.progress,
        progress_message=row.progress_message,
        attempt=row.attempt,
        max_attempts=row.max_attempts,
        error=error,
        cached=row.cached,
        cost_usd=row.cost_usd,
        provider_ref=row.provider_ref,
        cache_key=row.cache_key,
        lease_owner=row.lease_owner,
        lease_expires_at=row.lease_expires_at,
        run_after=row.run_after,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        outputs=job_outputs,
    )


def _error_values(error: ImagemillError) -> dict[str, Any]:
    return {
        "error_code": error.code,
        "error_message": error.message,
        "error_retryable": error.retryable,
    }


def _output_row(
    job_id: str, index: int, asset_id: str, o: StoredOutput, now: datetime
) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "index": index,
        "asset_id": asset_id,
        "model": o.model,
        "fallback": o.fallback,
        "cached": False,
        "seed": o.seed,
        "requested_width": o.requested_width,
        "requested_height": o.requested_height,
        "cost_usd": o.cost_usd,
        "revised_prompt": o.revised_prompt,
        "created_at": now,
    }


def _output_event(index: int, asset_id: str, o: StoredOutput | JobOutput) -> dict[str, Any]:
    return {
        "index": index,
        "asset_id": asset_id,
        "model": o.model,
        "fallback": o.fallback,
        "width": o.width,
        "height": o.height,
        "content_type": o.content_type,
    }
