"""What a provider is asked: the enhanced prompt rendered, a negative prompt only where
the model takes one, and an enhanced prompt fitted to every model of the chain."""

from __future__ import annotations

from imagemill.domain import Enhancement, Job, Request, TaskKind
from imagemill.jobs import tasks
from imagemill.jobs.service import utcnow
from imagemill.specs import InputLimits, ModelSpec


def _job(**request: object) -> Job:
    now = utcnow()
    return Job(
        id="job_1",
        owner_id="own_1",
        status="running",  # type: ignore[arg-type]
        kind=TaskKind.IMAGE,
        model="m/one",
        request=Request(model="m/one", prompt="a fox", **request),  # type: ignore[arg-type]
        group_id=None,
        progress=0.0,
        progress_message=None,
        attempt=1,
        max_attempts=3,
        error=None,
        cached=False,
        cost_usd=0.0,
        provider_ref=None,
        cache_key=None,
        lease_owner=None,
        lease_expires_at=None,
        run_after=now,
        created_at=now,
        started_at=now,
        finished_at=None,
    )


def _spec(**limits: object) -> ModelSpec:
    return ModelSpec(id="m/one", provider="m", name="one", limits=InputLimits(**limits))  # type: ignore[arg-type]


async def test_the_enhanced_prompt_is_rendered_and_a_negative_prompt_only_where_taken() -> None:
    job = _job(negative_prompt="blur", size="64x32")
    job.enhanced_prompt = "a fox, golden hour"
    takes = await tasks.for_model(job, _spec(), {"steps": 4}, repo=None, blobs=None)  # type: ignore[arg-type]
    assert (takes.prompt, takes.negative_prompt, takes.width, takes.height) == (
        "a fox, golden hour",
        "blur",
        64,
        32,
    )
    refuses = await tasks.for_model(job, _spec(negative_prompt=False), {}, None, None)  # type: ignore[arg-type]
    assert refuses.negative_prompt is None


def test_the_enhancing_task_asks_for_one_text_with_the_enhancers_params() -> None:
    job = _job(seed=7, enhance=Enhancement(model="placeholder", params={"style": "ink"}))
    task = tasks.enhancing(job, _spec(), {"style": "ink"})
    assert (task.kind, task.n, task.prompt, task.seed, task.params) == (
        TaskKind.ENHANCE,
        1,
        "a fox",
        7,
        {"style": "ink"},
    )


def test_an_enhanced_prompt_fits_the_strictest_model_of_the_chain() -> None:
    text = "a fox in the snow under a pale moon, ink and wash, quiet, wide"
    chain = [_spec(max_prompt_chars=40), _spec(max_prompt_bytes=30), _spec()]
    fitted = tasks.fitted(text, chain)
    assert len(fitted.encode()) <= 30 and text.startswith(fitted) and fitted == fitted.strip()
    assert tasks.fitted(text, [_spec(max_prompt_tokens=6)]) == "a fox in"
    assert tasks.fitted(text, [_spec()]) == text
