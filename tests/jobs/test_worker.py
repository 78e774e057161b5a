"""The worker, one job at a time: ``run_one`` claims, runs, stores and finishes a job inline.

Also fallback chains, job deadlines and per-provider concurrency limits.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import func, select

from imagemill.config import Settings
from imagemill.db.records import StoredBlob
from imagemill.db.tables import assets
from imagemill.domain import JobStatus, Output, Submission, Task, TaskKind
from imagemill.errors import ContentRejected, ProviderError, ProviderUnavailable, RateLimited
from imagemill.jobs.service import utcnow
from imagemill.providers.base import RunContext
from imagemill.providers.circuits import CircuitState
from imagemill.providers.local import LocalModels
from imagemill.providers.placeholder import PlaceholderProvider, render
from imagemill.providers.registry import Registry
from imagemill.runtime import Runtime
from imagemill.specs import InputLimits, ModelSpec, Pricing, SizeRange
from imagemill.storage.images import png_params, probe

SCRIPTED = "scripted/model"
BACKUP = "backup/model"
MakeRuntime = Callable[..., Awaitable[Runtime]]
Script = Callable[[Task, RunContext], Awaitable[list[Output]]]


async def _submit(runtime: Runtime, **fields: object) -> str:
    owner = await runtime.local_owner()
    fields.setdefault("prompt", "a lighthouse at dusk")
    [job] = await runtime.service.submit(owner.id, Submission(**fields))
    return job.id


async def _asset_count(runtime: Runtime) -> int:
    query = select(func.count()).select_from(assets)
    return int(await runtime.db.read(lambda conn: conn.execute(query).scalar_one()))


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


async def test_progress_goes_live_in_order_and_is_stored_in_order(stepped: Runtime) -> None:
    job_id = await _submit(stepped, model="placeholder", size="64x64", params={"latency_ms": 300})

    with stepped.bus.subscribe({job_id}) as live:
        assert await stepped.worker.run_one(job_id) is JobStatus.SUCCEEDED
        events = [live.queue.get_nowait() for _ in range(live.queue.qsize())]

    reports = [e["data"]["progress"] for e in events if e.get("live")]
    assert len(reports) >= 2
    assert reports == sorted(reports)
    assert reports[-1] == 1.0
    stored = [
        e["data"]["progress"]
        for e in await stepped.repo.events_after(job_id, 0)
        if e["type"] == "progress"
    ]
    assert stored == sorted(stored) and set(stored) <= set(reports)
    assert (await stepped.repo.get_job(job_id)).progress == 1.0


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
    assert (await stepped.repo.get_job(job_id)).provider_ref == f"{SCRIPTED} pred_123"
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
    assert job.error.message == "unexpected error: key error: 'oops'"  # plain words


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
    runtime = await make_runtime(hosted_concurrency=1)
    job_id = await _submit(runtime, model="placeholder", size="32x32")

    await runtime.worker.handle(job_id)

    assert (await runtime.repo.get_job(job_id)).status is JobStatus.SUCCEEDED


# -- fallback chains ------------------------------------------------------------------------


def _renders(model: str) -> Script:
    async def script(task: Task, ctx: RunContext) -> list[Output]:
        return [
            Output(data=render(task.prompt, model, i, task.width, task.height), seed=i)
            for i in range(task.n)
        ]

    return script


def _fails(error: Callable[[], ProviderError], attempts: int = 99) -> Script:
    """A script that raises a new ``error()`` on the first ``attempts`` attempts, then renders."""

    async def script(task: Task, ctx: RunContext) -> list[Output]:
        if ctx.attempt <= attempts:
            raise error()
        return await _renders("any")(task, ctx)

    return script


class Backup:
    """A second scripted provider, to stand behind ``scripted`` in fallback chains."""

    name = "backup"

    def __init__(self) -> None:
        self.script = _renders(BACKUP)
        self.calls: list[tuple[Task, int, str | None]] = []  # task, attempt, provider_ref seen

    def models(self) -> list[ModelSpec]:
        return [
            ModelSpec(
                id=BACKUP,
                provider=self.name,
                name="model",
                params_schema={"type": "object"},
                sizes=SizeRange(min_side=16, max_side=4096, default="64x64"),
                pricing=Pricing(per_image=0.25),
            )
        ]

    async def run(self, task: Task, ctx: RunContext) -> list[Output]:
        self.calls.append((task, ctx.attempt, ctx.provider_ref))
        return await self.script(task, ctx)


# The configured prices: the primary's would show if the fallback's outputs were priced by it.
PRICES = {SCRIPTED: Pricing(per_image=1.0), "placeholder": Pricing(per_image=0.02)}


@pytest.fixture
def backup() -> Backup:
    return Backup()


@pytest.fixture
async def chained(settings: Settings, scripted: Any, backup: Backup) -> AsyncIterator[Runtime]:
    """A stepped runtime with placeholder, scripted and backup models, and configured prices."""
    registry = Registry([PlaceholderProvider(), scripted, backup], PRICES)
    async with Runtime(settings, registry=registry, run_workers=False, sweep=False) as runtime:
        yield runtime


async def _stored_bytes(runtime: Runtime, asset_id: str) -> bytes:
    return await runtime.blobs.get((await runtime.repo.get_asset(asset_id)).storage_key)


async def _logged(runtime: Runtime, job_id: str) -> list[str]:
    events = await runtime.repo.events_after(job_id, 0)
    return [e["data"]["message"] for e in events if e["type"] == "log"]


async def test_a_failing_provider_opens_its_circuit_and_jobs_skip_it_until_the_cooldown(
    settings: Settings, scripted: Any, backup: Backup
) -> None:
    tuned = settings.model_copy(
        update={"circuit_failure_threshold": 2, "circuit_cooldown_seconds": 0.5}
    )
    registry = Registry([PlaceholderProvider(), scripted, backup], PRICES)
    async with Runtime(tuned, registry=registry, run_workers=False, sweep=False) as runtime:
        scripted.script = _fails(lambda: ProviderUnavailable("upstream returned 503"))
        for _ in range(2):  # each falls back; the circuit counts the provider's failures
            job_id = await _submit(runtime, model=SCRIPTED, fallback=[BACKUP])
            assert await runtime.worker.run_one(job_id) is JobStatus.SUCCEEDED
        called = len(scripted.calls)
        assert runtime.worker.circuits.state("scripted")[0] is CircuitState.OPEN

        job_id = await _submit(runtime, model=SCRIPTED, fallback=[BACKUP])
        assert await runtime.worker.run_one(job_id) is JobStatus.SUCCEEDED
        job = await runtime.repo.get_job(job_id)
        assert len(scripted.calls) == called, "an open circuit is not called"
        [output] = job.outputs
        assert (output.model, output.fallback) == (BACKUP, True)
        assert "scripted failed 2 times in a row; its circuit is open" in (
            output.fallback_reason or ""
        )
        # Without a fallback the job waits for the circuit, queued, spending no attempt.
        waits = await _submit(runtime, model=SCRIPTED)
        await runtime.worker.handle(waits)
        still = await runtime.repo.get_job(waits)
        assert (still.status, still.attempt) == (JobStatus.QUEUED, 0)
        # One claimed anyway (its wake-up came before the circuit opened) is given back,
        # its attempt not spent: no call was made.
        alone = await _submit(runtime, model=SCRIPTED)
        assert await runtime.worker.run_one(alone) is JobStatus.QUEUED
        waiting = await runtime.repo.get_job(alone)
        assert (waiting.status, waiting.attempt, waiting.error) == (JobStatus.QUEUED, 0, None)
        assert len(scripted.calls) == called

        await asyncio.sleep(0.5)  # the cool-down itself, not a race
        scripted.script = _renders(SCRIPTED)
        job_id = await _submit(runtime, model=SCRIPTED, fallback=[BACKUP])
        assert await runtime.worker.run_one(job_id) is JobStatus.SUCCEEDED
        [output] = (await runtime.repo.get_job(job_id)).outputs
        assert (output.model, output.fallback) == (SCRIPTED, False)  # the trial call
        assert runtime.worker.circuits.state("scripted")[0] is CircuitState.CLOSED


async def test_a_provider_timing_out_counts_against_its_circuit(
    settings: Settings, scripted: Any
) -> None:
    tuned = settings.model_copy(
        update={
            "circuit_failure_threshold": 1,
            "circuit_cooldown_seconds": 60.0,
            "job_timeout_seconds": 0.3,
            "max_attempts": 1,
        }
    )
    registry = Registry([PlaceholderProvider(), scripted])
    async with Runtime(tuned, registry=registry, run_workers=False, sweep=False) as runtime:
        scripted.script = scripted.block_forever
        job_id = await _submit(runtime, model=SCRIPTED)
        assert await runtime.worker.run_one(job_id) is JobStatus.FAILED
        assert (await runtime.repo.get_job(job_id)).error.code == "provider_timeout"  # type: ignore[union-attr]
        assert runtime.worker.circuits.state("scripted")[0] is CircuitState.OPEN


async def test_a_job_whose_enhancer_is_failing_waits_without_spending_an_attempt(
    settings: Settings, scripted: Any
) -> None:
    tuned = settings.model_copy(
        update={"circuit_failure_threshold": 1, "circuit_cooldown_seconds": 60.0}
    )
    registry = Registry([PlaceholderProvider(), scripted])
    async with Runtime(tuned, registry=registry, run_workers=False, sweep=False) as runtime:
        runtime.worker.circuits.failed("placeholder", ProviderUnavailable("down"))
        job_id = await _submit(runtime, model=SCRIPTED, enhance={"model": "placeholder"})
        await runtime.worker.handle(job_id)  # the line sees the enhancer's circuit open
        assert (await runtime.repo.get_job(job_id)).attempt == 0
        assert await runtime.worker.run_one(job_id) is JobStatus.QUEUED  # claimed anyway
        job = await runtime.repo.get_job(job_id)
        assert (job.status, job.attempt, job.error) == (JobStatus.QUEUED, 0, None)
        assert scripted.calls == []


async def test_an_enhanced_prompt_is_fitted_to_the_models_prompt_limit(
    settings: Settings, scripted: Any
) -> None:
    short = scripted.models()[0].model_copy(update={"limits": InputLimits(max_prompt_chars=60)})
    scripted.models = lambda: [short]
    registry = Registry([PlaceholderProvider(), scripted])
    async with Runtime(settings, registry=registry, run_workers=False, sweep=False) as runtime:
        style = "cinematic, anamorphic lens, golden hour light, film grain, deep shadows"
        job_id = await _submit(
            runtime,
            model=SCRIPTED,
            prompt="a fox",
            enhance={"model": "placeholder", "style": style},
        )
        assert await runtime.worker.run_one(job_id) is JobStatus.SUCCEEDED
        [(task, _, _)] = scripted.calls
        assert len(task.prompt) <= 60 and task.prompt.startswith("[placeholder enhancement] a fox")
        assert (await runtime.repo.get_job(job_id)).enhanced_prompt == task.prompt


async def test_a_failed_model_falls_back_to_the_next_which_makes_the_outputs(
    chained: Runtime, scripted: Any, backup: Backup
) -> None:
    scripted.script = _fails(lambda: ProviderUnavailable("upstream returned 503"))
    job_id = await _submit(
        chained,
        model=SCRIPTED,
        n=2,
        size="48x32",
        params={"steps": 4},
        fallback=[{"model": BACKUP, "params": {"style": "ink"}}],
    )

    assert await chained.worker.run_one(job_id) is JobStatus.SUCCEEDED

    job = await chained.repo.get_job(job_id)
    assert (job.model, job.error, job.attempt) == (SCRIPTED, None, 1)
    assert [(o.model, o.fallback) for o in job.outputs] == [(BACKUP, True), (BACKUP, True)]
    reason = f"{SCRIPTED} failed (provider_unavailable: upstream returned 503)"
    assert [o.fallback_reason for o in job.outputs] == [reason, reason]
    assert [o.cost_usd for o in job.outputs] == [0.25, 0.25]
    assert job.cost_usd == 0.5
    for output in job.outputs:
        assert (output.width, output.height) == (48, 32)
        embedded = png_params(await _stored_bytes(chained, output.asset_id))
        assert embedded is not None
        assert (embedded["model"], embedded["params"]) == (BACKUP, {"style": "ink"})
    [(primary_task, _, _)] = scripted.calls
    [(fallback_task, _, _)] = backup.calls
    assert primary_task.params == {"steps": 4}
    assert (fallback_task.model, fallback_task.params) == ("model", {"style": "ink"})
    assert (fallback_task.prompt, fallback_task.n) == (primary_task.prompt, 2)
    [message] = await _logged(chained, job_id)
    assert SCRIPTED in message and BACKUP in message
    assert "provider_unavailable" in message and "upstream returned 503" in message
    types = [e["type"] for e in await chained.repo.events_after(job_id, 0)]
    assert "error" not in types
    assert types.index("log") < types.index("output")


async def test_a_chain_goes_on_until_a_model_succeeds(
    chained: Runtime, scripted: Any, backup: Backup
) -> None:
    scripted.script = _fails(lambda: ProviderUnavailable("primary down"))
    backup.script = _fails(lambda: ContentRejected("backup refused"))
    job_id = await _submit(
        chained,
        model=SCRIPTED,
        n=2,
        size="40x40",
        seed=3,
        params={"steps": 4},
        fallback=[BACKUP, "placeholder"],
    )

    assert await chained.worker.run_one(job_id) is JobStatus.SUCCEEDED

    job = await chained.repo.get_job(job_id)
    assert [(o.model, o.fallback, o.seed) for o in job.outputs] == [
        ("placeholder", True, 3),
        ("placeholder", True, 4),
    ]
    assert job.cost_usd == pytest.approx(0.04)  # the configured placeholder price, twice
    for output in job.outputs:
        data = await _stored_bytes(chained, output.asset_id)
        assert (probe(data).content_type, probe(data).width) == ("image/png", 40)
        embedded = png_params(data)
        assert embedded is not None
        assert embedded["params"] == {}  # a plain id: none of the primary's params
    assert backup.calls[0][0].params == {}
    first, second = await _logged(chained, job_id)
    assert first.startswith(SCRIPTED) and "primary down" in first and first.endswith(BACKUP)
    assert second.startswith(BACKUP) and "content_rejected" in second
    assert second.endswith("placeholder")


async def test_a_fallbacks_outputs_are_not_a_cache_entry(chained: Runtime, scripted: Any) -> None:
    owner = await chained.local_owner()
    working = scripted.script
    scripted.script = _fails(lambda: ProviderUnavailable("down"))
    request = Submission(model=SCRIPTED, prompt="p", size="32x32", seed=9, fallback=["placeholder"])
    [first] = await chained.service.submit(owner.id, request)
    assert await chained.worker.run_one(first.id) is JobStatus.SUCCEEDED
    assert (await chained.repo.get_job(first.id)).outputs[0].fallback is True

    [second] = await chained.service.submit(owner.id, request)
    assert (second.status, second.cached) == (JobStatus.QUEUED, False)

    # Made by the model asked for, the same request is cached.
    scripted.script = working
    assert await chained.worker.run_one(second.id) is JobStatus.SUCCEEDED
    assert (await chained.repo.get_job(second.id)).outputs[0].fallback is False
    [third] = await chained.service.submit(owner.id, request)
    assert (third.status, third.cached) == (JobStatus.SUCCEEDED, True)


async def test_when_every_model_fails_the_error_is_the_primarys_naming_each_fallback(
    chained: Runtime, scripted: Any, backup: Backup
) -> None:
    scripted.script = _fails(lambda: ContentRejected("unsafe prompt"))
    backup.script = _fails(lambda: ProviderUnavailable("backup down"))
    job_id = await _submit(
        chained,
        model=SCRIPTED,
        fallback=[BACKUP, {"model": "placeholder", "params": {"fail": "permanent"}}],
    )

    # The primary's error is permanent, but the backup's is not: the chain is worth a retry.
    assert await chained.worker.run_one(job_id) is JobStatus.QUEUED

    job = await chained.repo.get_job(job_id)
    assert job.error is not None
    assert (job.error.code, job.error.retryable) == ("content_rejected", True)
    assert job.error.message == (
        "unsafe prompt (fallbacks failed too: backup/model: backup down; "
        "placeholder: placeholder: simulated permanent failure)"
    )
    assert job.outputs == []
    assert len(await _logged(chained, job_id)) == 2
    [error] = [
        e["data"] for e in await chained.repo.events_after(job_id, 0) if e["type"] == "error"
    ]
    assert (error["code"], error["will_retry"]) == ("content_rejected", True)


async def test_when_every_model_fails_for_good_the_job_fails_at_once(
    chained: Runtime, scripted: Any
) -> None:
    scripted.script = _fails(lambda: ContentRejected("unsafe prompt"))
    job_id = await _submit(
        chained,
        model=SCRIPTED,
        fallback=[{"model": "placeholder", "params": {"fail": "permanent"}}],
    )

    assert await chained.worker.run_one(job_id) is JobStatus.FAILED

    job = await chained.repo.get_job(job_id)
    assert (job.attempt, job.max_attempts) == (1, 3)
    assert job.error is not None
    assert (job.error.code, job.error.retryable) == ("content_rejected", False)
    assert job.error.message.startswith("unsafe prompt (fallbacks failed too: placeholder: ")


async def test_a_retry_runs_the_chain_again_from_the_primary(
    chained: Runtime, scripted: Any, backup: Backup
) -> None:
    scripted.script = _fails(lambda: ProviderUnavailable("primary down"), attempts=1)
    backup.script = _fails(lambda: ProviderUnavailable("backup down"), attempts=1)
    job_id = await _submit(chained, model=SCRIPTED, fallback=[BACKUP])

    assert await chained.worker.run_one(job_id) is JobStatus.QUEUED
    job = await chained.repo.get_job(job_id)
    assert job.error is not None and job.error.code == "provider_unavailable"
    await asyncio.sleep((job.run_after - utcnow()).total_seconds() + 0.02)
    assert await chained.worker.run_one(job_id) is JobStatus.SUCCEEDED

    done = await chained.repo.get_job(job_id)
    assert [(o.model, o.fallback) for o in done.outputs] == [(SCRIPTED, False)]
    assert done.cost_usd == 1.0
    assert [attempt for _, attempt, _ in scripted.calls] == [1, 2]
    assert [attempt for _, attempt, _ in backup.calls] == [1]  # not needed the second time


async def test_a_models_provider_ref_is_given_back_only_to_that_model(
    chained: Runtime, scripted: Any, backup: Backup
) -> None:
    async def submit_then_drop(task: Task, ctx: RunContext) -> list[Output]:
        if ctx.provider_ref is None:
            await ctx.save_provider_ref("pred_1")
        raise ProviderUnavailable("connection reset")

    scripted.script = submit_then_drop
    backup.script = _fails(lambda: ProviderUnavailable("backup down"))
    job_id = await _submit(chained, model=SCRIPTED, fallback=[BACKUP])

    assert await chained.worker.run_one(job_id) is JobStatus.QUEUED
    await asyncio.sleep(0.06)  # > retry_max_seconds
    assert await chained.worker.run_one(job_id) is JobStatus.QUEUED

    assert [(attempt, ref) for _, attempt, ref in scripted.calls] == [(1, None), (2, "pred_1")]
    assert [(attempt, ref) for _, attempt, ref in backup.calls] == [(1, None), (2, None)]


# -- deadlines ------------------------------------------------------------------------------


async def _error_events(runtime: Runtime, job_id: str) -> list[dict[str, Any]]:
    return [e["data"] for e in await runtime.repo.events_after(job_id, 0) if e["type"] == "error"]


async def test_a_provider_blocking_past_the_deadline_fails_the_job_at_the_deadline(
    stepped: Runtime, scripted: Any
) -> None:
    scripted.script = scripted.block_forever
    loop = asyncio.get_running_loop()
    submitted = loop.time()
    job_id = await _submit(stepped, model=SCRIPTED, deadline_seconds=0.3)

    assert await asyncio.wait_for(stepped.worker.run_one(job_id), 5) is JobStatus.FAILED

    assert 0.25 <= loop.time() - submitted < 1.5
    job = await stepped.repo.get_job(job_id)
    assert job.error is not None
    assert (job.error.code, job.error.retryable) == ("deadline_exceeded", False)
    assert job.attempt < job.max_attempts
    assert scripted.canceled == [job_id]
    assert [e["will_retry"] for e in await _error_events(stepped, job_id)] == [False]


async def test_the_attempt_timeout_is_cut_short_by_the_deadline(
    make_runtime: MakeRuntime, scripted: Any
) -> None:
    # Seconds, not tenths: a busy machine's overheads must not eat the margins.
    runtime = await make_runtime(job_timeout_seconds=2.0)
    scripted.script = scripted.block_forever
    job_id = await _submit(runtime, model=SCRIPTED, deadline_seconds=3.5)

    # The first attempt has time for its whole timeout: a provider timeout, retried.
    assert await asyncio.wait_for(runtime.worker.run_one(job_id), 20) is JobStatus.QUEUED
    job = await runtime.repo.get_job(job_id)
    assert job.error is not None and job.error.code == "provider_timeout"
    await asyncio.sleep(max(0.0, (job.run_after - utcnow()).total_seconds()) + 0.01)

    # The second has only what is left before the deadline.
    started = asyncio.get_running_loop().time()
    assert await asyncio.wait_for(runtime.worker.run_one(job_id), 20) is JobStatus.FAILED
    assert asyncio.get_running_loop().time() - started < 1.95
    job = await runtime.repo.get_job(job_id)
    assert job.error is not None and job.error.code == "deadline_exceeded"
    assert job.attempt == 2


async def test_the_provider_sees_the_time_left_before_the_deadline(
    stepped: Runtime, scripted: Any
) -> None:
    seen: list[float] = []

    async def timed(task: Task, ctx: RunContext) -> list[Output]:
        seen.append(ctx.time_left())
        return await _renders(SCRIPTED)(task, ctx)

    scripted.script = timed
    job_id = await _submit(stepped, model=SCRIPTED, deadline_seconds=30)

    assert await stepped.worker.run_one(job_id) is JobStatus.SUCCEEDED
    assert 25 < seen[0] <= 30  # not the 600 s attempt timeout


async def test_a_retry_that_would_come_after_the_deadline_fails_the_job_instead(
    make_runtime: MakeRuntime, scripted: Any
) -> None:
    runtime = await make_runtime(retry_base_seconds=10, retry_max_seconds=10)
    scripted.script = _fails(lambda: ProviderUnavailable("try later"))
    soon = await _submit(runtime, model=SCRIPTED, deadline_seconds=5)
    later = await _submit(runtime, model=SCRIPTED, deadline_seconds=60)

    assert await runtime.worker.run_one(soon) is JobStatus.FAILED
    assert await runtime.worker.run_one(later) is JobStatus.QUEUED  # 5-10 s: before its deadline

    job = await runtime.repo.get_job(soon)
    assert (job.status, job.attempt, job.max_attempts) == (JobStatus.FAILED, 1, 3)
    assert job.error is not None and job.error.code == "provider_unavailable"
    [error] = await _error_events(runtime, soon)
    assert (error["code"], error["will_retry"]) == ("provider_unavailable", False)
    [error] = await _error_events(runtime, later)
    assert error["will_retry"] is True


async def test_a_job_claimed_after_its_deadline_fails_without_running(
    stepped: Runtime, scripted: Any
) -> None:
    job_id = await _submit(stepped, model=SCRIPTED, deadline_seconds=0.05)
    await asyncio.sleep(0.06)

    assert await stepped.worker.run_one(job_id) is JobStatus.FAILED

    assert scripted.calls == []
    job = await stepped.repo.get_job(job_id)
    assert job.error is not None
    assert (job.error.code, job.error.retryable) == ("deadline_exceeded", False)
    assert job.outputs == []
    assert await stepped.worker.run_one(job_id) is None


# -- per-provider concurrency ---------------------------------------------------------------


class Gate:
    """A script that holds every call until released, counting how many run at once."""

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0
        self.release = asyncio.Event()

    async def __call__(self, task: Task, ctx: RunContext) -> list[Output]:
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await self.release.wait()
            return await _renders(SCRIPTED)(task, ctx)
        finally:
            self.running -= 1


async def _until(condition: Callable[[], Awaitable[bool]]) -> None:
    for _ in range(3000):  # 30 s: a busy machine is slow, never this slow
        if await condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never met")


async def _handle_six(runtime: Runtime, scripted: Any, gate: Gate, peak: int) -> None:
    scripted.script = gate
    job_ids = [await _submit(runtime, model=SCRIPTED, size="16x16") for _ in range(6)]
    handling = asyncio.gather(*(runtime.worker.handle(job_id) for job_id in job_ids))

    async def provider_full() -> bool:
        return gate.running == peak

    try:
        await _until(provider_full)
        await asyncio.sleep(0.05)  # time for any job not held back to reach the provider
        assert (gate.running, gate.peak) == (peak, peak)
        jobs = await runtime.repo.get_jobs(job_ids)
        running = [j for j in jobs if j.status is JobStatus.RUNNING]
        waiting = [j for j in jobs if j.status is JobStatus.QUEUED]
        assert len(running) == peak, "running: only while the provider works on it"
        assert len(waiting) == 6 - peak, "waiting for the provider's slot: still queued"
        positions = sorted(runtime.worker.position(j.id) or 0 for j in waiting)
        assert positions == list(range(1, 7 - peak)), "each with its place in line"
        assert all(j.attempt == 0 and j.started_at is None for j in waiting)
    finally:
        gate.release.set()
        await asyncio.wait_for(handling, 5)
    assert gate.peak == peak
    assert len(scripted.calls) == 6
    jobs = await runtime.repo.get_jobs(job_ids)
    assert all(job.status is JobStatus.SUCCEEDED for job in jobs)


async def test_a_provider_runs_at_most_its_concurrency_of_jobs_at_once(
    make_runtime: MakeRuntime, scripted: Any
) -> None:
    runtime = await make_runtime(provider_concurrency={"scripted": 2}, worker_concurrency=8)
    await _handle_six(runtime, scripted, Gate(), peak=2)


async def test_without_a_limit_a_providers_jobs_all_run_at_once(
    make_runtime: MakeRuntime, scripted: Any
) -> None:
    runtime = await make_runtime(provider_concurrency={"placeholder": 1}, worker_concurrency=8)
    await _handle_six(runtime, scripted, Gate(), peak=6)


async def test_hosted_jobs_are_not_held_to_the_local_device_slots(
    make_runtime: MakeRuntime, scripted: Any
) -> None:
    """A hosted call mostly waits on the network: one local slot does not bound them."""
    runtime = await make_runtime(worker_concurrency=1)
    await _handle_six(runtime, scripted, Gate(), peak=6)


async def test_hosted_jobs_in_flight_are_bounded_by_hosted_concurrency(
    make_runtime: MakeRuntime, scripted: Any
) -> None:
    runtime = await make_runtime(hosted_concurrency=3, worker_concurrency=8)
    await _handle_six(runtime, scripted, Gate(), peak=3)


async def test_jobs_on_a_local_device_share_the_worker_concurrency_slots(
    make_runtime: MakeRuntime, scripted: Any
) -> None:
    scripted.device = True  # as the local provider says it
    runtime = await make_runtime(worker_concurrency=2, hosted_concurrency=100)
    await _handle_six(runtime, scripted, Gate(), peak=2)


async def test_waiting_for_a_providers_slot_does_not_use_up_the_attempts_time(
    make_runtime: MakeRuntime, scripted: Any
) -> None:
    runtime = await make_runtime(provider_concurrency={"scripted": 1}, job_timeout_seconds=0.4)

    async def quarter_second(task: Task, ctx: RunContext) -> list[Output]:
        await asyncio.sleep(0.25)
        return [Output(data=render(task.prompt, SCRIPTED, 1, task.width, task.height))]

    scripted.script = quarter_second
    first, second = await _submit(runtime, model=SCRIPTED), await _submit(runtime, model=SCRIPTED)

    # The second waits ~0.25 s for the slot, then runs 0.25 s: 0.5 s in all, over the
    # attempt's 0.4 s, but its own attempt only took 0.25 s.
    outcomes = await asyncio.gather(runtime.worker.run_one(first), runtime.worker.run_one(second))

    assert outcomes == [JobStatus.SUCCEEDED, JobStatus.SUCCEEDED]


async def test_the_chains_error_leaves_the_providers_exception_alone(
    make_runtime: MakeRuntime, scripted: Any
) -> None:
    runtime = await make_runtime(max_attempts=1)
    shared = ProviderUnavailable("the same exception object, every time")

    async def always_the_same(task: Task, ctx: RunContext) -> list[Output]:
        raise shared

    scripted.script = always_the_same
    job_id = await _submit(
        runtime,
        model=SCRIPTED,
        params={},
        fallback=[{"model": "placeholder", "params": {"fail": "permanent"}}],
    )

    assert await runtime.worker.run_one(job_id) is JobStatus.FAILED
    assert shared.message == "the same exception object, every time"
    job = await runtime.repo.get_job(job_id)
    assert job.error is not None and "fallbacks failed too" in job.error.message


async def test_an_input_that_does_not_decode_fails_for_good_in_plain_words(
    settings: Settings,
) -> None:
    """An asset stored before uploads were decoded at the door (a PNG cut in half): its
    upscale was retried as a retryable internal_error. A decode error is never retryable."""
    whole = io.BytesIO()
    Image.frombytes("RGB", (64, 64), bytes(range(256)) * 48).save(whole, format="PNG")
    cut = whole.getvalue()[: len(whole.getvalue()) // 2]
    registry = Registry([PlaceholderProvider(), LocalModels(settings)])
    async with Runtime(settings, registry=registry, run_workers=False, sweep=False) as stepped:
        sha256, key = await stepped.blobs.put_content(cut)
        owner = await stepped.local_owner()
        blob = StoredBlob(sha256, key, "image/png", 64, 64, len(cut))
        asset = await stepped.repo.add_asset(owner.id, blob, utcnow())
        job_id = await _submit(
            stepped, kind="upscale", model="local/realesrgan-x2", prompt="", input_assets=[asset.id]
        )

        assert await stepped.worker.run_one(job_id) is JobStatus.FAILED
        job = await stepped.repo.get_job(job_id)
    assert job.error is not None and job.attempt == 1
    assert (job.error.code, job.error.retryable) == ("invalid_input", False)
    assert "truncated or corrupt" in job.error.message and "0x" not in job.error.message


class MaskReader:
    """An editing model that keeps the mask it was given."""

    name = "masks"

    def __init__(self) -> None:
        self.masks: list[bytes] = []

    def models(self) -> list[ModelSpec]:
        return [
            ModelSpec(
                id="masks/edit",
                provider=self.name,
                name="edit",
                kinds=[TaskKind.EDIT],
                limits=InputLimits(max_inputs=1, mask=True),
            )
        ]

    async def run(self, task: Task, ctx: RunContext) -> list[Output]:
        assert task.mask is not None
        self.masks.append(task.mask.data)
        return [Output(data=task.inputs[0].data)]


@pytest.mark.parametrize("openai_style", [True, False])
async def test_every_model_gets_the_mask_in_one_convention_at_the_images_size(
    settings: Settings, openai_style: bool
) -> None:
    """An OpenAI-style mask (transparent repaints) was read by the local inpainting as
    "repaint everything"; a model now always gets white-repaints, at the image's size."""
    reader = MaskReader()
    picture = io.BytesIO()
    Image.new("RGB", (128, 128), (10, 20, 30)).save(picture, format="PNG")
    if openai_style:
        mask = Image.new("RGBA", (64, 64), (0, 0, 0, 255))
        mask.paste((0, 0, 0, 0), (0, 0, 32, 64))
    else:
        mask = Image.new("L", (64, 64), 0)
        mask.paste(255, (0, 0, 32, 64))
    drawn = io.BytesIO()
    mask.save(drawn, format="PNG")
    registry = Registry([PlaceholderProvider(), reader])
    async with Runtime(settings, registry=registry, run_workers=False, sweep=False) as stepped:
        owner = (await stepped.local_owner()).id
        image = await stepped.repo.add_asset(
            owner, await stepped.assets.ingest(picture.getvalue()), utcnow()
        )
        masked = await stepped.repo.add_asset(
            owner, await stepped.assets.ingest(drawn.getvalue()), utcnow()
        )
        job_id = await _submit(
            stepped, kind="edit", model="masks/edit", input_assets=[image.id], mask=masked.id
        )
        assert await stepped.worker.run_one(job_id) is JobStatus.SUCCEEDED

    [given] = reader.masks
    seen = Image.open(io.BytesIO(given))
    assert (seen.mode, seen.size) == ("L", (128, 128))
    assert seen.getpixel((10, 64)) == 255 and seen.getpixel((118, 64)) == 0


