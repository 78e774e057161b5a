"""The Replicate adapter against the Replicate fake, through the official SDK: every
catalogued model end to end, schemas from the API, resuming saved predictions, cancel,
failures and faults. Its webhooks: ``test_replicate_webhooks.py``."""

from __future__ import annotations

import asyncio
import io
import math
from collections.abc import Iterator

import pytest
from PIL import Image

from fakes.faults import Faults
from fakes.replicate import FakeReplicate
from fakes.server import serve
from imagemill.domain import Job, JobStatus
from imagemill.errors import InvalidInput
from imagemill.runtime import Runtime
from providers.running import ProviderRuntime, run, saved_ref, submit, succeeded

TOKEN = "r8_test_7c1e55d0"


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[FakeReplicate, str]]:
    fake = FakeReplicate(token=TOKEN, run_seconds=0.1)
    with serve(fake.app) as url:
        yield fake, url


@pytest.fixture
def fake(served: tuple[FakeReplicate, str]) -> FakeReplicate:
    fake = served[0]
    fake.faults = Faults()
    fake.webhooks_enabled = True
    fake.webhook_duplicates = 0
    return fake


@pytest.fixture
async def replicate(
    provider_runtime: ProviderRuntime, served: tuple[FakeReplicate, str], fake: FakeReplicate
) -> Runtime:
    return await provider_runtime(replicate_api_token=TOKEN, replicate_base_url=served[1])


async def _bytes(runtime: Runtime, asset_id: str) -> bytes:
    asset = await runtime.repo.get_asset(asset_id)
    return await runtime.blobs.get(asset.storage_key)


async def _size(runtime: Runtime, asset_id: str) -> tuple[int, int]:
    with Image.open(io.BytesIO(await _bytes(runtime, asset_id))) as image:
        return image.size


def _prediction_of(fake: FakeReplicate, job: Job) -> str:
    assert job.provider_ref is not None
    return job.provider_ref.split(" ", 1)[1]


@pytest.mark.parametrize(
    ("model", "size", "made"),
    [
        ("black-forest-labs/flux-1.1-pro", "1920x1080", (1440, 800)),  # custom: exact shape
        ("ideogram-ai/ideogram-v2", "1024x1024", None),
        ("bytedance/seedream-3", "1600x900", None),
    ],
)
async def test_a_text_to_image_model_end_to_end_outlives_the_expiring_url(
    replicate: Runtime, fake: FakeReplicate, model: str, size: str, made: tuple[int, int] | None
) -> None:
    job = succeeded(
        await run(replicate, model=f"replicate/{model}", prompt="a fox", size=size, seed=3)
    )
    fake.expire_urls()

    [output] = job.outputs
    width, height = (int(side) for side in size.split("x"))
    assert await _size(replicate, output.asset_id) == (width, height)
    if made:
        assert (output.generated_width, output.generated_height) == made
    prediction = fake.predictions[_prediction_of(fake, job)]
    assert prediction.input["seed"] == 3 and prediction.input["prompt"] == "a fox"
    assert fake.downloads[f"{prediction.id}/{prediction.output.rsplit('/', 1)[1]}"] == 1


async def test_flux_schnell_makes_n_images_in_one_prediction(
    replicate: Runtime, fake: FakeReplicate
) -> None:
    created = fake.created
    job = succeeded(
        await run(replicate, model="replicate/black-forest-labs/flux-schnell", prompt="owls", n=3)
    )
    assert len(job.outputs) == 3
    assert fake.created == created + 1
    assert fake.predictions[_prediction_of(fake, job)].input["num_outputs"] == 3


async def test_a_model_without_a_count_input_runs_one_prediction_per_image(
    replicate: Runtime, fake: FakeReplicate
) -> None:
    created = fake.created
    job = succeeded(
        await run(replicate, model="replicate/ideogram-ai/ideogram-v2", prompt="x", n=2)
    )
    assert len(job.outputs) == 2
    assert fake.created == created + 2
    assert job.provider_ref is not None and job.provider_ref.count(",") == 1


async def test_edit_upscale_and_video_take_the_input_image(replicate: Runtime) -> None:
    source = succeeded(await run(replicate, model="placeholder", prompt="a cat", size="128x96"))
    image = source.outputs[0].asset_id

    edit = succeeded(
        await run(
            replicate,
            kind="edit",
            model="replicate/black-forest-labs/flux-kontext-pro",
            prompt="add a hat",
            input_assets=[image],
            size="128x96",
        )
    )
    assert await _size(replicate, edit.outputs[0].asset_id) == (128, 96)

    upscale = succeeded(
        await run(
            replicate,
            kind="upscale",
            model="replicate/nightmareai/real-esrgan",
            input_assets=[image],
            params={"scale": 2},
        )
    )
    assert await _size(replicate, upscale.outputs[0].asset_id) == (256, 192)

    # Kling takes start images of 300 pixels a side or more.
    still = succeeded(await run(replicate, model="placeholder", prompt="a cat", size="400x300"))
    video = succeeded(
        await run(
            replicate,
            kind="video",
            model="replicate/kwaivgi/kling-v2.1",
            prompt="the cat turns its head",
            input_assets=[still.outputs[0].asset_id],
            params={"duration": 5},
        )
    )
    [clip] = video.outputs
    assert clip.content_type == "video/mp4"
    assert (await _bytes(replicate, clip.asset_id))[4:8] == b"ftyp"


