"""The OpenAI text adapter against the OpenAI fake, through the official SDK: captions
held to the brief by strict structured outputs, images read (vision), cost from the
tokens used, refusals, faults, and the cache for text."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from PIL import Image

from fakes.faults import Faults
from fakes.openai_images import FakeOpenAI, Plug
from fakes.server import serve
from imagemill import writing
from imagemill.domain import JobStatus
from imagemill.jobs.service import utcnow
from imagemill.runtime import Runtime
from providers.running import ProviderRuntime, run, succeeded

KEY = "sk-text-5a1c"
MODEL = "openai/gpt-4o-mini"


@pytest.fixture(scope="module")
def socket() -> Iterator[tuple[Plug, str]]:
    plug = Plug()
    with serve(plug) as url:
        yield plug, url


@pytest.fixture
def fake(socket: tuple[Plug, str]) -> FakeOpenAI:
    fake = FakeOpenAI(api_key=KEY, faults=Faults(retry_after=0.01))
    fake.plug_into(*socket)
    return fake


@pytest.fixture
async def runtime(
    provider_runtime: ProviderRuntime, socket: tuple[Plug, str], fake: FakeOpenAI
) -> Runtime:
    return await provider_runtime(openai_api_key=KEY, openai_base_url=f"{socket[1]}/v1")


async def _upload(runtime: Runtime) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (80, 60), (200, 120, 40)).save(buffer, format="PNG")
    owner = await runtime.local_owner()
    blob = await runtime.assets.ingest(buffer.getvalue())
    return (await runtime.repo.add_asset(owner.id, blob, utcnow())).id


async def test_captions_in_tones_with_the_hashtags_asked_priced_by_tokens(
    runtime: Runtime, fake: FakeOpenAI
) -> None:
    image = await _upload(runtime)
    job = succeeded(
        await run(
            runtime,
            kind="caption",
            model=MODEL,
            prompt="Organic cotton tote bag in navy, roomy and strong",
            input_assets=[image],
            n=2,
            params={"tones": ["playful", "luxurious"], "hashtags": 4, "emojis": True},
        )
    )
    assert [o.tone for o in job.outputs] == ["playful", "playful", "luxurious", "luxurious"]
    for output in job.outputs:
        assert output.text and writing.count_hashtags(output.text) == 4
        assert output.model == MODEL and not output.fallback
        assert 0 < output.cost_usd < 0.001
    assert job.cost_usd == pytest.approx(sum(o.cost_usd for o in job.outputs))
    [call] = [c for c in fake.calls if c.endpoint == "chat"]
    fields = call.fields
    assert fields["model"] == "gpt-4o-mini"
    assert fields["response_format"]["type"] == "json_schema"
    assert fields["response_format"]["json_schema"]["strict"] is True
    user = fields["messages"][1]["content"]
    assert user[0]["type"] == "text" and "2 playful, 2 luxurious" in user[0]["text"]
    assert user[1]["type"] == "image_url"  # the product image went along (vision)


async def test_enhance_and_describe(runtime: Runtime) -> None:
    enhanced = succeeded(
        await run(
            runtime,
            kind="enhance",
            model="openai/gpt-4.1-mini",
            prompt="a lighthouse at dusk",
            n=2,
            params={"style": "cinematic"},
        )
    )
    assert len(enhanced.outputs) == 2 and all(o.text for o in enhanced.outputs)
    described = succeeded(
        await run(runtime, kind="describe", model=MODEL, input_assets=[await _upload(runtime)])
    )
    assert described.outputs[0].text


async def test_a_seeded_text_request_is_cached_and_costs_nothing_again(
    runtime: Runtime, fake: FakeOpenAI
) -> None:
    body = {"kind": "enhance", "model": MODEL, "prompt": "a red fox", "seed": 9}
    first = succeeded(await run(runtime, **body))
    again = succeeded(await run(runtime, **body))
    assert again.cached and again.cost_usd == 0.0 and first.cost_usd > 0
    assert [o.text for o in again.outputs] == [o.text for o in first.outputs]
    assert len([c for c in fake.calls if c.endpoint == "chat"]) == 1


async def test_a_refusal_fails_the_job_as_content_rejected(runtime: Runtime) -> None:
    job = await run(runtime, kind="caption", model=MODEL, prompt="a forbidden product")
    assert job.status is JobStatus.FAILED
    assert job.error is not None and job.error.code == "content_rejected"
    assert "refused" in job.error.message


async def test_server_errors_and_rate_limits_are_retried(
    runtime: Runtime, fake: FakeOpenAI
) -> None:
    fake.faults.queue("500", "429")
    job = succeeded(await run(runtime, kind="enhance", model=MODEL, prompt="a red fox"))
    assert job.attempt == 3