async def test_two_jobs_falling_back_into_each_others_provider_both_finish(
    settings: Settings, scripted: Any, backup: Backup
) -> None:
    """Each provider has one slot. Job one (scripted, falling back to backup) and job two
    (backup, falling back to scripted) both fail on their first model at once: each
    waited for the slot the other held, for good. A fallback elsewhere lets go first."""
    limited = settings.model_copy(update={"provider_concurrency": {"scripted": 1, "backup": 1}})
    registry = Registry([PlaceholderProvider(), scripted, backup], PRICES)
    both_started = asyncio.Barrier(2)

    def failing_once(model: str, prompt: str) -> Script:
        async def script(task: Task, ctx: RunContext) -> list[Output]:
            if task.prompt == prompt:
                await both_started.wait()  # both first models hold their slot now
                raise ProviderUnavailable(f"{model} down")
            return await _renders(model)(task, ctx)

        return script

    scripted.script = failing_once(SCRIPTED, "one")
    backup.script = failing_once(BACKUP, "two")
    async with Runtime(limited, registry=registry, run_workers=False, sweep=False) as runtime:
        one = await _submit(runtime, model=SCRIPTED, prompt="one", fallback=[BACKUP])
        two = await _submit(runtime, model=BACKUP, prompt="two", fallback=[SCRIPTED])
        handling = asyncio.gather(runtime.worker.handle(one), runtime.worker.handle(two))
        await asyncio.wait_for(handling, 30)
        jobs = await runtime.repo.get_jobs([one, two])
    assert [j.status for j in jobs] == [JobStatus.SUCCEEDED, JobStatus.SUCCEEDED]
    assert [j.outputs[0].model for j in jobs] == [BACKUP, SCRIPTED]