async def test_params_are_checked_against_the_versions_schema_before_anything_runs(
    replicate: Runtime, fake: FakeReplicate
) -> None:
    spec = replicate.registry.resolve("replicate/black-forest-labs/flux-1.1-pro")[1]
    properties = spec.params_schema["properties"]
    assert properties["output_format"]["enum"] == ["webp", "jpg", "png"]
    assert {"prompt", "seed", "width", "height", "aspect_ratio"}.isdisjoint(properties)
    created = fake.created

    for params, field in (
        ({"output_format": "gif"}, "params.output_format"),
        ({"safety_tolerance": 9}, "params.safety_tolerance"),
        ({"steps": 4}, "params.steps"),
    ):
        with pytest.raises(InvalidInput) as refused:
            await submit(replicate, model=spec.id, prompt="x", params=params)
        assert refused.value.field == field
    assert fake.created == created, "bad input reached no provider"


async def test_a_retried_attempt_resumes_the_saved_prediction(
    replicate: Runtime, fake: FakeReplicate
) -> None:
    fake.queue_run_seconds(0.6)
    fake.faults = Faults(only={"get"})
    fake.faults.queue("500")  # the first poll fails: the attempt ends, the prediction lives
    created = fake.created

    job = succeeded(await run(replicate, model="replicate/ideogram-ai/ideogram-v2", prompt="x"))

    assert job.attempt == 2
    assert fake.created == created + 1, "the retry resumed instead of paying again"


async def test_a_failed_nsfw_prediction_is_content_rejected(replicate: Runtime) -> None:
    job = await run(replicate, model="replicate/bytedance/seedream-3", prompt="forbidden art")
    assert job.status is JobStatus.FAILED and job.error is not None
    assert (job.error.code, job.attempt) == ("content_rejected", 1)


@pytest.mark.parametrize("fault", ["500", "429", "hang"])
async def test_a_transient_fault_on_create_is_retried(
    provider_runtime: ProviderRuntime,
    served: tuple[FakeReplicate, str],
    fake: FakeReplicate,
    fault: str,
) -> None:
    # 2 s: a hang must time out, and no call of a busy machine's second attempt may.
    runtime = await provider_runtime(
        replicate_api_token=TOKEN, replicate_base_url=served[1], provider_timeout_seconds=2.0
    )
    fake.faults = Faults(only={"create"})
    fake.faults.queue(fault)

    job = succeeded(
        await run(runtime, model="replicate/black-forest-labs/flux-schnell", prompt="x")
    )
    assert job.attempt == 2


async def test_owner_cancel_cancels_the_prediction(replicate: Runtime, fake: FakeReplicate) -> None:
    fake.queue_run_seconds(30)
    job = await submit(replicate, model="replicate/bytedance/seedream-3", prompt="slow")
    running = asyncio.create_task(replicate.worker.run_one(job.id))
    await saved_ref(replicate, job.id)
    owner = await replicate.local_owner()

    await replicate.service.cancel(owner.id, job.id)
    await running

    prediction = fake.predictions[_prediction_of(fake, await replicate.repo.get_job(job.id))]
    for _ in range(100):
        if prediction.status == "canceled":
            break
        await asyncio.sleep(0.02)
    assert prediction.status == "canceled"


async def test_progress_reaches_the_job_as_the_prediction_logs_it(
    replicate: Runtime, fake: FakeReplicate
) -> None:
    """The SDK reads "50%|…| 2/4" as 0.5 and the adapter divided by 100 again: bars sat
    at 0 % and jumped to done."""
    fake.queue_run_seconds(math.inf)  # it moves only when the test says
    job = await submit(replicate, model="replicate/bytedance/seedream-3", prompt="steps")
    running = asyncio.create_task(replicate.worker.run_one(job.id))
    await saved_ref(replicate, job.id)
    prediction = _prediction_of(fake, await replicate.repo.get_job(job.id))
    fake.step_now(prediction)  # processing, at 0 %
    for step, fraction in enumerate((0.25, 0.5, 0.75), start=1):
        fake.step_now(prediction)
        assert await _progress_reaches(replicate, job.id, fraction), f"no {fraction} at step {step}"
    fake.step_now(prediction)  # 100 %: done
    assert await running is JobStatus.SUCCEEDED

    events = await replicate.repo.events_after(job.id, 0)
    kinds = [e["type"] for e in events]
    fractions = [e["data"]["progress"] for e in events if e["type"] == "progress"]
    assert fractions[:3] == [0.25, 0.5, 0.75]
    assert kinds.index("output") > max(i for i, k in enumerate(kinds) if k == "progress")


async def _progress_reaches(runtime: Runtime, job_id: str, fraction: float) -> bool:
    for _ in range(1000):  # 20 s: polls back off to 5 s while nothing moves
        events = await runtime.repo.events_after(job_id, 0)
        if any(e["type"] == "progress" and e["data"]["progress"] >= fraction for e in events):
            return True
        await asyncio.sleep(0.02)
    return False


async def test_a_deadline_cancels_the_prediction(replicate: Runtime, fake: FakeReplicate) -> None:
    """A job past its deadline failed and left its prediction running and billing."""
    fake.queue_run_seconds(math.inf)
    job = await submit(
        replicate, model="replicate/bytedance/seedream-3", prompt="late", deadline_seconds=2
    )
    outcome = await replicate.worker.run_one(job.id)

    assert outcome is JobStatus.FAILED
    failed = await replicate.repo.get_job(job.id)
    assert failed.error is not None and failed.error.code == "deadline_exceeded"
    assert fake.predictions[_prediction_of(fake, failed)].status == "canceled", "a cancel"
