"""The Recraft adapter against the Recraft fake, through the official openai SDK:
raster images fitted to the exact size, vector styles stored as SVG, Recraft's own
fields in the body, and errors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fakes.faults import Faults
from fakes.openai_images import Plug
from fakes.recraft import FakeRecraft
from fakes.server import serve
from imagemill.domain import JobStatus
from imagemill.runtime import Runtime
from providers.running import ProviderRuntime, run, succeeded

KEY = "rc-test-91ab22"


@pytest.fixture(scope="module")
def socket() -> Iterator[tuple[Plug, str]]:
    plug = Plug()
    with serve(plug) as url:
        yield plug, url


@pytest.fixture
def fake(socket: tuple[Plug, str]) -> FakeRecraft:
    fake = FakeRecraft(api_key=KEY, faults=Faults(retry_after=0.01))
    fake.plug_into(*socket)
    return fake


@pytest.fixture
async def recraft(
    provider_runtime: ProviderRuntime, socket: tuple[Plug, str], fake: FakeRecraft
) -> Runtime:
    return await provider_runtime(recraft_api_key=KEY, recraft_base_url=f"{socket[1]}/v1")


async def test_a_raster_style_is_made_at_the_nearest_size_and_fitted(
    recraft: Runtime, fake: FakeRecraft
) -> None:
    job = succeeded(
        await run(
            recraft,
            model="recraft/recraftv3",
            prompt="a mountain hut",
            n=2,
            size="1920x1080",
            params={"style": "realistic_image"},
        )
    )
    fake.expire_urls()

    assert [(o.width, o.height) for o in job.outputs] == [(1920, 1080)] * 2
    assert {(o.generated_width, o.generated_height) for o in job.outputs} == {(1820, 1024)}
    assert job.cost_usd == pytest.approx(0.08)
    [call] = fake.calls
    assert call.fields["style"] == "realistic_image" and call.fields["size"] == "1820x1024"
    assert sum(fake.downloads.values()) == 2


async def test_the_negative_prompt_is_sent(recraft: Runtime, fake: FakeRecraft) -> None:
    """It was stored on the job and never sent: Recraft takes one (its reference says so)."""
    succeeded(await run(recraft, model="recraft/recraftv3", prompt="a hut", negative_prompt="snow"))
    [call] = fake.calls
    assert call.fields["negative_prompt"] == "snow"


async def test_a_vector_style_is_stored_as_svg_and_priced_as_vector(recraft: Runtime) -> None:
    job = succeeded(
        await run(
            recraft,
            model="recraft/recraftv3",
            prompt="a fox logo",
            params={"style": "vector_illustration", "substyle": "line_art"},
        )
    )

    [output] = job.outputs
    assert output.content_type == "image/svg+xml"
    assert (output.width, output.generated_width) == (None, None)
    assert output.cost_usd == pytest.approx(0.08)
    asset = await recraft.repo.get_asset(output.asset_id)
    assert (await recraft.blobs.get(asset.storage_key)).lstrip().startswith((b"<svg", b"<?xml"))


async def test_a_wrong_key_fails_at_once(
    provider_runtime: ProviderRuntime, socket: tuple[Plug, str], fake: FakeRecraft
) -> None:
    runtime = await provider_runtime(recraft_api_key="rc-wrong", recraft_base_url=f"{socket[1]}/v1")
    job = await run(runtime, model="recraft/recraftv3", prompt="x")
    assert job.status is JobStatus.FAILED and job.error is not None
    assert (job.error.code, job.attempt) == ("provider_auth", 1)


async def test_a_5xx_is_retried(recraft: Runtime, fake: FakeRecraft) -> None:
    fake.faults.queue("503")
    job = succeeded(await run(recraft, model="recraft/recraftv3", prompt="retry"))
    assert job.attempt == 2
