"""The job repository: claims, leases, fenced completion, assets, cancel, listing, events."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from imagemill.db.queries import JobFilter
from imagemill.db.records import JobDraft, StoredOutput
from imagemill.db.repository import HEARTBEAT_CHUNK
from imagemill.db.tables import assets, jobs, outputs
from imagemill.domain import JobStatus, Request, Submission, TaskKind
from imagemill.errors import Conflict, LeaseLost, NotFound, ProviderUnavailable
from imagemill.ids import new_id
from imagemill.jobs.service import utcnow
from imagemill.jobs.sweeper import WorkerLost
from imagemill.providers.placeholder import render
from imagemill.runtime import Runtime

LEASE = timedelta(seconds=30)


async def _queued(runtime: Runtime, **fields: Any) -> str:
    owner = await runtime.local_owner()
    fields = {"model": "placeholder", "prompt": "p", "size": "32x32", **fields}
    [job] = await runtime.service.submit(owner.id, Submission(**fields))
    return job.id


async def _running(runtime: Runtime, worker: str = "w1", **fields: Any) -> str:
    job_id = await _queued(runtime, **fields)
    now = utcnow()
    assert await runtime.repo.claim(job_id, worker, now + LEASE, now) is not None
    return job_id


async def _stored(runtime: Runtime, seed: int = 1) -> StoredOutput:
    data = render("p", "placeholder", seed, 32, 32)
    sha256, key = await runtime.blobs.put_content(data)
    return StoredOutput(
        sha256=sha256,
        content_type="image/png",
        width=32,
        height=32,
        byte_size=len(data),
        storage_key=key,
        model="placeholder",
        fallback=False,
        seed=seed,
        requested_width=32,
        requested_height=32,
        cost_usd=0.01,
        revised_prompt=None,
    )


async def _count(runtime: Runtime, table: Any) -> int:
    query = select(func.count()).select_from(table)
    return int(await runtime.db.read(lambda conn: conn.execute(query).scalar_one()))


# -- claim ----------------------------------------------------------------------------------


async def test_claim_takes_a_queued_job(stepped: Runtime) -> None:
    job_id = await _queued(stepped)
    now = utcnow()

    job = await stepped.repo.claim(job_id, "w1", now + LEASE, now)

    assert job is not None
    assert (job.status, job.attempt, job.lease_owner) == (JobStatus.RUNNING, 1, "w1")
    assert job.lease_expires_at == now + LEASE
    assert job.started_at == now
    assert await stepped.repo.claim(job_id, "w2", now + LEASE, now) is None


async def test_claim_waits_for_run_after(stepped: Runtime) -> None:
    job_id = await _running(stepped)
    now = utcnow()
    retry_at = now + timedelta(seconds=10)
    assert await stepped.repo.retry_later(job_id, "w1", ProviderUnavailable("x"), retry_at, now)

    assert await stepped.repo.claim(job_id, "w2", now + LEASE, now) is None
    later = retry_at + timedelta(milliseconds=1)
    claimed = await stepped.repo.claim(job_id, "w2", later + LEASE, later)
    assert claimed is not None and claimed.attempt == 2


async def test_an_expired_lease_is_claimed_by_another_worker(stepped: Runtime) -> None:
    job_id = await _running(stepped)
    first = await stepped.repo.get_job(job_id)
    assert first.lease_expires_at is not None and first.started_at is not None

    now = utcnow()
    assert await stepped.repo.claim(job_id, "w2", now + LEASE, now) is None  # lease still live
    after = first.lease_expires_at + timedelta(seconds=1)
    stolen = await stepped.repo.claim(job_id, "w2", after + LEASE, after)

    assert stolen is not None
    assert (stolen.lease_owner, stolen.attempt) == ("w2", 2)
    assert stolen.started_at == first.started_at  # the job started when it first ran


async def test_an_expired_lease_on_the_last_attempt_is_not_reclaimed(stepped: Runtime) -> None:
    job_id = await _queued(stepped)
    now = utcnow()
    for attempt in range(1, 4):
        claimed = await stepped.repo.claim(job_id, f"w{attempt}", now + LEASE, now)
        assert claimed is not None and claimed.attempt == attempt
        now += LEASE + timedelta(seconds=1)
    assert await stepped.repo.claim(job_id, "w4", now + LEASE, now) is None


async def test_a_claims_status_event_is_stored_as_it_was_published(stepped: Runtime) -> None:
    """An SSE client resuming from the log must read what a live one was sent."""
    job_id = await _queued(stepped)
    published: list[dict[str, Any]] = []
    stepped.bus.add_listener(published.append)
    now = utcnow()

    await stepped.repo.claim(job_id, "w1", now + LEASE, now)

    [live] = [e for e in published if e["job_id"] == job_id]
    [logged] = await stepped.repo.events_after(job_id, 1)
    assert live["data"] == {"status": "running", "attempt": 1, "max_attempts": 3}
    assert logged["data"] == live["data"]


# -- heartbeat, events, provider ref --------------------------------------------------------


async def test_heartbeat_is_fenced_on_the_lease_owner(stepped: Runtime) -> None:
    job_id = await _running(stepped)
    until = utcnow() + timedelta(minutes=5)

    assert await stepped.repo.heartbeat([job_id], "w2", until) == set()
    assert await stepped.repo.heartbeat([job_id], "w1", until) == {job_id}
    assert (await stepped.repo.get_job(job_id)).lease_expires_at == until


async def test_one_heartbeat_extends_every_lease_the_worker_holds_and_names_them(
    stepped: Runtime,
) -> None:
    """Past the statement chunk, too; a job queued, finished or held by another is left out."""
    mine = [await _running(stepped) for _ in range(3)]
    queued = await _queued(stepped)
    until = utcnow() + timedelta(minutes=5)
    unknown = [f"job_{i:026d}" for i in range(HEARTBEAT_CHUNK)]  # pushes past one chunk

    held = await stepped.repo.heartbeat([*unknown, *mine, queued], "w1", until)

    assert held == set(mine)
    for job_id in mine:
        assert (await stepped.repo.get_job(job_id)).lease_expires_at == until
    assert await stepped.repo.heartbeat([], "w1", until) == set()


async def test_record_event_updates_progress_and_is_fenced(stepped: Runtime) -> None:
    job_id = await _running(stepped)
    await stepped.repo.record_event(
        job_id, "w1", "progress", {"progress": 0.5, "message": "half"}, utcnow()
    )

    job = await stepped.repo.get_job(job_id)
    assert (job.progress, job.progress_message) == (0.5, "half")
    with pytest.raises(LeaseLost):
        await stepped.repo.record_event(job_id, "w2", "log", {"line": "x"}, utcnow())
    with pytest.raises(LeaseLost):
        await stepped.repo.save_provider_ref(job_id, "w2", "ref")
    await stepped.repo.save_provider_ref(job_id, "w1", "ref-1")
    assert (await stepped.repo.get_job(job_id)).provider_ref == "ref-1"


async def test_events_after_returns_the_tail_in_order(stepped: Runtime) -> None:
    job_id = await _running(stepped)
    for step in (0.25, 0.5):
        await stepped.repo.record_event(job_id, "w1", "progress", {"progress": step}, utcnow())

    everything = await stepped.repo.events_after(job_id, 0)
    assert [(e["seq"], e["type"]) for e in everything] == [
        (1, "status"),
        (2, "status"),
        (3, "progress"),
        (4, "progress"),
    ]
    tail = await stepped.repo.events_after(job_id, 2)
    assert [e["data"]["progress"] for e in tail] == [0.25, 0.5]
    assert await stepped.repo.events_after(job_id, 4) == []
    assert await stepped.repo.events_after("job_missing", 0) == []


# -- complete -------------------------------------------------------------------------------


async def test_complete_records_outputs_assets_and_cost(stepped: Runtime) -> None:
    job_id = await _running(stepped, n=2)
    stored = [await _stored(stepped, 1), await _stored(stepped, 2)]

    done = await stepped.repo.complete(job_id, "w1", stored, "k" * 64, utcnow())

    assert done is not None
    assert (done.status, done.progress, done.lease_expires_at) == (JobStatus.SUCCEEDED, 1.0, None)
    assert done.cost_usd == pytest.approx(0.02)
    assert [o.sha256 for o in done.outputs] == [s.sha256 for s in stored]
    reread = await stepped.repo.get_job(job_id)
    assert [o.asset_id for o in reread.outputs] == [o.asset_id for o in done.outputs]
    asset = await stepped.repo.get_asset(reread.outputs[1].asset_id)
    assert (asset.sha256, asset.width, asset.byte_size) == (
        stored[1].sha256,
        32,
        stored[1].byte_size,
    )
    assert await stepped.repo.cached_job(reread.owner_id, "k" * 64) is not None


async def test_a_stale_workers_completion_is_dropped(stepped: Runtime) -> None:
    job_id = await _running(stepped, worker="stale")
    later = utcnow() + LEASE + timedelta(seconds=1)
    assert await stepped.repo.claim(job_id, "fresh", later + LEASE, later) is not None

    assert (
        await stepped.repo.complete(job_id, "stale", [await _stored(stepped)], "k" * 64, utcnow())
        is None
    )

    job = await stepped.repo.get_job(job_id)
    assert (job.status, job.lease_owner, job.outputs) == (JobStatus.RUNNING, "fresh", [])
    assert await _count(stepped, assets) == 0  # the asset rows rolled back with it
    assert await stepped.repo.cached_job(job.owner_id, "k" * 64) is None


async def test_completing_twice_is_a_no_op(stepped: Runtime) -> None:
    job_id = await _running(stepped)
    assert await stepped.repo.complete(job_id, "w1", [await _stored(stepped, 1)], None, utcnow())
    events = await stepped.repo.events_after(job_id, 0)

    assert (
        await stepped.repo.complete(job_id, "w1", [await _stored(stepped, 2)], None, utcnow())
        is None
    )

    job = await stepped.repo.get_job(job_id)
    assert [o.seed for o in job.outputs] == [1]
    assert await stepped.repo.events_after(job_id, 0) == events


async def test_outputs_are_unique_per_job_and_index(stepped: Runtime) -> None:
    job_id = await _running(stepped)
    done = await stepped.repo.complete(job_id, "w1", [await _stored(stepped)], None, utcnow())
    assert done is not None
    row = {
        "job_id": job_id,
        "index": 0,
        "asset_id": done.outputs[0].asset_id,
        "model": "placeholder",
        "created_at": utcnow(),
    }
    with pytest.raises(IntegrityError):
        await stepped.db.write(lambda conn: conn.execute(outputs.insert(), [row]))


async def test_identical_bytes_are_one_asset_per_owner(stepped: Runtime) -> None:
    same = await _stored(stepped, 7)
    first = await _running(stepped, seed=1)
    second = await _running(stepped, seed=2, n=2)
    a = await stepped.repo.complete(first, "w1", [same], None, utcnow())
    b = await stepped.repo.complete(second, "w1", [same, same], None, utcnow())
    assert a is not None and b is not None

    ids = {a.outputs[0].asset_id, *(o.asset_id for o in b.outputs)}
    assert len(ids) == 1
    assert await _count(stepped, assets) == 1

    other = await stepped.accounts.owner_named("other", utcnow())
    [theirs] = await stepped.service.submit(other.id, Submission(model="placeholder", prompt="p"))
    now = utcnow()
    await stepped.repo.claim(theirs.id, "w1", now + LEASE, now)
    c = await stepped.repo.complete(theirs.id, "w1", [same], None, utcnow())
    assert c is not None
    assert c.outputs[0].asset_id not in ids  # a different owner gets their own row
    assert await _count(stepped, assets) == 2
    with pytest.raises(NotFound):
        await stepped.repo.get_asset(c.outputs[0].asset_id, owner_id=a.owner_id)


async def test_a_fallback_output_is_never_cached(stepped: Runtime) -> None:
    job_id = await _running(stepped)
    stored = await _stored(stepped)
    fallback = StoredOutput(
        **{**{f: getattr(stored, f) for f in stored.__slots__}, "fallback": True}
    )
    done = await stepped.repo.complete(job_id, "w1", [fallback], "f" * 64, utcnow())
    assert done is not None and done.outputs[0].fallback is True
    assert await stepped.repo.cached_job(done.owner_id, "f" * 64) is None


# -- retry, fail, release, expire -----------------------------------------------------------


async def test_retry_later_requeues_with_the_error(stepped: Runtime) -> None:
    job_id = await _running(stepped)
    now = utcnow()
    at = now + timedelta(seconds=3)

    assert (
        await stepped.repo.retry_later(job_id, "w2", ProviderUnavailable("down"), at, now) is False
    )
    assert (
        await stepped.repo.retry_later(job_id, "w1", ProviderUnavailable("down"), at, now) is True
    )

    job = await stepped.repo.get_job(job_id)
    assert (job.status, job.attempt, job.run_after, job.lease_owner) == (
        JobStatus.QUEUED,
        1,
        at,
        None,
    )
    assert job.error is not None and job.error.code == "provider_unavailable"
    last = (await stepped.repo.events_after(job_id, 0))[-2:]
    assert [e["type"] for e in last] == ["error", "status"]
    assert last[0]["data"]["will_retry"] is True
    assert last[1]["data"]["retry_at"] == at.isoformat()


async def test_fail_fenced_and_unfenced(stepped: Runtime) -> None:
    running = await _running(stepped)
    queued = await _queued(stepped)
    error = WorkerLost("gone")

    assert await stepped.repo.fail(running, error, utcnow(), worker="w2") is False
    assert await stepped.repo.fail(queued, error, utcnow(), worker="w1") is False  # not running
    assert await stepped.repo.fail(running, error, utcnow(), worker="w1") is True
    assert await stepped.repo.fail(queued, error, utcnow()) is True
    assert await stepped.repo.fail(queued, error, utcnow()) is False  # already failed

    for job_id in (running, queued):
        job = await stepped.repo.get_job(job_id)
        assert job.status is JobStatus.FAILED
        assert job.error is not None and (job.error.code, job.error.retryable) == (
            "worker_lost",
            False,
        )
        assert job.finished_at is not None


async def test_release_gives_the_attempt_back(stepped: Runtime) -> None:
    job_id = await _running(stepped)

    assert await stepped.repo.release(job_id, "w2", utcnow()) is False
    assert await stepped.repo.release(job_id, "w1", utcnow()) is True

    job = await stepped.repo.get_job(job_id)
    assert (job.status, job.attempt, job.lease_owner) == (JobStatus.QUEUED, 0, None)
    now = utcnow()
    again = await stepped.repo.claim(job_id, "w2", now + LEASE, now)
    assert again is not None and again.attempt == 1


async def test_expire_only_fails_an_expired_last_attempt(stepped: Runtime) -> None:
    job_id = await _queued(stepped)
    now = utcnow()
    await stepped.repo.claim(job_id, "w1", now + LEASE, now)

    assert (
        await stepped.repo.expire(job_id, WorkerLost("x"), now) is False
    )  # lease live, attempts left
    later = now + LEASE + timedelta(seconds=1)
    assert await stepped.repo.expire(job_id, WorkerLost("x"), later) is False  # attempts left
    for attempt in (2, 3):
        assert await stepped.repo.claim(job_id, f"w{attempt}", later + LEASE, later) is not None
        later += LEASE + timedelta(seconds=1)
    assert await stepped.repo.expire(job_id, WorkerLost("x"), later) is True
    assert (await stepped.repo.get_job(job_id)).status is JobStatus.FAILED


async def test_stale_jobs_lists_due_queued_and_expired_running(stepped: Runtime) -> None:
    queued = await _queued(stepped)
    live = await _running(stepped)
    expired = await _queued(stepped)
    now = utcnow()
    assert await stepped.repo.claim(expired, "w1", now - timedelta(seconds=1), now) is not None

    stale = await stepped.repo.stale_jobs(utcnow(), utcnow(), 10)
    assert {r.id for r in stale} == {queued, expired}
    assert live not in {r.id for r in stale}
    only_expired = await stepped.repo.stale_jobs(utcnow(), now - timedelta(hours=1), 10)
    assert [r.id for r in only_expired] == [expired]
    assert len(await stepped.repo.stale_jobs(utcnow(), utcnow(), 1)) == 1


# -- cancel ---------------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["queued", "running"])
async def test_cancel_queued_or_running(stepped: Runtime, state: str) -> None:
    job_id = await (_queued(stepped) if state == "queued" else _running(stepped))
    owner = await stepped.local_owner()

    job = await stepped.repo.cancel(job_id, owner.id, utcnow())

    assert (job.status, job.lease_expires_at) == (JobStatus.CANCELED, None)
    assert [e["type"] for e in await stepped.repo.events_after(job_id, 0)][-2:] == [
        "status",
        "done",
    ]


@pytest.mark.parametrize("outcome", ["succeeded", "failed", "canceled"])
async def test_cancel_a_finished_job_is_a_conflict(stepped: Runtime, outcome: str) -> None:
    job_id = await _running(stepped)
    owner = await stepped.local_owner()
    if outcome == "succeeded":
        await stepped.repo.complete(job_id, "w1", [await _stored(stepped)], None, utcnow())
    elif outcome == "failed":
        await stepped.repo.fail(job_id, WorkerLost("x"), utcnow())
    else:
        await stepped.repo.cancel(job_id, owner.id, utcnow())

    with pytest.raises(Conflict) as raised:
        await stepped.repo.cancel(job_id, owner.id, utcnow())
    assert outcome in raised.value.message
    assert (await stepped.repo.get_job(job_id)).status == outcome


async def test_cancel_by_another_owner_is_not_found(stepped: Runtime) -> None:
    job_id = await _queued(stepped)
    other = await stepped.accounts.owner_named("other", utcnow())
    with pytest.raises(NotFound):
        await stepped.repo.cancel(job_id, other.id, utcnow())
    assert (await stepped.repo.get_job(job_id)).status is JobStatus.QUEUED
    with pytest.raises(NotFound):
        await stepped.repo.cancel("job_missing", other.id, utcnow())


async def test_a_canceled_job_cannot_be_claimed_or_completed(stepped: Runtime) -> None:
    job_id = await _running(stepped)
    owner = await stepped.local_owner()
    await stepped.repo.cancel(job_id, owner.id, utcnow())

    assert (
        await stepped.repo.complete(job_id, "w1", [await _stored(stepped)], None, utcnow()) is None
    )
    assert await stepped.repo.heartbeat([job_id], "w1", utcnow() + LEASE) == set()
    later = utcnow() + timedelta(hours=1)
    assert await stepped.repo.claim(job_id, "w2", later + LEASE, later) is None
    assert (await stepped.repo.get_job(job_id)).status is JobStatus.CANCELED


# -- reading --------------------------------------------------------------------------------


async def test_get_job_hides_other_owners(stepped: Runtime) -> None:
    job_id = await _queued(stepped)
    owner = await stepped.local_owner()
    assert (await stepped.repo.get_job(job_id, owner.id)).id == job_id
    with pytest.raises(NotFound):
        await stepped.repo.get_job(job_id, "own_other")
    with pytest.raises(NotFound):
        await stepped.repo.get_job("job_missing")
    assert [j.id for j in await stepped.repo.get_jobs(["job_missing", job_id])] == [job_id]


async def test_job_status_is_cheap_and_none_for_unknown(stepped: Runtime) -> None:
    job_id = await _running(stepped)
    assert await stepped.repo.job_status(job_id) == (JobStatus.RUNNING, "w1")
    assert await stepped.repo.job_status("job_missing") is None


async def test_list_jobs_by_kind_and_cursor(stepped: Runtime) -> None:
    ids = []
    for i in range(5):
        ids.append(await _queued(stepped, prompt=f"n{i}"))
        await asyncio.sleep(0.002)  # ids order by millisecond
    owner = await stepped.local_owner()
    assert len(await stepped.repo.list_jobs(owner.id, JobFilter(kind=TaskKind.IMAGE), 10)) == 5
    assert await stepped.repo.list_jobs(owner.id, JobFilter(kind=TaskKind.EDIT), 10) == []
    page = await stepped.repo.list_jobs(owner.id, JobFilter(before=ids[3]), 2)
    assert [j.id for j in page] == [ids[2], ids[1]]


# -- idempotency and cache ------------------------------------------------------------------


async def test_find_idempotent_returns_the_whole_group(stepped: Runtime) -> None:
    owner = await stepped.local_owner()
    group = new_id("grp")
    request = Request(model="placeholder", prompt="p", size="32x32")
    drafts = [
        JobDraft(
            id=new_id("job"),
            owner_id=owner.id,
            request=request,
            max_attempts=3,
            group_id=group,
            idempotency_key="key-1" if i == 0 else None,
        )
        for i in range(3)
    ]
    created = await stepped.repo.create_jobs(drafts, utcnow())

    found = await stepped.repo.find_idempotent(owner.id, "key-1")

    assert sorted(j.id for j in found) == sorted(j.id for j in created)
    assert await stepped.repo.find_idempotent(owner.id, "key-2") == []
    assert await stepped.repo.find_idempotent("own_other", "key-1") == []


async def test_a_reused_idempotency_key_is_a_conflict(stepped: Runtime) -> None:
    owner = await stepped.local_owner()
    request = Request(model="placeholder", prompt="p", size="32x32")

    def draft() -> JobDraft:
        return JobDraft(
            id=new_id("job"),
            owner_id=owner.id,
            request=request,
            max_attempts=3,
            idempotency_key="same",
        )

    await stepped.repo.create_jobs([draft()], utcnow())
    with pytest.raises(Conflict):
        await stepped.repo.create_jobs([draft()], utcnow())
    assert len(await stepped.repo.list_jobs(owner.id, JobFilter(), 10)) == 1


async def test_concurrent_creates_with_one_key_keep_one(stepped: Runtime) -> None:
    owner = await stepped.local_owner()
    submission = Submission(model="placeholder", prompt="p", size="32x32")

    first, second = await asyncio.gather(
        stepped.service.submit(owner.id, submission, idempotency_key="race"),
        stepped.service.submit(owner.id, submission, idempotency_key="race"),
    )
    assert [j.id for j in first] == [j.id for j in second]
    assert len(await stepped.repo.list_jobs(owner.id, JobFilter(), 10)) == 1


async def test_cached_job_only_returns_succeeded_jobs(stepped: Runtime) -> None:
    job_id = await _running(stepped)
    owner = await stepped.local_owner()
    done = await stepped.repo.complete(job_id, "w1", [await _stored(stepped)], "c" * 64, utcnow())
    assert done is not None
    hit = await stepped.repo.cached_job(owner.id, "c" * 64)
    assert hit is not None and hit.id == job_id
    assert await stepped.repo.cached_job(owner.id, "d" * 64) is None
    assert await stepped.repo.cached_job("own_other", "c" * 64) is None

    # A cache entry whose job is no longer a success (e.g. an operator failed it) is ignored.
    operator_fail = jobs.update().where(jobs.c.id == job_id).values(status="failed")
    await stepped.db.write(lambda conn: conn.execute(operator_fail))
    assert await stepped.repo.cached_job(owner.id, "c" * 64) is None


async def test_a_draft_reusing_the_cache_is_born_succeeded_on_a_hit(stepped: Runtime) -> None:
    job_id = await _running(stepped)
    owner = await stepped.local_owner()
    key = "e" * 64
    source = await stepped.repo.complete(job_id, "w1", [await _stored(stepped)], key, utcnow())
    assert source is not None
    request = Request(model="placeholder", prompt="p", size="32x32")

    def draft(reuse: bool, cache_key: str = key) -> JobDraft:
        return JobDraft(
            id=new_id("job"),
            owner_id=owner.id,
            request=request,
            max_attempts=3,
            cache_key=cache_key,
            reuse_cached=reuse,
        )

    [hit, bypassed, missed] = await stepped.repo.create_jobs(
        [draft(True), draft(False), draft(True, "f" * 64)], utcnow()
    )

    assert (bypassed.status, bypassed.cached) == (JobStatus.QUEUED, False)
    assert (missed.status, missed.cached) == (JobStatus.QUEUED, False)

    assert (hit.status, hit.cached, hit.progress, hit.cost_usd) == (
        JobStatus.SUCCEEDED,
        True,
        1.0,
        0.0,
    )
    reread = await stepped.repo.get_job(hit.id)
    assert [(o.asset_id, o.cached, o.cost_usd) for o in reread.outputs] == [
        (source.outputs[0].asset_id, True, 0.0)
    ]
    assert isinstance(reread.finished_at, datetime)
