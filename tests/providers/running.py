"""Running jobs step by step in provider tests: ``run`` submits a job and ``finish`` runs
its attempts in turn (waiting out retry delays) until it ends."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from imagemill.domain import Job, JobStatus, Submission
from imagemill.jobs.service import utcnow
from imagemill.runtime import Runtime

ProviderRuntime = Callable[..., Awaitable[Runtime]]


async def submit(runtime: Runtime, **fields: Any) -> Job:
    owner = await runtime.local_owner()
    [job] = await runtime.service.submit(owner.id, Submission(**fields))
    return job


async def finish(runtime: Runtime, job_id: str, attempts: int = 10) -> Job:
    """Run the job's attempts in turn, waiting out retry delays, until it ends."""
    for _ in range(attempts):
        job = await runtime.repo.get_job(job_id)
        if job.status.terminal:
            return job
        await asyncio.sleep(max(0.0, (job.run_after - utcnow()).total_seconds()))
        await runtime.worker.run_one(job_id)
    job = await runtime.repo.get_job(job_id)
    assert job.status.terminal, f"job still {job.status} after {attempts} attempts"
    return job


async def run(runtime: Runtime, **fields: Any) -> Job:
    """Submit and finish one job."""
    return await finish(runtime, (await submit(runtime, **fields)).id)


def succeeded(job: Job) -> Job:
    assert job.status is JobStatus.SUCCEEDED, job.error
    return job
