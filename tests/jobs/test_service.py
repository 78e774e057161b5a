"""The job service: submit (validation, fallback chains, deadlines, cache, groups,
idempotency), wait, cancel, list."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest

from imagemill.db.queries import JobFilter
from imagemill.domain import (
    CachePolicy,
    FallbackModel,
    JobStatus,
    Output,
    Submission,
    Task,
    TaskKind,
)
from imagemill.errors import Conflict, InvalidInput, NotFound
from imagemill.jobs.service import JobService, utcnow
from imagemill.jobs.sweeper import Sweeper
from imagemill.providers.base import RunContext
from imagemill.providers.placeholder import PlaceholderProvider
from imagemill.providers.registry import Registry
from imagemill.runtime import Runtime
from imagemill.specs import ModelSpec

SCRIPTED = "scripted/model"
MakeRuntime = Callable[..., Awaitable[Runtime]]


def _sub(**fields: Any) -> Submission:
    fields.setdefault("model", "placeholder")
    fields.setdefault("prompt", "a quiet harbour")
    fields.setdefault("size", "32x32")
    return Submission(**fields)


async def test_submit_records_a_queued_job_and_sends_its_id(stepped: Runtime) -> None:
    sent: list[str] = []

    async def dispatch(job_id: str) -> None:
        sent.append(job_id)

    service = JobService(
        stepped.repo, stepped.accounts, stepped.registry, stepped.bus, dispatch, 4, 60.0
    )
    owner = await stepped.local_owner()

    [job] = await service.submit(owner.id, _sub(seed=3, metadata={"ticket": 42}))

    assert sent == [job.id]
    assert job.id.startswith("job_")
    assert (job.status, job.attempt, job.max_attempts) == (JobStatus.QUEUED, 0, 4)
    assert job.request.model == "placeholder"
    assert job.request.size == "32x32"
    assert job.request.metadata == {"ticket": 42}
    assert job.cache_key is not None and len(job.cache_key) == 64
    assert (await stepped.repo.get_job(job.id)).status is JobStatus.QUEUED


async def test_a_failing_dispatch_loses_no_job(stepped: Runtime) -> None:
    async def broken(job_id: str) -> None:
        raise ConnectionError("the broker is down")

    service = JobService(
        stepped.repo, stepped.accounts, stepped.registry, stepped.bus, broken, 3, 60.0
    )
    owner = await stepped.local_owner()

    [job] = await service.submit(owner.id, _sub())

    assert (await stepped.repo.get_job(job.id)).status is JobStatus.QUEUED
    resent: list[str] = []

    async def record(job_id: str) -> None:
        resent.append(job_id)

    assert await Sweeper(stepped.repo, record, 60, 1).sweep(requeue_after=0) == 1
    assert resent == [job.id]
    assert await stepped.worker.run_one(job.id) is JobStatus.SUCCEEDED


async def test_several_models_make_one_job_each_under_one_group(stepped: Runtime) -> None:
    owner = await stepped.local_owner()

    jobs = await stepped.service.submit(
        owner.id, _sub(model=None, models=["placeholder", SCRIPTED])
    )

    assert [j.model for j in jobs] == ["placeholder", SCRIPTED]
    assert jobs[0].group_id is not None and jobs[0].group_id.startswith("grp_")
    assert jobs[0].group_id == jobs[1].group_id
    grouped = await stepped.service.list(owner.id, JobFilter(group_id=jobs[0].group_id))
    assert {j.id for j in grouped} == {j.id for j in jobs}


async def test_a_model_listed_twice_is_invalid(stepped: Runtime) -> None:
    owner = await stepped.local_owner()
    with pytest.raises(InvalidInput) as raised:
        await stepped.service.submit(
            owner.id, _sub(model=None, models=["placeholder", "placeholder"])
        )
    assert raised.value.field == "models.1"  # the second time it is named


async def test_an_unknown_model_in_a_list_names_its_position(stepped: Runtime) -> None:
    owner = await stepped.local_owner()
    with pytest.raises(InvalidInput) as raised:
        await stepped.service.submit(owner.id, _sub(model=None, models=["placeholder", "nope/x"]))
    assert raised.value.field == "models.1"
    assert await stepped.service.list(owner.id, JobFilter(), 10) == []


async def test_an_unknown_input_asset_names_its_position(stepped: Runtime) -> None:
    owner = await stepped.local_owner()
    with pytest.raises(InvalidInput) as raised:
        await stepped.service.submit(owner.id, _sub(input_assets=["ast_missing"]))
    assert raised.value.field == "input_assets.0"


async def test_a_preset_is_expanded_at_submit(stepped: Runtime) -> None:
    owner = await stepped.local_owner()
    await stepped.accounts.create_preset(
        owner.id,
        {
            "name": "slow",
            "description": "",
            "model": "placeholder",
            "prompt_template": "{prompt}, oil",
            "negative_prompt": "blurry",
            "size": "48x32",
            "params": {"latency_ms": 10},
        },
        utcnow(),
    )

    [job] = await stepped.service.submit(owner.id, Submission(preset="slow", prompt="a boat"))

    assert job.request.model == "placeholder"
    assert job.request.prompt == "a boat, oil"
    assert job.request.negative_prompt == "blurry"
    assert job.request.size == "48x32"
    assert job.request.params == {"latency_ms": 10}


async def test_the_same_idempotency_key_returns_the_same_jobs(stepped: Runtime) -> None:
    owner = await stepped.local_owner()
    first = await stepped.service.submit(
        owner.id, _sub(model=None, models=["placeholder", SCRIPTED]), idempotency_key="k-1"
    )
    again = await stepped.service.submit(
        owner.id, _sub(model=None, models=["placeholder", SCRIPTED]), idempotency_key="k-1"
    )

    assert [j.id for j in again] == sorted(j.id for j in first)
    with pytest.raises(InvalidInput) as reused:  # the key, with another request
        await stepped.service.submit(owner.id, _sub(prompt="different"), idempotency_key="k-1")
    assert reused.value.field == "Idempotency-Key"
    other = await stepped.accounts.owner_named("someone-else", utcnow())
    [theirs] = await stepped.service.submit(other.id, _sub(), idempotency_key="k-1")
    assert theirs.id not in {j.id for j in first}


async def test_a_replayed_group_keeps_the_order_of_the_models(stepped: Runtime) -> None:
    owner = await stepped.local_owner()
    for attempt in range(8):  # the two ids of a group are usually made in the same millisecond
        models = ["placeholder", SCRIPTED] if attempt % 2 else [SCRIPTED, "placeholder"]
        key = f"order-{attempt}"
        first = await stepped.service.submit(owner.id, _sub(model=None, models=models), key)
        again = await stepped.service.submit(owner.id, _sub(model=None, models=models), key)
        assert [j.model for j in first] == models
        assert [j.id for j in again] == [j.id for j in first]


# -- fallback chains ------------------------------------------------------------------------


async def test_fallbacks_may_be_ids_or_models_with_params(stepped: Runtime) -> None:
    owner = await stepped.local_owner()

    [by_id] = await stepped.service.submit(
        owner.id, _sub(model=SCRIPTED, params={"steps": 4}, fallback=["placeholder"])
    )
    [with_params] = await stepped.service.submit(
        owner.id,
        _sub(fallback=[{"model": SCRIPTED, "params": {"style": "ink"}}]),
    )

    assert by_id.request.fallback == [FallbackModel(model="placeholder", params={})]
    assert with_params.request.fallback == [FallbackModel(model=SCRIPTED, params={"style": "ink"})]
    assert with_params.request.params == {}
    stored = await stepped.service.get(owner.id, with_params.id)
    assert stored.request.fallback == with_params.request.fallback


async def _rejected(runtime: Runtime, submission: Submission) -> InvalidInput:
    owner = await runtime.local_owner()
    with pytest.raises(InvalidInput) as raised:
        await runtime.service.submit(owner.id, submission)
    assert raised.value.status_code == 422
    assert await runtime.service.list(owner.id, JobFilter(), 10) == []
    return raised.value


async def test_an_unknown_fallback_is_rejected_on_its_position(stepped: Runtime) -> None:
    error = await _rejected(stepped, _sub(model=SCRIPTED, fallback=["nope/x"]))
    assert error.field == "fallback.0"
    assert "nope/x" in error.message


@pytest.mark.parametrize(
    ("model", "fallback", "field"),
    [
        ("placeholder", ["placeholder"], "fallback.0"),
        ("placeholder", [{"model": "placeholder", "params": {"latency_ms": 1}}], "fallback.0"),
        (SCRIPTED, ["placeholder", "placeholder"], "fallback.1"),
        (SCRIPTED, ["placeholder", {"model": "placeholder"}], "fallback.1"),
    ],
)
async def test_a_model_may_appear_once_in_a_chain(
    stepped: Runtime, model: str, fallback: list[Any], field: str
) -> None:
    error = await _rejected(stepped, _sub(model=model, fallback=fallback))
    assert error.field == field


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"latency_ms": "slow"}, "fallback.0.params.latency_ms"),
        ({"steps": 30}, "fallback.0.params.steps"),
    ],
)
async def test_a_fallbacks_params_are_checked_against_its_schema(
    stepped: Runtime, params: dict[str, Any], field: str
) -> None:
    # The primary's schema takes anything: only the fallback's own schema can refuse these.
    error = await _rejected(
        stepped, _sub(model=SCRIPTED, fallback=[{"model": "placeholder", "params": params}])
    )
    assert error.field == field


async def test_the_primarys_params_are_not_checked_against_a_fallbacks_schema(
    stepped: Runtime,
) -> None:
    owner = await stepped.local_owner()
    [job] = await stepped.service.submit(
        owner.id, _sub(model=SCRIPTED, params={"steps": 30}, fallback=["placeholder"])
    )
    assert job.status is JobStatus.QUEUED


class EditOnly:
    name = "editor"

    def models(self) -> list[ModelSpec]:
        return [
            ModelSpec(id="editor/model", provider=self.name, name="model", kinds=[TaskKind.EDIT])
        ]

    async def run(self, task: Task, ctx: RunContext) -> list[Output]:
        raise AssertionError("never run")


async def test_a_fallback_that_does_not_do_the_requests_kind_is_rejected(
    stepped: Runtime,
) -> None:
    async def dispatch(job_id: str) -> None:
        pass

    registry = Registry([PlaceholderProvider(), EditOnly()])
    service = JobService(stepped.repo, stepped.accounts, registry, stepped.bus, dispatch, 3, 60.0)
    owner = await stepped.local_owner()

    with pytest.raises(InvalidInput) as raised:
        await service.submit(owner.id, _sub(fallback=["editor/model"]))

    assert (raised.value.status_code, raised.value.field) == (422, "fallback.0")
    assert "'editor/model'" in raised.value.message and "'image'" in raised.value.message
    assert await service.list(owner.id, JobFilter(), 10) == []


# -- deadlines ------------------------------------------------------------------------------


async def test_the_deadline_is_the_requests_own_after_creation(stepped: Runtime) -> None:
    owner = await stepped.local_owner()

    jobs = await stepped.service.submit(
        owner.id, _sub(model=None, models=["placeholder", SCRIPTED], deadline_seconds=90.5)
    )

    for job in [*jobs, *await stepped.repo.get_jobs([j.id for j in jobs])]:
        assert job.deadline_at is not None
        assert job.deadline_at - job.created_at == timedelta(seconds=90.5)
        assert job.request.deadline_seconds == 90.5


async def test_without_one_the_deadline_is_the_servers_setting(make_runtime: MakeRuntime) -> None:
    runtime = await make_runtime(job_deadline_seconds=45)
    owner = await runtime.local_owner()

    [job] = await runtime.service.submit(owner.id, _sub())

    stored = await runtime.repo.get_job(job.id)
    assert stored.deadline_at is not None
    assert stored.deadline_at - stored.created_at == timedelta(seconds=45)
    assert stored.request.deadline_seconds is None


async def test_a_seeded_request_is_served_from_the_cache(stepped: Runtime) -> None:
    owner = await stepped.local_owner()
    [original] = await stepped.service.submit(owner.id, _sub(seed=5, n=2))
    assert await stepped.worker.run_one(original.id) is JobStatus.SUCCEEDED
    done = await stepped.service.get(owner.id, original.id)

    [hit] = await stepped.service.submit(owner.id, _sub(seed=5, n=2))

    assert hit.id != original.id
    assert (hit.status, hit.cached, hit.cost_usd) == (JobStatus.SUCCEEDED, True, 0.0)
    assert [o.asset_id for o in hit.outputs] == [o.asset_id for o in done.outputs]
    assert all(o.cached for o in hit.outputs)
    stored = await stepped.service.get(owner.id, hit.id)
    assert [o.asset_id for o in stored.outputs] == [o.asset_id for o in done.outputs]
    assert [e["type"] for e in await stepped.repo.events_after(hit.id, 0)] == [
        "status",
        "output",
        "output",
        "done",
    ]


@pytest.mark.parametrize(
    ("first", "second", "hit"),
    [
        (dict(seed=5), dict(seed=6), False),
        (dict(seed=5), dict(seed=5, cache=CachePolicy.BYPASS), False),
        (dict(), dict(), False),  # auto: no seed, not deterministic
        (dict(), dict(cache=CachePolicy.USE), True),
        (dict(seed=5), dict(seed=5, params={"latency_ms": 1}), False),
    ],
)
async def test_cache_policy(
    stepped: Runtime, first: dict[str, Any], second: dict[str, Any], hit: bool
) -> None:
    owner = await stepped.local_owner()
    [original] = await stepped.service.submit(owner.id, _sub(**first))
    assert await stepped.worker.run_one(original.id) is JobStatus.SUCCEEDED

    [again] = await stepped.service.submit(owner.id, _sub(**second))

    assert again.cached is hit
    assert again.status is (JobStatus.SUCCEEDED if hit else JobStatus.QUEUED)


async def test_a_failed_job_is_not_a_cache_entry(stepped: Runtime) -> None:
    owner = await stepped.local_owner()
    [failed] = await stepped.service.submit(owner.id, _sub(seed=1, params={"fail": "permanent"}))
    assert await stepped.worker.run_one(failed.id) is JobStatus.FAILED

    [again] = await stepped.service.submit(owner.id, _sub(seed=1, params={"fail": "permanent"}))
    assert (again.status, again.cached) == (JobStatus.QUEUED, False)


async def test_wait_returns_once_the_job_finishes(stepped: Runtime) -> None:
    owner = await stepped.local_owner()
    [job] = await stepped.service.submit(owner.id, _sub(params={"latency_ms": 100}))

    waiting = asyncio.create_task(stepped.service.wait(owner.id, [job.id], timeout=10))
    await asyncio.sleep(0)
    assert await stepped.worker.run_one(job.id) is JobStatus.SUCCEEDED
    [finished] = await asyncio.wait_for(waiting, 5)

    assert finished.status is JobStatus.SUCCEEDED
    assert len(finished.outputs) == 1


async def test_wait_answers_with_the_job_the_worker_recorded_without_reading_it(
    stepped: Runtime,
) -> None:
    """A waiting request in the worker's process has its finished job handed over before
    the done event reaches it: the answer is that job, not a read of the log."""
    owner = await stepped.local_owner()
    [job] = await stepped.service.submit(owner.id, _sub(params={"latency_ms": 100}))

    with stepped.assets.handoff.expect(job.id) as arrived:
        waiting = asyncio.create_task(
            stepped.service.wait(owner.id, [job.id], timeout=10, finished=arrived.finished)
        )
        await asyncio.sleep(0)
        assert await stepped.worker.run_one(job.id) is JobStatus.SUCCEEDED
        [answer] = await asyncio.wait_for(waiting, 5)

    assert answer is arrived.finished[job.id]
    assert answer.status is JobStatus.SUCCEEDED and len(answer.outputs) == 1


async def test_wait_gives_up_at_the_timeout(stepped: Runtime) -> None:
    owner = await stepped.local_owner()
    [job] = await stepped.service.submit(owner.id, _sub())

    loop = asyncio.get_running_loop()
    started = loop.time()
    [pending] = await stepped.service.wait(owner.id, [job.id], timeout=0.2)

    assert pending.status is JobStatus.QUEUED
    assert 0.15 <= loop.time() - started < 2


async def test_nobody_waits_on_or_reads_another_owners_job(stepped: Runtime) -> None:
    owner = await stepped.local_owner()
    other = await stepped.accounts.owner_named("mallory", utcnow())
    [job] = await stepped.service.submit(owner.id, _sub())

    with pytest.raises(NotFound):
        await stepped.service.get(other.id, job.id)
    with pytest.raises(NotFound):
        await stepped.service.wait(other.id, [job.id], timeout=0.1)
    with pytest.raises(NotFound):
        await stepped.service.cancel(other.id, job.id)
    assert (await stepped.service.get(owner.id, job.id)).status is JobStatus.QUEUED


async def test_cancel_a_queued_job_then_again(stepped: Runtime) -> None:
    owner = await stepped.local_owner()
    [job] = await stepped.service.submit(owner.id, _sub())

    canceled = await stepped.service.cancel(owner.id, job.id)

    assert canceled.status is JobStatus.CANCELED
    assert canceled.finished_at is not None
    with pytest.raises(Conflict):
        await stepped.service.cancel(owner.id, job.id)
    assert await stepped.worker.run_one(job.id) is None


async def test_list_filters_and_pages_newest_first(stepped: Runtime) -> None:
    owner = await stepped.local_owner()
    ids = []
    for prompt in ["red apple", "green apple", "blue sky", "50%_off"]:
        [job] = await stepped.service.submit(owner.id, _sub(prompt=prompt))
        ids.append(job.id)
        await asyncio.sleep(0.002)  # ids order by millisecond
    [scripted] = await stepped.service.submit(owner.id, _sub(model=SCRIPTED, prompt="red car"))
    assert await stepped.worker.run_one(ids[0]) is JobStatus.SUCCEEDED

    everything = await stepped.service.list(owner.id, JobFilter())
    assert [j.id for j in everything] == [scripted.id, *reversed(ids)]
    first_page = await stepped.service.list(owner.id, JobFilter(), limit=2)
    second_page = await stepped.service.list(owner.id, JobFilter(before=first_page[-1].id), limit=2)
    assert [j.id for j in first_page + second_page] == [j.id for j in everything[:4]]

    apples = await stepped.service.list(owner.id, JobFilter(text="APPLE"))
    assert {j.id for j in apples} == {ids[0], ids[1]}
    literal = await stepped.service.list(owner.id, JobFilter(text="%_"))
    assert [j.id for j in literal] == [ids[3]]
    done = await stepped.service.list(owner.id, JobFilter(status=JobStatus.SUCCEEDED))
    assert [j.id for j in done] == [ids[0]]
    assert len(done[0].outputs) == 1
    by_model = await stepped.service.list(owner.id, JobFilter(model=SCRIPTED))
    assert [j.id for j in by_model] == [scripted.id]
    other = await stepped.accounts.owner_named("other", utcnow())
    assert await stepped.service.list(other.id, JobFilter()) == []
