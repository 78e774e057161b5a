"""The sweeper: re-sends lost wake-ups, fails jobs whose worker vanished on the last attempt
and jobs past their deadline that no worker is running."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

from imagemill.db.records import JobDraft
from imagemill.domain import JobStatus, Request, Submission
from imagemill.errors import DeadlineExceeded, ProviderUnavailable
from imagemill.ids import new_id
from imagemill.jobs.service import utcnow
from imagemill.jobs.sweeper import Sweeper
from imagemill.runtime import Runtime

MakeRuntime = Callable[..., Awaitable[Runtime]]


class Recorder:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def __call__(self, job_id: str) -> None:
        self.sent.append(job_id)


async def _queued(runtime: Runtime) -> str:
    owner = await runtime.local_owner()
    [job] = await runtime.service.submit(
        owner.id, Submission(model="placeholder", prompt="p", size="32x32")
    )
    return job.id


async def test_a_queued_job_whose_message_was_lost_is_sent_again(stepped: Runtime) -> None:
    job_id = await _queued(stepped)  # no worker listens: the wake-up is lost
    dispatch = Recorder()
    sweeper = Sweeper(stepped.repo, dispatch, requeue_after=60, interval=1)

    assert await sweeper.sweep() == 0  # queued only just now: not stale yet
    assert dispatch.sent == []

    assert await sweeper.sweep(requeue_after=0) == 1
    assert dispatch.sent == [job_id]
    assert (await stepped.repo.get_job(job_id)).status is JobStatus.QUEUED

    assert await stepped.worker.run_one(dispatch.sent[0]) is JobStatus.SUCCEEDED


async def test_a_job_waiting_for_its_retry_is_not_resent_early(stepped: Runtime) -> None:
    job_id = await _queued(stepped)
    now = utcnow()
    assert await stepped.repo.claim(job_id, "w1", now + timedelta(seconds=30), now) is not None
    await stepped.repo.retry_later(
        job_id, "w1", ProviderUnavailable("x"), now + timedelta(hours=1), now
    )
    dispatch = Recorder()

    assert await Sweeper(stepped.repo, dispatch, 0, 1).sweep() == 0
    assert dispatch.sent == []


async def test_an_expired_lease_on_the_last_attempt_fails_the_job_as_worker_lost(
    make_runtime: MakeRuntime,
) -> None:
    runtime = await make_runtime(max_attempts=1)
    job_id = await _queued(runtime)
    now = utcnow()
    assert (
        await runtime.repo.claim(job_id, "vanished", now + timedelta(milliseconds=1), now)
        is not None
    )
    await asyncio.sleep(0.01)
    dispatch = Recorder()

    assert await Sweeper(runtime.repo, dispatch, 60, 1).sweep() == 1

    assert dispatch.sent == []
    job = await runtime.repo.get_job(job_id)
    assert job.status is JobStatus.FAILED
    assert job.error is not None
    assert (job.error.code, job.error.retryable) == ("worker_lost", False)
    assert job.lease_expires_at is None
    assert [e["type"] for e in await runtime.repo.events_after(job_id, 0)][-3:] == [
        "error",
        "status",
        "done",
    ]


async def test_an_expired_lease_with_attempts_left_is_queued_again_and_resent(
    stepped: Runtime,
) -> None:
    job_id = await _queued(stepped)
    now = utcnow()
    assert (
        await stepped.repo.claim(job_id, "vanished", now + timedelta(milliseconds=1), now)
        is not None
    )
    await asyncio.sleep(0.01)
    dispatch = Recorder()

    assert await Sweeper(stepped.repo, dispatch, 60, 1).sweep() == 1

    assert dispatch.sent == [job_id]
    lapsed = await stepped.repo.get_job(job_id)
    assert (lapsed.status, lapsed.lease_owner) == (JobStatus.QUEUED, None), "its worker died"
    last = (await stepped.repo.events_after(job_id, 0))[-1]
    assert last["data"] == {"status": "queued", "lapsed": True}
    assert await stepped.worker.run_one(job_id) is JobStatus.SUCCEEDED
    assert (await stepped.repo.get_job(job_id)).attempt == 2


async def test_a_running_job_with_a_live_lease_is_left_alone(stepped: Runtime) -> None:
    job_id = await _queued(stepped)
    now = utcnow()
    assert await stepped.repo.claim(job_id, "busy", now + timedelta(seconds=30), now) is not None
    dispatch = Recorder()

    assert await Sweeper(stepped.repo, dispatch, 0, 1).sweep(requeue_after=0) == 0

    assert dispatch.sent == []
    job = await stepped.repo.get_job(job_id)
    assert (job.status, job.lease_owner, job.attempt) == (JobStatus.RUNNING, "busy", 1)


async def test_finished_jobs_are_never_swept(stepped: Runtime) -> None:
    job_id = await _queued(stepped)
    assert await stepped.worker.run_one(job_id) is JobStatus.SUCCEEDED
    dispatch = Recorder()

    assert await Sweeper(stepped.repo, dispatch, 0, 1).sweep(requeue_after=0) == 0
    assert dispatch.sent == []


async def test_run_keeps_sweeping_after_a_failed_pass(stepped: Runtime) -> None:
    job_id = await _queued(stepped)
    calls: list[str] = []

    async def flaky(sent: str) -> None:
        calls.append(sent)
        if len(calls) == 1:
            raise ConnectionError("broker down")

    sweeper = Sweeper(stepped.repo, flaky, requeue_after=0, interval=0.02)
    running = asyncio.create_task(sweeper.run(first_requeue_after=0))
    try:
        for _ in range(200):
            if len(calls) >= 2:
                break
            await asyncio.sleep(0.01)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    assert calls[:2] == [job_id, job_id]


# -- deadlines ------------------------------------------------------------------------------


async def _created_ago(runtime: Runtime, ago: timedelta, deadline_seconds: float) -> str:
    """A queued job created ``ago``, due ``deadline_seconds`` after that."""
    owner = await runtime.local_owner()
    draft = JobDraft(
        id=new_id("job"),
        owner_id=owner.id,
        request=Request(model="placeholder", prompt="p", size="32x32"),
        max_attempts=3,
        deadline_seconds=deadline_seconds,
    )
    [job] = await runtime.repo.create_jobs([draft], utcnow() - ago)
    return job.id


async def _assert_failed_overdue(runtime: Runtime, job_id: str) -> None:
    job = await runtime.repo.get_job(job_id)
    assert job.status is JobStatus.FAILED
    assert job.error is not None
    assert (job.error.code, job.error.retryable) == ("deadline_exceeded", False)
    assert job.lease_expires_at is None and job.finished_at is not None
    logged = await runtime.repo.events_after(job_id, 0)
    assert [e["type"] for e in logged][-3:] == ["error", "status", "done"]
    assert logged[-3]["data"]["will_retry"] is False


async def test_a_queued_job_past_its_deadline_is_failed_not_resent(stepped: Runtime) -> None:
    overdue = await _created_ago(stepped, timedelta(minutes=10), deadline_seconds=60)
    in_time = await _created_ago(stepped, timedelta(minutes=10), deadline_seconds=3600)
    dispatch = Recorder()

    assert await Sweeper(stepped.repo, dispatch, 60, 1).sweep(requeue_after=0) == 2

    await _assert_failed_overdue(stepped, overdue)
    assert dispatch.sent == [in_time]  # the other one is only stale: woken up again
    assert (await stepped.repo.get_job(in_time)).status is JobStatus.QUEUED


async def test_a_job_waiting_for_a_retry_past_its_deadline_is_failed(stepped: Runtime) -> None:
    job_id = await _created_ago(stepped, timedelta(minutes=10), deadline_seconds=60)
    then = utcnow() - timedelta(minutes=9, seconds=30)
    assert await stepped.repo.claim(job_id, "w1", then + timedelta(seconds=30), then)
    assert await stepped.repo.retry_later(
        job_id, "w1", ProviderUnavailable("x"), utcnow() + timedelta(hours=1), then
    )

    assert await Sweeper(stepped.repo, Recorder(), 60, 1).sweep() == 1

    await _assert_failed_overdue(stepped, job_id)


async def test_a_running_job_past_its_deadline_whose_lease_expired_is_failed(
    stepped: Runtime,
) -> None:
    job_id = await _created_ago(stepped, timedelta(minutes=10), deadline_seconds=60)
    then = utcnow() - timedelta(minutes=9, seconds=30)
    claimed = await stepped.repo.claim(job_id, "vanished", then + timedelta(seconds=30), then)
    assert claimed is not None and claimed.attempt < claimed.max_attempts  # not worker_lost
    dispatch = Recorder()

    assert await Sweeper(stepped.repo, dispatch, 60, 1).sweep() == 1

    await _assert_failed_overdue(stepped, job_id)
    assert dispatch.sent == []
    assert await stepped.worker.run_one(job_id) is None


async def test_a_running_job_past_its_deadline_with_a_live_lease_is_left_to_its_worker(
    stepped: Runtime,
) -> None:
    job_id = await _created_ago(stepped, timedelta(minutes=10), deadline_seconds=60)
    now = utcnow()
    assert await stepped.repo.claim(job_id, "busy", now + timedelta(seconds=30), now)
    dispatch = Recorder()

    assert await Sweeper(stepped.repo, dispatch, 0, 1).sweep(requeue_after=0) == 0

    assert dispatch.sent == []
    job = await stepped.repo.get_job(job_id)
    assert (job.status, job.lease_owner, job.error) == (JobStatus.RUNNING, "busy", None)


async def test_a_job_with_time_left_is_not_failed(stepped: Runtime) -> None:
    owner = await stepped.local_owner()
    [job] = await stepped.service.submit(
        owner.id, Submission(model="placeholder", prompt="p", size="32x32", deadline_seconds=0.2)
    )
    dispatch = Recorder()
    sweeper = Sweeper(stepped.repo, dispatch, 60, 1)

    assert await sweeper.sweep() == 0
    assert (await stepped.repo.get_job(job.id)).status is JobStatus.QUEUED

    await asyncio.sleep(0.25)
    assert await sweeper.sweep() == 1
    await _assert_failed_overdue(stepped, job.id)


async def test_failing_as_overdue_is_a_compare_and_set(stepped: Runtime) -> None:
    """A job claimed, or given a later deadline, after the sweeper's query is not failed."""
    running = await _created_ago(stepped, timedelta(minutes=10), deadline_seconds=60)
    now = utcnow()
    assert await stepped.repo.claim(running, "busy", now + timedelta(seconds=30), now)
    in_time = await _created_ago(stepped, timedelta(minutes=10), deadline_seconds=3600)
    error = DeadlineExceeded("the job's deadline passed")

    assert await stepped.repo.fail_overdue(running, error, utcnow()) is False
    assert await stepped.repo.fail_overdue(in_time, error, utcnow()) is False

    assert (await stepped.repo.get_job(running)).status is JobStatus.RUNNING
    assert (await stepped.repo.get_job(in_time)).status is JobStatus.QUEUED
