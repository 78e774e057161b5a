"""Every change to jobs, outputs, assets and events (the reads are in ``db/queries.py``).

Each public method is one transaction, written as a synchronous function of a
``Connection`` that ``Database`` runs as a unit (see ``db/engine.py``). Events written by
a transaction are handed to ``on_events`` after it commits, so live subscribers never
see an event that a rollback later erased. The hot statements are built once, with
bound parameters: building SQLAlchemy expressions costs more than running them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import JSON, Connection, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from imagemill.db import batch_completion, budgets
from imagemill.db.appending import Appending, NewEvent
from imagemill.db.deletion import delete_finished_job
from imagemill.db.engine import Database
from imagemill.db.prepared import Prepared
from imagemill.db.queries import Queries, cached_job_of
from imagemill.db.records import BatchDraft, JobDraft, Requeue, StoredBlob, StoredOutput
from imagemill.db.rows import (
    job_from_row,
    metadata_rows,
    output_event,
    output_row,
    stored_job_output,
)
from imagemill.db.tables import (
    UTCDateTime,
    assets,
    batches,
    cache_entries,
    job_metadata,
    jobs,
    outputs,
)
from imagemill.domain import Asset, Job, JobStatus
from imagemill.errors import Conflict, ImagemillError, LeaseLost
from imagemill.events.fanout import CHANNEL, NUDGES, notification, nudge_notification
from imagemill.ids import new_id
from imagemill.jobs import states
from imagemill.jobs.states import Transition, error_params, transition
from imagemill.spend.budgets import to_micros

T = TypeVar("T")
EventSink = Callable[[list[dict[str, Any]]], None]
Q, R, S, F, C = (
    JobStatus.QUEUED,
    JobStatus.RUNNING,
    JobStatus.SUCCEEDED,
    JobStatus.FAILED,
    JobStatus.CANCELED,
)

_INSERT_JOB = Prepared(jobs.insert().returning(*jobs.c))
_INSERT_OUTPUTS = Prepared(outputs.insert())
_OWNER_OF_JOB = Prepared(select(jobs.c.owner_id).where(jobs.c.id == bindparam("job_id")))
_HELD = (jobs.c.id == bindparam("job_id")) & (jobs.c.status == R.value)
_HELD_BY = _HELD & (jobs.c.lease_owner == bindparam("worker"))
_HEARTBEAT = (
    update(jobs)
    .where(
        jobs.c.id.in_(bindparam("job_ids", expanding=True)),
        jobs.c.status == R.value,
        jobs.c.lease_owner == bindparam("worker"),
    )
    .values(lease_expires_at=bindparam("lease_until", type_=UTCDateTime()))
    .returning(jobs.c.id)
)
# What ``append_events`` needs of a job row.
_EVENT_ROW = (
    jobs.c.id,
    jobs.c.owner_id,
    jobs.c.event_seq,
    jobs.c.webhook_url,
    jobs.c.webhook_events,
)
# An event of a running job (fenced on its lease), and one of its progress.
_RECORD = (
    update(jobs)
    .where(_HELD_BY)
    .values(event_seq=jobs.c.event_seq + 1, updated_at=bindparam("now", type_=UTCDateTime()))
    .returning(*_EVENT_ROW)
)
_RECORD_PROGRESS = Prepared(
    _RECORD.values(progress=bindparam("progress"), progress_message=bindparam("message"))
)
log = logging.getLogger(__name__)
HEARTBEAT_CHUNK = 500  # ids per statement (SQLite takes a few thousand parameters)
_SAVE_PROVIDER_REF = update(jobs).where(_HELD_BY).values(provider_ref=bindparam("ref"))
_NOTIFY = select(func.pg_notify(CHANNEL, bindparam("payload")))
_NUDGE = select(func.pg_notify(NUDGES, bindparam("payload")))


class Repository(Queries):
    def __init__(
        self,
        db: Database,
        on_events: EventSink | None = None,
        origin: str | None = None,
        observe: Callable[[Appending], object] | None = None,
    ) -> None:
        """``origin`` names this process in the notifications other processes get of its
        events (PostgreSQL; see ``events/fanout.py``); ``observe`` gets what each of its
        transactions appended, with the jobs' rows, once committed (the metrics)."""
        super().__init__(db)
        self.on_events = on_events
        self.observe = observe
        self.origin = origin
        # Known bytes keep their row: the no-op update only makes RETURNING report it.
        upsert = db.insert(assets)
        self._upsert_asset = Prepared(
            upsert.on_conflict_do_update(
                index_elements=[assets.c.owner_id, assets.c.sha256],
                set_={"sha256": upsert.excluded.sha256},
            ).returning(assets.c.sha256, assets.c.id)
        )
        self._insert_cache_entry = Prepared(db.insert(cache_entries).on_conflict_do_nothing())

    async def _write(
        self,
        work: Callable[[Connection, Appending], T],
        committed: Callable[[T], object] | None = None,
    ) -> T:
        """Run ``work`` as one write transaction and publish the events it appended.

        The events are stored at the end of the transaction, in their owners' turns
        (``db/appending.py``). Once handed to the database the transaction runs to its end
        even when the caller is canceled, and its events are published all the same,
        before the caller resumes; ``committed`` gets the result first.
        """

        def run(conn: Connection) -> tuple[T, Appending]:
            published = Appending()  # fresh on every run: a group commit may retry
            result = work(conn, published)
            published.store(conn, origin=self.origin)  # notified when this commits, if it does
            return result, published

        outcome = self.db.write(run)
        outcome.add_done_callback(functools.partial(self._publish, committed))
        result, _ = await asyncio.shield(outcome)
        return result

    async def nudge(self, job_id: str) -> None:
        """Tell the other processes on this PostgreSQL database that a provider called
        back about ``job_id`` (``events/fanout.py``); nothing on SQLite (one process)."""
        if self.origin is None:
            return
        payload = {"payload": nudge_notification(self.origin, job_id)}
        await self.db.write(lambda conn: conn.execute(_NUDGE, payload))

    def _publish(
        self,
        committed: Callable[[Any], object] | None,
        outcome: asyncio.Future[tuple[Any, Appending]],
    ) -> None:
        if outcome.cancelled() or outcome.exception() is not None:
            return
        result, published = outcome.result()
        if committed is not None:
            committed(result)
        if published and self.on_events is not None:
            self.on_events(published.events)
        if published and self.observe is not None:
            try:
                self.observe(published)
            except Exception:  # counting and logging must never cost a job its events
                log.exception("observing a transaction's events failed")

    async def _transition(
        self,
        change: Transition,
        job_id: str,
        *,
        now: datetime,
        new_events: Sequence[NewEvent],
        lease_owner: str | None = None,
        params: dict[str, Any] | None = None,
    ) -> bool:
        """One ``transition()`` as its own transaction; whether it happened."""

        def work(conn: Connection, published: Appending) -> bool:
            row = transition(
                conn,
                change,
                job_id,
                now=now,
                published=published,
                lease_owner=lease_owner,
                params=params,
                new_events=new_events,
            )
            return row is not None

        return await self._write(work)

    # -- submit ---------------------------------------------------------------------------

    async def create_jobs(
        self,
        drafts: Sequence[JobDraft],
        now: datetime,
        *,
        in_flight: budgets.InFlightLimit | None = None,
    ) -> list[Job]:
        """Insert jobs (one comparison group at most) in one transaction.

        A draft with ``reuse_cached`` whose cache key has a succeeded job becomes a
        cache hit: born succeeded, with that job's outputs. ``in_flight``: the key's
        limit on jobs queued or running, checked with these counted
        (``TooManyRequests``: none is recorded).
        """

        def work(conn: Connection, published: Appending) -> list[Job]:
            budgets.lock_key(conn, in_flight)
            created = _insert_drafts(conn, drafts, now, published)
            budgets.check_in_flight(conn, in_flight)
            return created

        try:
            return await self._write(work)
        except IntegrityError as exc:
            # Only the (owner, idempotency key) constraint can clash: someone won the race.
            if drafts[0].idempotency_key is None:
                raise
            raise Conflict("a request with this Idempotency-Key is being created") from exc

    async def create_batch(
        self,
        batch: BatchDraft,
        drafts: Sequence[JobDraft],
        now: datetime,
        *,
        in_flight: budgets.InFlightLimit | None = None,
    ) -> list[Job]:
        """Insert a batch and its items (``drafts``, in order) in one transaction; if every
        item is a cache hit, the batch is complete at once (``db/batch_completion.py``)."""
        row = {
            "id": batch.id,
            "owner_id": batch.owner_id,
            "concurrency": batch.concurrency,
            "total": len(drafts),
            "metadata": batch.metadata,
            "progress": 0.0,
            "created_at": now,
            "webhook_url": batch.webhook_url,
            "deadline_seconds": batch.deadline_seconds,
            "completions": 0,
        }

        def work(conn: Connection, published: Appending) -> list[Job]:
            budgets.lock_key(conn, in_flight)
            conn.execute(_INSERT_BATCH, [row])
            items = _insert_drafts(conn, drafts, now, published)
            budgets.check_in_flight(conn, in_flight)
            if all(item.status.terminal for item in items):
                batch_completion.item_ended(conn, batch.id, now, published)
            return items

        return await self._write(work)

    async def raise_batch_progress(self, batch_id: str, progress: float) -> None:
        """Record ``progress`` as shown, unless a higher one was (it never goes back)."""
        raised = (
            update(batches)
            .where(batches.c.id == batch_id, batches.c.progress < progress)
            .values(progress=progress)
        )
        await self._write(lambda conn, _: conn.execute(raised))

    # -- reading --------------------------------------------------------------------------

    async def add_asset(
        self,
        owner_id: str,
        blob: StoredBlob,
        now: datetime,
    ) -> Asset:
        """The owner's asset for these bytes: an upload, or one they already had."""

        def work(conn: Connection, _: Appending) -> Asset:
            row = {
                "id": new_id("ast"),
                "owner_id": owner_id,
                "sha256": blob.sha256,
                "content_type": blob.content_type,
                "width": blob.width,
                "height": blob.height,
                "byte_size": blob.byte_size,
                "storage_key": blob.storage_key,
                "thumbnail_key": blob.thumbnail_key,
                "created_at": now,
            }
            [(_, asset_id)] = self._upsert_asset.rows(conn, row)
            if blob.thumbnail_key:  # the same bytes uploaded before thumbnails were made here
                conn.execute(
                    update(assets)
                    .where(assets.c.id == asset_id, assets.c.thumbnail_key.is_(None))
                    .values(thumbnail_key=blob.thumbnail_key)
                )
            found = conn.execute(select(assets).where(assets.c.id == asset_id)).one()
            return Asset(**found._mapping)

        return await self._write(work)

    async def set_thumbnail(self, asset_id: str, key: str) -> None:
        statement = update(assets).where(assets.c.id == asset_id).values(thumbnail_key=key)
        await self._write(lambda conn, _: conn.execute(statement))

    # -- running --------------------------------------------------------------------------

    async def claim(
        self, job_id: str, worker: str, lease_until: datetime, now: datetime
    ) -> Job | None:
        """Take the job for ``worker``: queued and due, or running on an expired lease."""

        def work(conn: Connection, published: Appending) -> Job | None:
            row = transition(
                conn,
                states.CLAIM,
                job_id,
                now=now,
                published=published,
                params={"worker": worker, "lease_until": lease_until},
                new_events=[
                    (
                        "status",
                        lambda row: {
                            "status": R.value,
                            "attempt": row.attempt,
                            "max_attempts": row.max_attempts,
                        },
                    )
                ],
            )
            return job_from_row(row, []) if row is not None else None

        return await self._write(work)

    async def heartbeat(
        self, job_ids: Collection[str], worker: str, lease_until: datetime
    ) -> set[str]:
        """Extend the leases ``worker`` holds on ``job_ids``, all in one transaction (one
        worker's heartbeat covers every job it runs); the ids it still holds. One missing
        is a job the worker lost (canceled, finished, or claimed by another after a stall)."""
        ids = list(job_ids)

        def work(conn: Connection, _: Appending) -> set[str]:
            held: set[str] = set()
            for start in range(0, len(ids), HEARTBEAT_CHUNK):
                chunk = ids[start : start + HEARTBEAT_CHUNK]
                values = {"job_ids": chunk, "worker": worker, "lease_until": lease_until}
                held.update(conn.execute(_HEARTBEAT, values).scalars())
            return held

        return await self._write(work) if ids else set()

    async def record_event(
        self,
        job_id: str,
        worker: str,
        kind: str,
        data: dict[str, Any],
        now: datetime,
        *,
        also: dict[str, Any] | None = None,
    ) -> None:
        """Append a ``progress``, ``preview`` or ``log`` event of a running job (fenced),
        setting the columns in ``also`` with it."""
        statement = _RECORD_PROGRESS.statement if kind == "progress" else _RECORD
        if also:
            statement = statement.values(**also)
        params = {"job_id": job_id, "worker": worker, "now": now}
        if kind == "progress":
            params.update(progress=data["progress"], message=data.get("message"))

        def work(conn: Connection, published: Appending) -> None:
            row = conn.execute(statement, params).one_or_none()
            if row is None:
                raise LeaseLost(f"job {job_id} is no longer held by this worker")
            published.add(row, [(kind, data)], now)

        await self._write(work)

    async def record_progress(
        self, reports: Sequence[tuple[str, str, dict[str, Any]]], now: datetime
    ) -> None:
        """Store the latest progress of several running jobs, ``(job_id, worker, data)``
        each, in one transaction: a ``progress`` event and the job's columns per job still
        held by its worker (one that is not is skipped: its heartbeat tells the worker)."""

        def work(conn: Connection, published: Appending) -> None:
            for job_id, worker, data in reports:
                params = {
                    "job_id": job_id,
                    "worker": worker,
                    "now": now,
                    "progress": data["progress"],
                    "message": data.get("message"),
                }
                row = _RECORD_PROGRESS.one_or_none(conn, params)
                if row is not None:
                    published.add(row, [("progress", data)], now)

        if reports:
            await self._write(work)

    async def announce(self, events: Sequence[dict[str, Any]]) -> None:
        """Tell the other processes on this PostgreSQL database of events that are not
        stored (live progress, ``jobs/progress.py``); nothing on SQLite (one process)."""
        if self.origin is None or not events:
            return
        payloads = [notification(self.origin, list(chunk)) for chunk in _chunks(events, 20)]

        def work(conn: Connection, _: Appending) -> None:
            for payload in payloads:
                conn.execute(_NOTIFY, {"payload": payload})

        await self._write(work)

    async def save_enhanced_prompt(
        self, job_id: str, worker: str, prompt: str, model: str, cost_usd: float, now: datetime
    ) -> None:
        """Record the prompt the request's was enhanced into by ``model``, and what that
        cost, the job's cost so far (fenced; ``LeaseLost`` if the job moved on), with a
        ``log`` event showing it."""
        also = {
            "enhanced_prompt": prompt,
            "enhance_model": model,
            "enhance_cost_usd": cost_usd,
            "cost_usd": cost_usd,  # paid, whatever becomes of the render
        }
        event = {"message": "prompt enhanced", "enhanced_prompt": prompt}
        statement = _RECORD.values(**also).returning(jobs.c.reservation)
        params = {"job_id": job_id, "worker": worker, "now": now}

        def work(conn: Connection, published: Appending) -> None:
            row = conn.execute(statement, params).one_or_none()
            if row is None:
                raise LeaseLost(f"job {job_id} is no longer held by this worker")
            published.add(row, [("log", event)], now)
            if row.reservation:  # paid now: spent now, from the job's hold
                left = budgets.charge(conn, row.reservation, to_micros(cost_usd))
                conn.execute(_SET_RESERVATION, {"job_id": job_id, "reservation": left})

        await self._write(work)

    async def save_provider_ref(self, job_id: str, worker: str, ref: str) -> None:
        values = {"job_id": job_id, "worker": worker, "ref": ref}
        saved = await self._write(lambda conn, _: conn.execute(_SAVE_PROVIDER_REF, values).rowcount)
        if not saved:
            raise LeaseLost(f"job {job_id} is no longer held by this worker")

    async def complete(
        self,
        job_id: str,
        worker: str,
        stored: Sequence[StoredOutput],
        cache_key: str | None,
        now: datetime,
        *,
        extra_cost: float = 0.0,
        owner_id: str | None = None,
        committed: Callable[[Job], object] | None = None,
    ) -> Job | None:
        """Record outputs and mark the job succeeded, fenced on the lease. ``None``: lease
        lost. ``extra_cost``: what the job cost besides its outputs (enhancing its prompt).
        ``owner_id``: the job's owner, where the caller knows it (one statement less).
        ``committed``: given the succeeded job before its events are published."""

        def work(conn: Connection, published: Appending) -> Job:
            owner = owner_id or _OWNER_OF_JOB.one(conn, {"job_id": job_id}).owner_id
            asset_ids = self._upsert_assets(conn, owner, stored, now)
            job_outputs = [
                stored_job_output(index, asset_ids[o.sha256], o) for index, o in enumerate(stored)
            ]
            row = transition(
                conn,
                states.SUCCEED,
                job_id,
                now=now,
                published=published,
                lease_owner=worker,
                params={"cost_usd": sum(o.cost_usd for o in stored) + extra_cost},
                new_events=[
                    *(("output", output_event(o.index, o.asset_id, o)) for o in job_outputs),
                    ("status", {"status": S.value}),
                    ("done", {"status": S.value}),
                ],
            )
            if row is None:
                raise LeaseLost(job_id)  # roll the asset rows back too
            _INSERT_OUTPUTS.many(
                conn, [output_row(job_id, o.index, o.asset_id, o, now) for o in job_outputs]
            )
            if cache_key and not any(o.fallback for o in stored):
                entry = {"owner_id": owner, "cache_key": cache_key, "job_id": job_id}
                self._insert_cache_entry.rows(conn, {**entry, "created_at": now})
            return job_from_row(row, job_outputs)

        try:
            return await self._write(work, committed)
        except LeaseLost:
            return None

    def _upsert_assets(
        self, conn: Connection, owner_id: str, stored: Sequence[StoredOutput], now: datetime
    ) -> dict[str, str]:
        """Asset ids by sha256, inserting rows for bytes this owner has not stored before."""
        shas = {o.sha256: o for o in stored}
        rows = self._upsert_asset.many(
            conn,
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
                    "nsfw_score": o.nsfw_score,
                    "flagged": o.flagged,
                }
                for o in shas.values()
            ],
        )
        return {r.sha256: r.id for r in rows}

    async def retry_later(
        self, job_id: str, worker: str, error: ImagemillError, run_after: datetime, now: datetime
    ) -> bool:
        """running → queued after a retryable failure, due again at ``run_after``."""
        return await self._transition(
            states.RETRY,
            job_id,
            now=now,
            lease_owner=worker,
            params={**error_params(error), "run_after": run_after},
            new_events=[
                ("error", {**error.to_dict(), "will_retry": True}),
                ("status", {"status": Q.value, "retry_at": run_after.isoformat()}),
            ],
        )

    async def fail(
        self, job_id: str, error: ImagemillError, now: datetime, worker: str | None = None
    ) -> bool:
        """→ failed with ``error``; fenced on ``worker`` when given."""
        return await self._transition(
            states.FAIL_ATTEMPT if worker else states.FAIL,
            job_id,
            now=now,
            lease_owner=worker,
            params=error_params(error),
            new_events=_failure_events(error),
        )

    async def release(self, job_id: str, worker: str, now: datetime) -> bool:
        """Give a running job back to the queue without spending an attempt (shutdown)."""
        return await self._transition(
            states.RELEASE,
            job_id,
            now=now,
            lease_owner=worker,
            new_events=[("status", {"status": Q.value, "released": True})],
        )

    async def cancel(self, job_id: str, owner_id: str, now: datetime) -> Job:
        changed = await self._transition(
            states.CANCEL,
            job_id,
            now=now,
            params={"owner_id": owner_id},
            new_events=[("status", {"status": C.value}), ("done", {"status": C.value})],
        )
        job = await self.get_job(job_id, owner_id)
        if not changed:
            raise Conflict(
                f"job {job_id} is already {job.status}; only queued or running jobs can be canceled"
            )
        return job

    async def requeue_all(
        self,
        owner_id: str,
        retries: Sequence[Requeue],
        now: datetime,
        *,
        in_flight: budgets.InFlightLimit | None = None,
    ) -> list[str]:
        """Queue again, in one transaction, each of ``retries`` that is failed or canceled
        (the others are left as they are), each holding its estimate against its budgets:
        all of them, or none (``BudgetExceeded``, ``TooManyRequests``). The ids queued."""

        def work(conn: Connection, published: Appending) -> list[str]:
            budgets.lock_key(conn, in_flight)
            queued = []
            for retry in retries:
                key_id = _KEY_OF_JOB.scalar(conn, {"job_id": retry.job_id})
                scopes = budgets.scopes_of(owner_id, key_id)
                held = budgets.reserve(conn, scopes, retry.reserve_micros, now)
                row = transition(
                    conn,
                    states.REQUEUE,
                    retry.job_id,
                    now=now,
                    published=published,
                    params={
                        "owner_id": owner_id,
                        "deadline_at": retry.deadline_at,
                        "reservation": held,
                    },
                    new_events=[("status", {"status": Q.value, "retried": True})],
                )
                if row is not None:
                    queued.append(retry.job_id)
                elif held is not None:  # not failed or canceled (any more): give it back
                    budgets.settle(conn, held, 0)
            budgets.check_in_flight(conn, in_flight)
            return queued

        return await self._write(work)

    async def delete_job(self, job_id: str, owner_id: str) -> None:
        """Remove a finished job from the owner's history (``db/deletion.py``)."""
        await self._write(lambda conn, _: delete_finished_job(conn, job_id, owner_id))

    # -- sweeping -------------------------------------------------------------------------

    async def fail_overdue(self, job_id: str, error: ImagemillError, now: datetime) -> bool:
        return await self._transition(
            states.OVERDUE,
            job_id,
            now=now,
            params=error_params(error),
            new_events=_failure_events(error),
        )

    async def lapse(self, job_id: str, now: datetime) -> bool:
        """Queue again a running job whose lease expired with attempts left (its worker
        died); ``False`` if it had moved on."""
        return await self._transition(
            states.LAPSE,
            job_id,
            now=now,
            new_events=[("status", {"status": Q.value, "lapsed": True})],
        )

    async def expire(self, job_id: str, error: ImagemillError, now: datetime) -> bool:
        """Fail a running job whose lease expired with no attempts left."""
        return await self._transition(
            states.EXPIRE,
            job_id,
            now=now,
            params=error_params(error),
            new_events=_failure_events(error),
        )


