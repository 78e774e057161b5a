"""The placeholder provider: deterministic labelled images, simulated latency and failures."""

from __future__ import annotations

import io
import time
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from PIL import Image

from imagemill import writing
from imagemill.domain import Task, TaskKind
from imagemill.errors import ProviderError, ProviderUnavailable
from imagemill.providers.base import Provider
from imagemill.providers.placeholder import PlaceholderProvider, render
from imagemill.storage.images import probe
from providers.running import Recorded


def _task(**fields: Any) -> Task:
    values: dict[str, Any] = {
        "job_id": "job_1",
        "kind": TaskKind.IMAGE,
        "model": "placeholder",
        "prompt": "a green teapot",
        "negative_prompt": None,
        "n": 1,
        "width": 96,
        "height": 64,
        "seed": 11,
        "params": {},
    }
    return Task(**{**values, **fields})


@pytest.fixture
def provider() -> PlaceholderProvider:
    return PlaceholderProvider()


def test_it_is_a_provider(provider: PlaceholderProvider) -> None:
    assert isinstance(provider, Provider)
    assert provider.name == "placeholder"


def test_its_model_spec(provider: PlaceholderProvider) -> None:
    [spec] = provider.models()
    assert (spec.id, spec.provider, spec.name) == ("placeholder", "placeholder", "placeholder")
    assert spec.kinds == [TaskKind.IMAGE, TaskKind.CAPTION, TaskKind.ENHANCE, TaskKind.DESCRIBE]
    assert spec.pricing.per_image == 0.0
    assert spec.sizes.default == "512x512"
    Draft202012Validator.check_schema(spec.params_schema)
    assert set(spec.params_schema["properties"]) == {
        "latency_ms",
        "fail",
        "fail_attempts",
        "fail_until",
        *writing.TEXT_PARAMS,  # for its text kinds only
    }
    assert spec.limits.param_kinds == writing.TEXT_PARAM_KINDS
    assert spec.params_schema["additionalProperties"] is False


async def test_same_arguments_same_bytes(provider: PlaceholderProvider) -> None:
    [first] = await provider.run(_task(), Recorded().context())
    [second] = await provider.run(_task(), Recorded().context())
    assert first.data is not None and first.data == second.data
    assert first.data == render("a green teapot", "placeholder", 11, 96, 64)
    info = probe(first.data)
    assert (info.content_type, info.width, info.height) == ("image/png", 96, 64)
    assert (first.content_type, first.seed) == ("image/png", 11)


@pytest.mark.parametrize("change", [{"seed": 12}, {"prompt": "a red teapot"}])
async def test_a_different_seed_or_prompt_gives_different_bytes(
    provider: PlaceholderProvider, change: dict[str, Any]
) -> None:
    [base] = await provider.run(_task(), Recorded().context())
    [other] = await provider.run(_task(**change), Recorded().context())
    assert base.data != other.data


async def test_n_outputs_have_consecutive_seeds(provider: PlaceholderProvider) -> None:
    outputs = await provider.run(_task(n=3, seed=100), Recorded().context())
    assert [o.seed for o in outputs] == [100, 101, 102]
    assert len({o.data for o in outputs}) == 3
    [single] = await provider.run(_task(seed=101), Recorded().context())
    assert single.data == outputs[1].data


async def test_without_a_seed_one_is_chosen_and_reported(provider: PlaceholderProvider) -> None:
    outputs = await provider.run(_task(seed=None, n=2), Recorded().context())
    first = outputs[0].seed
    assert first is not None
    assert outputs[1].seed == first + 1
    assert outputs[0].data == render("a green teapot", "placeholder", first, 96, 64)


async def test_latency_reports_increasing_progress(provider: PlaceholderProvider) -> None:
    recorded = Recorded()
    started = time.monotonic()

    await provider.run(_task(params={"latency_ms": 300}), recorded.context())

    assert time.monotonic() - started >= 0.29
    fractions = [f for f, _ in recorded.progress]
    assert fractions == sorted(fractions) and len(set(fractions)) == len(fractions)
    assert len(fractions) == 3
    assert fractions[-1] == 1.0
    assert recorded.progress[0][1] == "step 1/3"


async def test_latency_is_the_whole_call_its_own_reports_included(
    provider: PlaceholderProvider,
) -> None:
    # ``latency_ms`` stands for a hosted call's response time: a preview that takes
    # 1.5 s to store does not make a 2 s call take 3.5 s.
    recorded = Recorded(preview_seconds=1.5)
    started = time.monotonic()

    await provider.run(_task(params={"latency_ms": 2000}), recorded.context())

    assert 1.99 <= time.monotonic() - started < 3.2
    assert len(recorded.previews) == 1
    assert recorded.progress[-1] == (1.0, "step 20/20")


async def test_no_latency_reports_no_progress(provider: PlaceholderProvider) -> None:
    recorded = Recorded()
    await provider.run(_task(), recorded.context())
    assert recorded.progress == []
    assert recorded.previews == []


async def test_halfway_a_small_blurred_preview_of_the_first_image(
    provider: PlaceholderProvider,
) -> None:
    recorded = Recorded()
    task = _task(params={"latency_ms": 400})

    [first, *_] = await provider.run(task, recorded.context())

    [preview] = recorded.previews
    with Image.open(io.BytesIO(preview)) as image:
        assert image.format == "WEBP"
        assert max(image.size) <= 128
        assert image.size[0] / image.size[1] == pytest.approx(task.width / task.height, rel=0.1)
    assert len(preview) < len(first.data or b"")


async def test_transient_failure_is_retryable(provider: PlaceholderProvider) -> None:
    with pytest.raises(ProviderUnavailable) as raised:
        await provider.run(_task(params={"fail": "transient"}), Recorded().context(attempt=5))
    assert raised.value.retryable is True


async def test_permanent_failure_is_not_retryable(provider: PlaceholderProvider) -> None:
    with pytest.raises(ProviderError) as raised:
        await provider.run(_task(params={"fail": "permanent"}), Recorded().context())
    assert raised.value.retryable is False
    assert not isinstance(raised.value, ProviderUnavailable)


async def test_fail_attempts_fails_only_the_first_attempts(provider: PlaceholderProvider) -> None:
    task = _task(params={"fail": "transient", "fail_attempts": 2})
    for attempt in (1, 2):
        with pytest.raises(ProviderUnavailable):
            await provider.run(task, Recorded().context(attempt=attempt))
    [output] = await provider.run(task, Recorded().context(attempt=3))
    assert output.data is not None


async def test_fail_until_is_an_outage_that_ends(provider: PlaceholderProvider) -> None:
    ended = _task(params={"fail": "permanent", "fail_until": time.time() - 1})
    [output] = await provider.run(ended, Recorded().context())
    assert output.data is not None
    ongoing = _task(params={"fail": "permanent", "fail_until": time.time() + 60})
    with pytest.raises(ProviderError, match="simulated permanent failure"):
        await provider.run(ongoing, Recorded().context(attempt=5))


def test_render_labels_tiny_and_large_sizes() -> None:
    for width, height in [(16, 16), (17, 900), (1500, 40)]:
        info = probe(render("x" * 200, "placeholder", 1, width, height))
        assert (info.width, info.height) == (width, height)
