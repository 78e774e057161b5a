"""Work stealing: an idle distributed worker takes queued jobs other workers hold."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

from imagemill.config import Settings
from imagemill.domain import JobStatus, Submission
from imagemill.jobs.service import utcnow
from imagemill.jobs.stealing import Stealing
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
    runtime.worker.stealing = stealing = Stealing(runtime.repo, runtime.worker.wake, 0.05)
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
