"""The Gemini adapter against the Gemini fake: Flash Image (via the official SDK) and
Imagen (via predict), exact sizes, edits, blocked prompts, faults and retries."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

from fakes.faults import Faults
from fakes.gemini import FakeGemini
from fakes.server import serve
from imagemill.domain import JobStatus
from imagemill.errors import InvalidInput
from imagemill.runtime import Runtime
from providers.running import ProviderRuntime, run, run_holding, submit, succeeded

KEY = "gm-test-key-5f1c0d"


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[FakeGemini, str]]:
    fake = FakeGemini(api_key=KEY)
    with serve(fake.app) as url:
        yield fake, url


@pytest.fixture
def fake(served: tuple[FakeGemini, str]) -> FakeGemini:
    served[0].calls.clear()
    served[0].faults = Faults()
    return served[0]


@pytest.fixture
async def gemini(
    provider_runtime: ProviderRuntime, served: tuple[FakeGemini, str], fake: FakeGemini
) -> Runtime:
    return await provider_runtime(gemini_api_key=KEY, gemini_base_url=served[1])


async def _pixels(runtime: Runtime, asset_id: str) -> tuple[int, int]:
    asset = await runtime.repo.get_asset(asset_id)
    with Image.open(io.BytesIO(await runtime.blobs.get(asset.storage_key))) as image:
        return image.size


async def test_flash_image_by_its_alias_at_an_exact_size(gemini: Runtime, fake: FakeGemini) -> None:
    job = succeeded(await run(gemini, model="nano-banana", prompt="a lighthouse", size="1920x1080"))

    [output] = job.outputs
    assert output.model == "gemini/gemini-2.5-flash-image"
    assert (output.generated_width, output.generated_height) == (1344, 768)  # 16:9, its own
    assert (output.width, output.height) == (1920, 1080)
    assert await _pixels(gemini, output.asset_id) == (1920, 1080)
    assert output.cost_usd == pytest.approx(0.039)
    [call] = fake.calls
    assert call.headers["x-goog-api-key"] == KEY
    assert call.body["generationConfig"]["imageConfig"]["aspectRatio"] == "16:9"


async def test_flash_image_makes_n_images_with_one_call_each(
    gemini: Runtime, fake: FakeGemini
) -> None:
    job = succeeded(await run(gemini, model="nano-banana", prompt="owls", n=3, size="512x512"))
    assert len(job.outputs) == 3
    assert len({o.sha256 for o in job.outputs}) >= 1
    assert len(fake.calls) == 3


async def test_an_edit_sends_the_input_image(gemini: Runtime, fake: FakeGemini) -> None:
    source = succeeded(await run(gemini, model="placeholder", prompt="a cat", size="256x256"))

    job = succeeded(
        await run(
            gemini,
            kind="edit",
            model="gemini/gemini-2.5-flash-image",
            prompt="give it a hat",
            input_assets=[source.outputs[0].asset_id],
            size="256x256",
        )
    )

    assert job.outputs[0].width == 256
    [call] = fake.calls
    parts = call.body["contents"][0]["parts"]
    assert any("inlineData" in p or "inline_data" in p for p in parts)
    assert any(p.get("text") == "give it a hat" for p in parts)


async def test_imagen_predicts_several_images_at_the_nearest_ratio(
    gemini: Runtime, fake: FakeGemini
) -> None:
    job = succeeded(
        await run(
            gemini, model="gemini/imagen-3.0-generate-002", prompt="dunes", n=3, size="1600x900"
        )
    )

    assert [(o.generated_width, o.generated_height) for o in job.outputs] == [(1408, 768)] * 3
    assert all((o.width, o.height) == (1600, 900) for o in job.outputs)
    assert job.cost_usd == pytest.approx(0.09)
    [call] = fake.calls
    assert call.method == "predict"
    assert call.body["parameters"] == {"sampleCount": 3, "aspectRatio": "16:9"}


async def test_a_blocked_prompt_fails_at_once_as_content_rejected(
    gemini: Runtime, fake: FakeGemini
) -> None:
    job = await run(gemini, model="nano-banana", prompt="something forbidden")

    assert job.status is JobStatus.FAILED
    assert job.error is not None
    assert (job.error.code, job.error.retryable) == ("content_rejected", False)
    assert job.attempt == 1


async def test_filtered_imagen_images_are_not_a_success(gemini: Runtime) -> None:
    job = await run(gemini, model="gemini/imagen-3.0-generate-002", prompt="forbidden thing")
    assert job.status is JobStatus.FAILED
    assert job.error is not None and job.error.code == "content_rejected"


@pytest.mark.parametrize("fault", ["500", "503", "429", "malformed"])
async def test_a_transient_fault_is_retried_to_success(
    gemini: Runtime, fake: FakeGemini, fault: str
) -> None:
    fake.faults.queue(fault)

    job = succeeded(await run(gemini, model="nano-banana", prompt="retry me"))

    assert job.attempt == 2
    errors = [e for e in await gemini.repo.events_after(job.id, 0) if e["type"] == "error"]
    expected = {"429": "rate_limited", "malformed": "provider_error"}.get(fault, "provider_error")
    assert [e["data"]["code"] for e in errors] == [expected]
    assert errors[0]["data"]["will_retry"] is True


async def test_a_hanging_call_times_out_and_is_retried(
    provider_runtime: ProviderRuntime, served: tuple[FakeGemini, str], fake: FakeGemini
) -> None:
    runtime = await provider_runtime(
        gemini_api_key=KEY, gemini_base_url=served[1], provider_timeout_seconds=0.3
    )
    fake.faults.queue("hang")

    job = succeeded(await run(runtime, model="nano-banana", prompt="slow"))

    errors = [e for e in await runtime.repo.events_after(job.id, 0) if e["type"] == "error"]
    assert [e["data"]["code"] for e in errors] == ["provider_timeout"]


async def test_a_wrong_key_fails_without_retrying_or_showing_the_key(
    provider_runtime: ProviderRuntime, served: tuple[FakeGemini, str]
) -> None:
    wrong = "gm-wrong-key-77aa"
    runtime = await provider_runtime(gemini_api_key=wrong, gemini_base_url=served[1])

    job = await run(runtime, model="nano-banana", prompt="x")

    assert job.status is JobStatus.FAILED and job.error is not None
    assert (job.error.code, job.attempt) == ("provider_auth", 1)
    assert wrong not in job.error.message


async def test_without_a_key_the_models_are_unavailable_and_refused_at_submit(
    provider_runtime: ProviderRuntime,
) -> None:
    runtime = await provider_runtime()
    spec = runtime.registry.resolve("nano-banana")[1]
    assert (spec.available, spec.unavailable_reason) == (False, "GEMINI_API_KEY is not set")

    with pytest.raises(InvalidInput) as refused:
        await submit(runtime, model="nano-banana", prompt="x")
    assert refused.value.field == "model"
    assert "GEMINI_API_KEY" in refused.value.message


async def test_gemini_takes_no_params(gemini: Runtime) -> None:
    fields: dict[str, Any] = {"model": "nano-banana", "prompt": "x", "params": {"steps": 4}}
    with pytest.raises(InvalidInput) as refused:
        await submit(gemini, **fields)
    assert refused.value.field == "params.steps"


async def test_each_answer_counts_against_the_response_budget(gemini: Runtime) -> None:
    """Imagen's body by its length before it is read; a flash image (the SDK reads it
    itself) by its bytes once decoded; all given back once stored (``memory.py``)."""
    _, [body] = await run_holding(gemini, model="gemini/imagen-3.0-generate-002", prompt="a", n=2)
    assert body > 2 * 1024  # both images' base64 in one JSON body

    job, held = await run_holding(gemini, model="nano-banana", prompt="a fox", n=2)
    assert len(job.outputs) == len(held) == 2 and min(held) > 1024