async def test_a_wake_up_returns_at_once_and_the_job_runs_in_its_turn(
    make_runtime: MakeRuntime,
) -> None:
    """The broker's delivery returns at once, so every message reaches the line here
    (a receiver holding one task per waiting job served them in the broker's order)."""
    runtime = await make_runtime(hosted_concurrency=1)
    slow = {"model": "placeholder", "size": "16x16", "params": {"latency_ms": 300}}
    job_ids = [await _submit(runtime, **slow) for _ in range(3)]
    for job_id in job_ids:
        runtime.worker.wake(job_id)
        runtime.worker.wake(job_id)  # a duplicate message: one wait
    assert {runtime.worker.position(j) for j in job_ids[1:]} <= {1, 2, None}
    for _ in range(3000):  # 30 s
        jobs = await runtime.repo.get_jobs(job_ids)
        if all(job.status.terminal for job in jobs):
            break
        await asyncio.sleep(0.01)
    assert [job.status for job in jobs] == [JobStatus.SUCCEEDED] * 3
    assert all(job.attempt == 1 for job in jobs), "each ran once"


# -- the response budget --------------------------------------------------------------------


async def test_answers_held_at_once_stay_within_the_response_budget(
    make_runtime: MakeRuntime, scripted: Any
) -> None:
    """Hosted jobs are many at once, but the answers they read are held a budget's worth
    at a time (``memory.py``): the others wait before reading theirs, and what a job
    holds is given back once its outputs are stored, or it failed."""
    runtime = await make_runtime(response_budget_bytes=3000)
    reading: list[str] = []
    gate, three_reading = asyncio.Event(), asyncio.Event()

    async def script(task: Task, ctx: RunContext) -> list[Output]:
        await ctx.hold_memory(1000)
        reading.append(task.job_id)
        if len(reading) == 3:
            three_reading.set()
        await gate.wait()
        if task.prompt == "fails":
            raise ContentRejected("no")
        return await _renders(SCRIPTED)(task, ctx)

    scripted.script = script
    prompts = ["fails", *(f"job {n}" for n in range(5))]
    ids = [await _submit(runtime, model=SCRIPTED, size="32x32", prompt=p) for p in prompts]
    runs = [asyncio.create_task(runtime.worker.run_one(job_id)) for job_id in ids]
    await asyncio.wait_for(three_reading.wait(), timeout=30)  # six claims, a busy machine
    await asyncio.sleep(0.05)  # the other three stay waiting however long this is
    assert len(reading) == 3 and runtime.worker.calls.answers.in_use == 3000  # three wait

    gate.set()
    statuses = await asyncio.wait_for(asyncio.gather(*runs), timeout=30)

    assert sorted(reading) == sorted(ids)
    assert statuses.count(JobStatus.SUCCEEDED) == 5 and JobStatus.FAILED in statuses
    assert runtime.worker.calls.answers.in_use == 0


