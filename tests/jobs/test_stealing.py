"""Work stealing: an idle distributed worker takes queued jobs other workers hold."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

from imagemill.config import Settings
from imagemill.domain import JobStatus, Submission
from imagemill.errors import ProviderUnavailable
from imagemill.jobs.service import utcnow
from imagemill.jobs.stealing import LONGEST_PAUSE_SECONDS, Stealing
from imagemill.providers.placeholder import PlaceholderProvider
from imagemill.providers.registry import Registry
from imagemill.runtime import Runtime

MakeRuntime = Callable[..., Awaitable[Runtime]]
QUICK = {"model": "placeholder", "size": "16x16", "params": {"latency_ms": 20}}


async def _submit(runtime: Runtime, prompt: str) -> str:
    """A queued job whose wake-up went nowhere (the stepped runtime runs no workers),
    as if another worker held it in its line."""
    owner = await runtime.local_owner()
    [job] = await runtime.service.submit(owner.id, Submission(prompt=prompt, **QUICK))
    return job.id


async def _until_all_ended(runtime: Runtime, job_ids: list[str]) -> list[JobStatus]:
    for _ in range(3000):  # 30 s, for a busy machine
        jobs = await runtime.repo.get_jobs(job_ids)
        if all(job.status.terminal for job in jobs):
            break
        await asyncio.sleep(0.01)
    return [job.status for job in jobs]


async def test_an_idle_worker_takes_the_queued_jobs_others_hold(
    make_runtime: MakeRuntime,
) -> None:
    runtime = await make_runtime(hosted_concurrency=2)
    worker = runtime.worker
    worker.stealing = stealing = Stealing(runtime.repo, worker.wake, worker._room, 0.05)
    job_ids = [await _submit(runtime, f"job {i}") for i in range(5)]

    runtime.worker.wake(job_ids[0])  # the only wake-up this worker gets

    assert await _until_all_ended(runtime, job_ids) == [JobStatus.SUCCEEDED] * 5
    assert stealing.taken == 4
    assert all(job.attempt == 1 for job in await runtime.repo.get_jobs(job_ids))


async def test_a_worker_that_does_not_steal_leaves_them_queued(
    make_runtime: MakeRuntime,
) -> None:
    runtime = await make_runtime(hosted_concurrency=2)
    first, *others = [await _submit(runtime, f"job {i}") for i in range(3)]

    runtime.worker.wake(first)

    assert await _until_all_ended(runtime, [first]) == [JobStatus.SUCCEEDED]
    await asyncio.sleep(0.3)  # a look would have come 0.2 s after the job ended
    assert [job.status for job in await runtime.repo.get_jobs(others)] == [JobStatus.QUEUED] * 2


async def test_a_worker_steals_from_another_workers_line_and_each_job_runs_once(
    make_runtime: MakeRuntime,
) -> None:
    """Two workers on one database: the first holds six slow jobs in its line of one
    slot; the second, joining, takes the newest ones, and the first drops those."""
    holder = await make_runtime(hosted_concurrency=1)
    thief = await make_runtime(hosted_concurrency=2, worker_concurrency=1)
    thief.worker.stealing = stealing = Stealing(
        thief.repo, thief.worker.wake, thief.worker._room, 0.05
    )
    slow = {"model": "placeholder", "size": "16x16", "params": {"latency_ms": 300}}
    owner = await holder.local_owner()
    job_ids = []
    for i in range(6):
        [job] = await holder.service.submit(owner.id, Submission(prompt=f"job {i}", **slow))
        job_ids.append(job.id)
        holder.worker.wake(job.id)

    for _ in range(3000):  # the holder runs its first before the thief joins
        if (await holder.repo.get_job(job_ids[0])).status is not JobStatus.QUEUED:
            break
        await asyncio.sleep(0.01)
    stealing.idle()  # as when the worker starts

    assert await _until_all_ended(holder, job_ids) == [JobStatus.SUCCEEDED] * 6
    jobs = await holder.repo.get_jobs(job_ids)
    assert all(job.attempt == 1 for job in jobs), "none ran twice"
    ran_by = {job.id: job.lease_owner for job in jobs}
    assert ran_by[job_ids[0]] == holder.worker.id  # the oldest: the holder's first
    assert ran_by[job_ids[-1]] == thief.worker.id  # the newest: taken first
    by_thief = sum(owner == thief.worker.id for owner in ran_by.values())
    assert 2 <= by_thief <= stealing.taken  # one taken may be claimed by its holder first
    assert set(ran_by.values()) == {holder.worker.id, thief.worker.id}


async def test_a_taken_job_whose_circuit_is_open_is_left_to_its_holder(
    make_runtime: MakeRuntime,
) -> None:
    runtime = await make_runtime(circuit_failure_threshold=1, circuit_cooldown_seconds=60)
    sent: list[str] = []

    async def dispatch(job_id: str) -> None:
        sent.append(job_id)

    runtime.worker.dispatch = dispatch
    runtime.worker.circuits.failed("placeholder", ProviderUnavailable("upstream down"))
    job_id = await _submit(runtime, "waits")

    await runtime.worker._handle_waiting(job_id, stolen=True)

    assert runtime.worker._background == set(), "no message sent again from here"
    await runtime.worker._handle_waiting(job_id, stolen=False)  # its holder's wake-up
    assert len(runtime.worker._background) == 1  # sends it again after the cool-down
    assert (await runtime.repo.get_job(job_id)).status is JobStatus.QUEUED
    assert sent == []


async def test_looks_skip_jobs_taken_lately_and_slow_down_while_they_find_nothing(
    stepped: Runtime,
) -> None:
    job_ids = [await _submit(stepped, f"job {i}") for i in range(3)]
    woken: list[str] = []
    stealing = Stealing(stepped.repo, lambda job_id, stolen: woken.append(job_id), lambda: 2)

    await stealing._look(0)
    await stealing._look(0)
    await stealing._look(0)

    assert woken == [job_ids[2], job_ids[1], job_ids[0]]  # newest first, none twice
    assert stealing._pause == 2 * stealing.interval  # the third found nothing
    await stealing._look(0)
    assert stealing._pause == 4 * stealing.interval
    for _ in range(10):
        await stealing._look(0)
    assert stealing._pause == LONGEST_PAUSE_SECONDS


async def test_due_queued_jobs_come_newest_first_and_only_those_queued_and_due(
    stepped: Runtime,
) -> None:
    job_ids = [await _submit(stepped, f"job {i}") for i in range(4)]
    now = utcnow()
    claimed = await stepped.repo.claim(job_ids[1], "elsewhere", now + timedelta(minutes=1), now)
    assert claimed is not None

    assert await stepped.repo.due_queued(utcnow(), 10) == [job_ids[3], job_ids[2], job_ids[0]]
    assert await stepped.repo.due_queued(utcnow(), 2) == [job_ids[3], job_ids[2]]
    assert await stepped.repo.due_queued(now - timedelta(minutes=1), 10) == []
    assert await stepped.repo.due_queued(utcnow(), 10, skip=[job_ids[3]]) == [
        job_ids[2],
        job_ids[0],
    ]


async def test_a_job_another_worker_claimed_is_not_scheduled_here(stepped: Runtime) -> None:
    job_id = await _submit(stepped, "taken")
    assert await stepped.repo.to_schedule(job_id) is not None
    now = utcnow()
    await stepped.repo.claim(job_id, "elsewhere", now + timedelta(minutes=1), now)

    assert await stepped.repo.to_schedule(job_id) is None


def test_only_workers_fed_by_a_shared_broker_steal(settings: Settings) -> None:
    def stealing(broker_url: str, run_workers: bool) -> bool:
        runtime = Runtime(
            settings.model_copy(update={"broker_url": broker_url}),
            registry=Registry([PlaceholderProvider()]),
            run_workers=run_workers,
            sweep=False,
        )
        return runtime.worker.stealing is not None

    assert stealing("redis://127.0.0.1:6379/0", run_workers=True)
    assert stealing("amqp://guest:guest@127.0.0.1:5672/", run_workers=True)
    assert not stealing("redis://127.0.0.1:6379/0", run_workers=False)  # an API server
    assert not stealing("memory://", run_workers=True)  # embedded: it gets every message
