"""The worker, one job at a time: ``run_one`` claims, runs, stores and finishes a job inline."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from imagemill.db.tables import assets
from imagemill.domain import JobStatus, Output, Submission, Task
from imagemill.errors import ProviderUnavailable, RateLimited
from imagemill.jobs.service import utcnow
from imagemill.providers.base import RunContext
from imagemill.providers.placeholder import render
from imagemill.runtime import Runtime
from imagemill.storage.images import png_params, probe

SCRIPTED = "scripted/model"
MakeRuntime = Callable[..., Awaitable[Runtime]]


async def _submit(runtime: Runtime, **fields: object) -> str:
    owner = await runtime.local_owner()
    fields.setdefault("prompt", "a lighthouse at dusk")
    [job] = await runtime.service.submit(owner.id, Submission(**fields))
    return job.id


async def _asset_count(runtime: Runtime) -> int:
    async with runtime.db.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(assets))).scalar_one())


async def test_success_stores_every_output_at_the_exact_size_with_its_params(
    stepped: Runtime,
) -> None:
    job_id = await _submit(stepped, model="placeholder", n=2, size="320x200", seed=7)

    assert await stepped.worker.run_one(job_id) is JobStatus.SUCCEEDED

    job = await stepped.repo.get_job(job_id)
    assert job.status is JobStatus.SUCCEEDED
    assert job.attempt == 1
    assert job.progress == 1.0
    assert job.error is None
    assert job.lease_expires_at is None
    assert [o.index for o in job.outputs] == [0, 1]
    assert [o.seed for o in job.outputs] == [7, 8]
    for output in job.outputs:
        assert (output.width, output.height) == (320, 200)
        assert (output.requested_width, output.requested_height) == (320, 200)
        assert output.model == "placeholder"
        assert output.fallback is False
        assert output.cached is False
        asset = await stepped.repo.get_asset(output.asset_id)
        data = await stepped.blobs.get(asset.storage_key)
        assert hashlib.sha256(data).hexdigest() == output.sha256 == asset.sha256
        assert output.byte_size == len(data)
        info = probe(data)
        assert (info.content_type, info.width, info.height) == ("image/png", 320, 200)
        assert png_params(data) == {
            "model": "placeholder",
            "kind": "image",
            "prompt": "a lighthouse at dusk",
            "negative_prompt": None,
            "size": "320x200",
            "seed": output.seed,
            "params": {},
        }
    assert len({o.sha256 for o in job.outputs}) == 2


async def test_a_second_run_of_a_finished_job_is_dropped(stepped: Runtime) -> None:
    job_id = await _submit(stepped, model="placeholder", size="64x64")
    assert await stepped.worker.run_one(job_id) is JobStatus.SUCCEEDED

    assert await stepped.worker.run_one(job_id) is None
    assert (await stepped.repo.get_job(job_id)).attempt == 1


async def test_progress_events_are_stored_in_order(stepped: Runtime) -> None:
    job_id = await _submit(stepped, model="placeholder", size="64x64", params={"latency_ms": 300})

    assert await stepped.worker.run_one(job_id) is JobStatus.SUCCEEDED

    progress = [
        e["data"]["progress"]
        for e in await stepped.repo.events_after(job_id, 0)
        if e["type"] == "progress"
    ]
    assert len(progress) >= 2
    assert progress == sorted(progress)
    assert progress[-1] == 1.0


async def test_transient_failure_is_retried_after_a_backoff_then_succeeds(
    make_runtime: MakeRuntime,
) -> None:
    runtime = await make_runtime(retry_base_seconds=0.2, retry_max_seconds=1.0)
    job_id = await _submit(
        runtime, model="placeholder", size="64x64", params={"fail": "transient", "fail_attempts": 1}
    )

    before = utcnow()
    assert await runtime.worker.run_one(job_id) is JobStatus.QUEUED
    retrying = await runtime.repo.get_job(job_id)
    assert retrying.attempt == 1
    assert retrying.lease_owner is None
    assert retrying.error is not None
    assert (retrying.error.code, retrying.error.retryable) == ("provider_unavailable", True)
    # First retry waits between half and all of retry_base_seconds (full jitter).
    assert (
        before + timedelta(seconds=0.1) <= retrying.run_after <= utcnow() + timedelta(seconds=0.2)
    )

    assert await runtime.worker.run_one(job_id) is None  # not due yet
    await asyncio.sleep((retrying.run_after - utcnow()).total_seconds() + 0.02)
    assert await runtime.worker.run_one(job_id) is JobStatus.SUCCEEDED

    done = await runtime.repo.get_job(job_id)
    assert done.attempt == 2
    assert done.error is None
    assert len(done.outputs) == 1
    errors = [e["data"] for e in await runtime.repo.events_after(job_id, 0) if e["type"] == "error"]
    assert errors == [
        {
            "code": "provider_unavailable",
            "message": errors[0]["message"],
            "retryable": True,
            "will_retry": True,
        }
    ]


async def test_permanent_failure_fails_at_once(stepped: Runtime) -> None:
    job_id = await _submit(stepped, model="placeholder", size="64x64", params={"fail": "permanent"})

    assert await stepped.worker.run_one(job_id) is JobStatus.FAILED

    job = await stepped.repo.get_job(job_id)
    assert job.attempt == 1
    assert job.error is not None
    assert (job.error.code, job.error.retryable) == ("provider_error", False)
    assert job.finished_at is not None
    assert job.outputs == []
    assert await stepped.worker.run_one(job_id) is None
    types = [e["type"] for e in await stepped.repo.events_after(job_id, 0)]
    assert types[-3:] == ["error", "status", "done"]


async def test_retryable_failure_on_the_last_attempt_fails_the_job(
    make_runtime: MakeRuntime,
) -> None:
    runtime = await make_runtime(max_attempts=2)
    job_id = await _submit(runtime, model="placeholder", size="64x64", params={"fail": "transient"})

    assert await runtime.worker.run_one(job_id) is JobStatus.QUEUED
    await asyncio.sleep(0.06)  # > retry_max_seconds
    assert await runtime.worker.run_one(job_id) is JobStatus.FAILED

    job = await runtime.repo.get_job(job_id)
    assert (job.attempt, job.max_attempts) == (2, 2)
    assert job.error is not None
    assert (job.error.code, job.error.retryable) == ("provider_unavailable", True)
    await asyncio.sleep(0.06)
    assert await runtime.worker.run_one(job_id) is None


async def test_rate_limited_retry_after_decides_when_the_job_is_due(
    make_runtime: MakeRuntime, scripted: Any
) -> None:
    runtime = await make_runtime(retry_max_seconds=60.0)

    async def rate_limited(task: Task, ctx: RunContext) -> list[Output]:
        raise RateLimited("slow down", retry_after=5)

    scripted.script = rate_limited
    job_id = await _submit(runtime, model=SCRIPTED)

    before = utcnow()
    assert await runtime.worker.run_one(job_id) is JobStatus.QUEUED

    job = await runtime.repo.get_job(job_id)
    assert job.error is not None and job.error.code == "rate_limited"
    assert before + timedelta(seconds=5) <= job.run_after <= utcnow() + timedelta(seconds=5.1)
    assert await runtime.worker.run_one(job_id) is None


async def test_a_retried_attempt_sees_the_provider_ref_saved_before_it(
    stepped: Runtime, scripted: Any
) -> None:
    async def flaky_after_submitting(task: Task, ctx: RunContext) -> list[Output]:
        if ctx.provider_ref is None:
            await ctx.save_provider_ref("pred_123")
            raise ProviderUnavailable("connection reset while polling")
        return [Output(data=render(task.prompt, SCRIPTED, 1, task.width, task.height))]

    scripted.script = flaky_after_submitting
    job_id = await _submit(stepped, model=SCRIPTED)

    assert await stepped.worker.run_one(job_id) is JobStatus.QUEUED
    assert (await stepped.repo.get_job(job_id)).provider_ref == "pred_123"
    await asyncio.sleep(0.06)
    assert await stepped.worker.run_one(job_id) is JobStatus.SUCCEEDED
    assert [(attempt, ref) for _, attempt, ref in scripted.calls] == [(1, None), (2, "pred_123")]


async def test_an_unexpected_exception_is_an_internal_error(
    stepped: Runtime, scripted: Any
) -> None:
    async def buggy(task: Task, ctx: RunContext) -> list[Output]:
        raise KeyError("oops")

    scripted.script = buggy
    job_id = await _submit(stepped, model=SCRIPTED)

    assert await stepped.worker.run_one(job_id) is JobStatus.QUEUED
    job = await stepped.repo.get_job(job_id)
    assert job.error is not None
    assert (job.error.code, job.error.retryable) == ("internal_error", True)
    assert "KeyError" in job.error.message


async def test_too_few_outputs_is_not_a_success(make_runtime: MakeRuntime, scripted: Any) -> None:
    runtime = await make_runtime(max_attempts=1)

    async def one_image(task: Task, ctx: RunContext) -> list[Output]:
        return [Output(data=render(task.prompt, SCRIPTED, 1, task.width, task.height))]

    scripted.script = one_image
    job_id = await _submit(runtime, model=SCRIPTED, n=2)

    assert await runtime.worker.run_one(job_id) is JobStatus.FAILED
    job = await runtime.repo.get_job(job_id)
    assert job.error is not None and job.error.code == "internal_error"
    assert job.outputs == []


async def test_cancel_while_running_stops_the_provider_and_stores_nothing(
    stepped: Runtime, scripted: Any
) -> None:
    scripted.script = scripted.block_forever
    job_id = await _submit(stepped, model=SCRIPTED)
    owner = await stepped.local_owner()

    run = asyncio.create_task(stepped.worker.run_one(job_id))
    await asyncio.wait_for(scripted.started.wait(), 5)
    canceled = await stepped.service.cancel(owner.id, job_id)
    assert canceled.status is JobStatus.CANCELED

    await asyncio.wait_for(run, 5)
    assert scripted.canceled == [job_id]
    job = await stepped.repo.get_job(job_id)
    assert job.status is JobStatus.CANCELED
    assert job.outputs == []
    assert await _asset_count(stepped) == 0
    assert [e["type"] for e in await stepped.repo.events_after(job_id, 0)][-2:] == [
        "status",
        "done",
    ]


async def test_heartbeat_extends_the_lease_while_the_provider_works(
    make_runtime: MakeRuntime, scripted: Any
) -> None:
    runtime = await make_runtime(lease_seconds=0.3)
    release = asyncio.Event()

    async def slow(task: Task, ctx: RunContext) -> list[Output]:
        await release.wait()
        return [Output(data=render(task.prompt, SCRIPTED, 1, task.width, task.height))]

    scripted.script = slow
    job_id = await _submit(runtime, model=SCRIPTED)

    run = asyncio.create_task(runtime.worker.run_one(job_id))
    await asyncio.wait_for(scripted.started.wait(), 5)
    first = (await runtime.repo.get_job(job_id)).lease_expires_at
    await asyncio.sleep(0.5)  # longer than the lease itself
    held = await runtime.repo.get_job(job_id)
    assert first is not None and held.lease_expires_at is not None
    assert held.lease_expires_at > first
    assert held.lease_expires_at > utcnow()
    assert (held.status, held.lease_owner) == (JobStatus.RUNNING, runtime.worker.id)

    release.set()
    assert await asyncio.wait_for(run, 5) is JobStatus.SUCCEEDED


async def test_a_stolen_lease_drops_the_first_workers_completion(
    make_runtime: MakeRuntime, scripted: Any
) -> None:
    runtime = await make_runtime(lease_seconds=30)
    release = asyncio.Event()

    async def slow(task: Task, ctx: RunContext) -> list[Output]:
        await release.wait()
        return [Output(data=render(task.prompt, SCRIPTED, 1, task.width, task.height))]

    scripted.script = slow
    job_id = await _submit(runtime, model=SCRIPTED)
    run = asyncio.create_task(runtime.worker.run_one(job_id))
    await asyncio.wait_for(scripted.started.wait(), 5)

    # Another worker, a minute later as far as the lease is concerned, takes over.
    later = utcnow() + timedelta(seconds=60)
    thief = await runtime.repo.claim(job_id, "thief", later + timedelta(seconds=30), later)
    assert thief is not None and thief.attempt == 2

    release.set()
    await asyncio.wait_for(run, 5)
    job = await runtime.repo.get_job(job_id)
    assert (job.status, job.lease_owner) == (JobStatus.RUNNING, "thief")
    assert job.outputs == []
    assert await _asset_count(runtime) == 0


async def test_a_heartbeat_that_finds_the_lease_gone_stops_the_provider(
    make_runtime: MakeRuntime, scripted: Any
) -> None:
    runtime = await make_runtime(lease_seconds=0.3)
    scripted.script = scripted.block_forever
    job_id = await _submit(runtime, model=SCRIPTED)
    run = asyncio.create_task(runtime.worker.run_one(job_id))
    await asyncio.wait_for(scripted.started.wait(), 5)

    later = utcnow() + timedelta(seconds=60)
    assert (
        await runtime.repo.claim(job_id, "thief", later + timedelta(seconds=30), later) is not None
    )

    await asyncio.wait_for(run, 5)
    assert scripted.canceled == [job_id]
    assert (await runtime.repo.get_job(job_id)).lease_owner == "thief"


async def test_stop_releases_running_jobs_without_spending_an_attempt(
    stepped: Runtime, scripted: Any
) -> None:
    scripted.script = scripted.block_forever
    job_id = await _submit(stepped, model=SCRIPTED)
    run = asyncio.create_task(stepped.worker.run_one(job_id))
    await asyncio.wait_for(scripted.started.wait(), 5)
    assert (await stepped.repo.get_job(job_id)).attempt == 1

    await stepped.worker.stop()
    await asyncio.wait_for(run, 5)

    assert scripted.canceled == [job_id]
    job = await stepped.repo.get_job(job_id)
    assert (job.status, job.attempt, job.lease_owner, job.lease_expires_at) == (
        JobStatus.QUEUED,
        0,
        None,
        None,
    )
    assert job.run_after <= utcnow()
    last = (await stepped.repo.events_after(job_id, 0))[-1]
    assert last["data"] == {"status": "queued", "released": True}
    # A stopped worker takes no more messages.
    await stepped.worker.handle(job_id)
    assert (await stepped.repo.get_job(job_id)).status is JobStatus.QUEUED


async def test_an_attempt_past_the_job_timeout_is_a_provider_timeout(
    make_runtime: MakeRuntime, scripted: Any
) -> None:
    runtime = await make_runtime(job_timeout_seconds=0.2, max_attempts=1)
    scripted.script = scripted.block_forever
    job_id = await _submit(runtime, model=SCRIPTED)

    assert await asyncio.wait_for(runtime.worker.run_one(job_id), 5) is JobStatus.FAILED

    job = await runtime.repo.get_job(job_id)
    assert job.error is not None
    assert (job.error.code, job.error.retryable) == ("provider_timeout", True)
    assert scripted.canceled == [job_id]


async def test_handle_runs_the_job_in_a_slot(make_runtime: MakeRuntime) -> None:
    runtime = await make_runtime(worker_concurrency=1)
    job_id = await _submit(runtime, model="placeholder", size="32x32")

    await runtime.worker.handle(job_id)

    assert (await runtime.repo.get_job(job_id)).status is JobStatus.SUCCEEDED