async def test_waiting_for_the_response_budget_does_not_count_against_the_attempt(
    make_runtime: MakeRuntime, scripted: Any
) -> None:
    """An attempt may take ``job_timeout_seconds`` of the provider's time; waiting for
    this process's memory is not the provider's, so it neither times the attempt out
    nor counts against the provider's circuit (here opened by a single failure)."""
    runtime = await make_runtime(
        response_budget_bytes=1000, job_timeout_seconds=0.5, circuit_failure_threshold=1
    )

    async def script(task: Task, ctx: RunContext) -> list[Output]:
        await ctx.hold_memory(1000)
        return await _renders(SCRIPTED)(task, ctx)

    scripted.script = script
    job_id = await _submit(runtime, model=SCRIPTED, size="32x32")
    others = await runtime.worker.calls.answers.acquire(1000)  # other answers fill the budget
    running = asyncio.create_task(runtime.worker.run_one(job_id))
    await asyncio.sleep(0.8)  # past the attempt's timeout, waiting for memory
    runtime.worker.calls.answers.release(others)

    assert await asyncio.wait_for(running, timeout=30) is JobStatus.SUCCEEDED
    assert (await runtime.repo.get_job(job_id)).attempt == 1
    state, _ = runtime.worker.circuits.state(scripted.name)
    assert state is CircuitState.CLOSED
