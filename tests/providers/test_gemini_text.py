"""The Gemini text adapter against the Gemini fake, through the official SDK: captions
held to the brief by a response JSON Schema, images read inline, cost from the tokens
used (thinking included), blocked and filtered prompts, and faults."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from PIL import Image

from fakes.faults import Faults
from fakes.gemini import FakeGemini
from fakes.gemini_requests import BLOCK_WORD, FILTER_WORD
from fakes.server import serve
from imagemill import writing
from imagemill.domain import JobStatus
from imagemill.jobs.service import utcnow
from imagemill.providers.gemini_text import FLASH
from imagemill.runtime import Runtime
from providers.running import ProviderRuntime, run, succeeded

KEY = "gm-text-key-81ad"


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[FakeGemini, str]]:
    fake = FakeGemini(api_key=KEY)
    with serve(fake.app) as url:
        yield fake, url


@pytest.fixture
def fake(served: tuple[FakeGemini, str]) -> FakeGemini:
    served[0].calls.clear()
    served[0].faults = Faults(retry_after=0.01)
    return served[0]


@pytest.fixture
async def runtime(
    provider_runtime: ProviderRuntime, served: tuple[FakeGemini, str], fake: FakeGemini
) -> Runtime:
    return await provider_runtime(gemini_api_key=KEY, gemini_base_url=served[1])


async def _upload(runtime: Runtime) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (80, 60), (40, 160, 60)).save(buffer, format="PNG")
    owner = await runtime.local_owner()
    blob = await runtime.assets.ingest(buffer.getvalue())
    return (await runtime.repo.add_asset(owner.id, blob, utcnow())).id


async def test_captions_in_tones_with_the_hashtags_asked_priced_by_tokens(
    runtime: Runtime, fake: FakeGemini
) -> None:
    job = succeeded(
        await run(
            runtime,
            kind="caption",
            model="gemini/gemini-2.5-flash",
            prompt="Handmade ceramic mug with a speckled glaze",
            input_assets=[await _upload(runtime)],
            params={"tones": ["warm", "bold", "calm"], "hashtags": 3, "language": "French"},
        )
    )
    assert [o.tone for o in job.outputs] == ["warm", "bold", "calm"]
    assert all(writing.count_hashtags(o.text or "") == 3 for o in job.outputs)
    assert all(0 < o.cost_usd < 0.01 for o in job.outputs)
    [call] = fake.calls
    assert (call.model, call.method) == ("gemini-2.5-flash", "generateContent")
    config = call.body["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"]["properties"]["captions"]["minItems"] == 3
    parts = call.body["contents"][0]["parts"]
    assert "French" in parts[0]["text"] and "inlineData" in parts[1]
    assert "captions" in call.body["systemInstruction"]["parts"][0]["text"]
    assert FLASH.pricing.per_million_output_tokens > 0


async def test_enhance_and_describe_on_flash_lite(runtime: Runtime) -> None:
    enhanced = succeeded(
        await run(
            runtime,
            kind="enhance",
            model="gemini/gemini-2.5-flash-lite",
            prompt="a fox in snow",
            params={"style": "woodblock print"},
        )
    )
    assert enhanced.outputs[0].text
    described = succeeded(
        await run(
            runtime,
            kind="describe",
            model="gemini/gemini-2.5-flash-lite",
            input_assets=[await _upload(runtime)],
        )
    )
    assert described.outputs[0].text


@pytest.mark.parametrize("word", [BLOCK_WORD, FILTER_WORD])
async def test_blocked_or_filtered_prompts_fail_as_content_rejected(
    runtime: Runtime, word: str
) -> None:
    job = await run(
        runtime, kind="enhance", model="gemini/gemini-2.5-flash", prompt=f"a {word} scene"
    )
    assert job.status is JobStatus.FAILED
    assert job.error is not None and job.error.code == "content_rejected"


async def test_server_errors_are_retried(runtime: Runtime, fake: FakeGemini) -> None:
    fake.faults.queue("500", "429")
    job = succeeded(
        await run(runtime, kind="enhance", model="gemini/gemini-2.5-flash", prompt="a fox")
    )
    assert job.attempt == 3


async def test_a_seed_beyond_geminis_int32_is_folded_into_it(
    runtime: Runtime, fake: FakeGemini
) -> None:
    seed = 4_000_000_000  # imagemill takes up to 2**32 - 1; Gemini's seed is an int32
    succeeded(
        await run(runtime, kind="enhance", model="gemini/gemini-2.5-flash", prompt="x", seed=seed)
    )
    [call] = fake.calls
    assert call.body["generationConfig"]["seed"] == seed % 2**31