_SET_RESERVATION = (
    update(jobs)
    .where(jobs.c.id == bindparam("job_id"))
    .values(reservation=bindparam("reservation", type_=JSON(none_as_null=True)))
)
_KEY_OF_JOB = Prepared(select(jobs.c.key_id).where(jobs.c.id == bindparam("job_id")))


def _failure_events(error: ImagemillError) -> list[NewEvent]:
    return [
        ("error", {**error.to_dict(), "will_retry": False}),
        ("status", {"status": F.value}),
        ("done", {"status": F.value}),
    ]


_INSERT_METADATA = insert(job_metadata)
_INSERT_BATCH = insert(batches)


def _insert_drafts(
    conn: Connection, drafts: Sequence[JobDraft], now: datetime, published: Appending
) -> list[Job]:
    """Insert jobs; a draft whose cache key has a succeeded job becomes its cache hit, and
    every other holds its estimate against the caller's budgets (``BudgetExceeded``: the
    transaction rolls back, none is inserted)."""
    created = []
    for draft in drafts:
        source = None
        if draft.reuse_cached and draft.cache_key:
            source = cached_job_of(conn, draft.owner_id, draft.cache_key)
        created.append(_insert_job(conn, draft, source, now, published))
    return created


def _insert_job(
    conn: Connection, draft: JobDraft, source: Job | None, now: datetime, published: Appending
) -> Job:
    request = draft.request
    status = S if source else Q
    copied = [replace(o, cached=True, cost_usd=0.0) for o in source.outputs] if source else []
    new_events: list[NewEvent] = [("status", {"status": status.value, "attempt": 0})]
    if source:
        new_events += [("output", output_event(o.index, o.asset_id, o)) for o in copied]
        new_events.append(("done", {"status": S.value, "cached": True}))
    reservation = None
    if source is None:  # a cache hit costs nothing
        scopes = budgets.scopes_of(draft.owner_id, draft.key_id)
        reservation = budgets.reserve(conn, scopes, draft.reserve_micros, now)
    row = {
        "id": draft.id,
        "owner_id": draft.owner_id,
        "key_id": draft.key_id,
        "reservation": reservation,
        "trace_parent": draft.trace_parent,
        "group_id": draft.group_id,
        "batch_id": draft.batch_id,
        "kind": request.kind.value,
        "model": request.model,
        "status": status.value,
        "request": request.model_dump(mode="json"),
        "prompt": request.prompt,
        "progress": 1.0 if source else 0.0,
        "attempt": 0,
        "max_attempts": draft.max_attempts,
        "run_after": now,
        "deadline_at": now + timedelta(seconds=draft.deadline_seconds)
        if draft.deadline_seconds
        else None,
        "cache_key": draft.cache_key,
        "webhook_url": draft.webhook_url,
        "webhook_events": draft.webhook_events,
        "cached": source is not None,
        "cost_usd": 0.0,
        "enhanced_prompt": source.enhanced_prompt if source else None,
        "idempotency_key": draft.idempotency_key,
        "request_fingerprint": draft.fingerprint,
        "event_seq": len(new_events),
        "created_at": now,
        "started_at": now if source else None,
        "finished_at": now if source else None,
        "updated_at": now,
    }
    inserted = _INSERT_JOB.one(conn, row)
    if request.metadata:
        conn.execute(_INSERT_METADATA, metadata_rows(draft.id, draft.owner_id, request.metadata))
    if copied:
        _INSERT_OUTPUTS.many(
            conn, [output_row(draft.id, o.index, o.asset_id, o, now) for o in copied]
        )
    published.add(inserted, new_events, now)
    return job_from_row(inserted, copied)


def _chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[start : start + size] for start in range(0, len(items), size)]
