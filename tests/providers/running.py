"""Running jobs step by step in provider tests: ``run`` submits a job and ``finish`` runs
its attempts in turn (waiting out retry delays) until it ends; ``saved_ref`` waits for a
running attempt to save its provider request id; ``warm_webhooks`` readies a served
webhook route before a test times what reaches it; ``Recorded`` is a ``RunContext`` for
calling a provider directly that writes down what it reported; ``run_holding`` writes
down what a job's attempts count against its response budget."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from imagemill.domain import Job, JobStatus, Submission
from imagemill.jobs.service import utcnow
from imagemill.memory import WeightedSemaphore
from imagemill.providers.base import RunContext
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


class Recorded:
    """A RunContext whose callbacks write down what the provider reported; storing a
    preview takes ``preview_seconds`` (a slow database)."""

    def __init__(self, preview_seconds: float = 0.0) -> None:
        self.preview_seconds = preview_seconds
        self.progress: list[tuple[float, str | None]] = []
        self.reported = asyncio.Event()  # set at each progress report
        self.refs: list[str] = []
        self.previews: list[bytes] = []

    def context(self, attempt: int = 1) -> RunContext:
        async def on_progress(fraction: float, message: str | None) -> None:
            self.progress.append((fraction, message))
            self.reported.set()

        async def on_ref(ref: str) -> None:
            self.refs.append(ref)

        async def on_preview(image: bytes) -> None:
            await asyncio.sleep(self.preview_seconds)
            self.previews.append(image)

        return RunContext(
            http=httpx.AsyncClient(),
            deadline=time.monotonic() + 60,
            attempt=attempt,
            provider_ref=None,
            on_progress=on_progress,
            on_provider_ref=on_ref,
            on_preview=on_preview,
        )


async def saved_ref(runtime: Runtime, job_id: str, within: float = 5.0) -> str:
    """The provider request id the job's running attempt saved (``model ref``), once it has."""
    deadline = asyncio.get_running_loop().time() + within
    while (ref := (await runtime.repo.get_job(job_id)).provider_ref) is None:
        assert asyncio.get_running_loop().time() < deadline, "no provider request id was saved"
        await asyncio.sleep(0.02)
    return ref


async def warm_webhooks(url: str, provider: str) -> None:
    """Call ``provider``'s webhook route on the server at ``url`` once (unsigned: refused).
    FastAPI builds a route's state on the first request that reaches it, 0.3 to 0.8 s on
    the test machine; a running server has done so long before a webhook comes."""
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{url}/v1/providers/{provider}/webhook")
    assert response.status_code == 401, response.text


class _Counted(WeightedSemaphore):
    def __init__(self, capacity: int, held: list[int]) -> None:
        super().__init__(capacity)
        self.held = held

    async def acquire(self, weight: int) -> int:
        self.held.append(weight)
        return await super().acquire(weight)

    def take_now(self, weight: int) -> int:
        self.held.append(weight)
        return super().take_now(weight)


async def run_holding(runtime: Runtime, **fields: Any) -> tuple[Job, list[int]]:
    """Submit and finish one job that succeeds; with the bytes each answer its attempts
    read counted against the response budget (``imagemill.memory``), in order. The
    budget is all given back by then."""
    held: list[int] = []
    runtime.worker.calls.answers = _Counted(runtime.worker.calls.answers.capacity, held)
    job = succeeded(await run(runtime, **fields))
    assert runtime.worker.calls.answers.in_use == 0
    return job, held
