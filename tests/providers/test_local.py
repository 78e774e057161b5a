"""Local diffusers models: a tiny random pipeline dropped into the models folder shows
up, runs through the real diffusers code on the CPU, reports every step, and gives the
same bytes for the same seed."""

from __future__ import annotations

import asyncio
import base64
import io
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from fakes.tiny_diffusers import save_tiny_stable_diffusion
from imagemill.api.app import create_app
from imagemill.config import Settings
from imagemill.runtime import Runtime

WAIT = {"Prefer": "wait=60"}


@pytest.fixture
async def served(settings: Settings) -> AsyncIterator[Runtime]:
    async with Runtime(settings) as runtime:
        yield runtime


@pytest.fixture
async def api(
    served: Runtime, settings: Settings
) -> AsyncIterator[tuple[httpx.AsyncClient, Settings]]:
    app = create_app(runtime=served)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://im") as http,
    ):
        yield http, settings


Reported = Callable[[str], list[dict[str, Any]]]


@pytest.fixture
def reported(served: Runtime) -> Iterator[Reported]:
    """``reported(job_id)``: the job's progress reports sent live so far, in order (they
    are not stored: the log keeps the latest every few seconds)."""
    with served.bus.subscribe() as everything:
        seen: list[dict[str, Any]] = []

        def of(job_id: str) -> list[dict[str, Any]]:
            while not everything.queue.empty():
                seen.append(everything.queue.get_nowait())
            assert not everything.lagged
            return [e for e in seen if e.get("live") and e["job_id"] == job_id]

        yield of


async def _listed(http: httpx.AsyncClient, model_id: str) -> dict[str, Any]:
    for _ in range(50):
        models = {m["id"]: m for m in (await http.get("/v1/models")).json()["data"]}
        if model_id in models:
            return models[model_id]
        await asyncio.sleep(0.1)
    raise AssertionError(f"{model_id} never appeared")


async def test_a_dropped_model_folder_appears_and_runs_step_by_step(
    api: tuple[httpx.AsyncClient, Settings], reported: Reported
) -> None:
    http, settings = api
    assert "local/tiny-sd" not in {m["id"] for m in (await http.get("/v1/models")).json()["data"]}
    await asyncio.to_thread(save_tiny_stable_diffusion, settings.resolved_models_dir / "tiny-sd")

    spec = await _listed(http, "local/tiny-sd")
    assert spec["kinds"] == ["image", "edit"] and spec["available"] is True
    assert spec["params_schema"]["properties"]["steps"]["maximum"] == 150

    body = {
        "model": "local/tiny-sd",
        "prompt": "a red fox",
        "n": 2,
        "size": "64x48",
        "seed": 11,
        "params": {"steps": 4, "guidance_scale": 2.0},
    }
    job = (await http.post("/v1/jobs", json=body, headers=WAIT)).json()

    assert job["status"] == "succeeded", job["error"]
    assert [o["seed"] for o in job["outputs"]] == [11, 12]
    for output in job["outputs"]:
        image = Image.open(
            io.BytesIO((await http.get(output["url"].removeprefix("http://im"))).content)
        )
        assert image.size == (64, 48)
    events = await _events(http, job["id"])
    progress = reported(job["id"])
    assert [e["data"]["message"] for e in progress] == [f"step {i}/4" for i in range(1, 5)]
    previews = [e for e in events if e["type"] == "preview"]
    assert len(previews) == 3  # every step but the last, which the output itself shows
    shown = Image.open(io.BytesIO(base64.b64decode(previews[0]["data"]["image"])))
    assert shown.format == "WEBP" and max(shown.size) <= 192

    again = (await http.post("/v1/jobs", json={**body, "cache": "bypass"}, headers=WAIT)).json()
    assert [o["sha256"] for o in again["outputs"]] == [o["sha256"] for o in job["outputs"]]
    assert again["id"] != job["id"] and again["cached"] is False


async def test_bad_params_are_refused_before_loading(
    api: tuple[httpx.AsyncClient, Settings],
) -> None:
    http, settings = api
    await asyncio.to_thread(save_tiny_stable_diffusion, settings.resolved_models_dir / "tiny-sd")
    await _listed(http, "local/tiny-sd")
    response = await http.post(
        "/v1/jobs", json={"model": "local/tiny-sd", "prompt": "x", "params": {"steps": 0}}
    )
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "params.steps"


async def test_edits_repaint_the_input_image_and_inpainting_keeps_the_unmasked_part(
    api: tuple[httpx.AsyncClient, Settings], reported: Reported
) -> None:
    http, settings = api
    await asyncio.to_thread(save_tiny_stable_diffusion, settings.resolved_models_dir / "tiny-sd")
    await _listed(http, "local/tiny-sd")
    source = await _upload(http, Image.new("RGB", (64, 64), (200, 30, 30)))
    mask_image = Image.new("L", (64, 64), 0)
    mask_image.paste(255, (32, 0, 64, 64))  # repaint the right half only
    mask = await _upload(http, mask_image)
    body = {
        "kind": "edit",
        "model": "local/tiny-sd",
        "prompt": "a blue door",
        "size": "64x64",
        "seed": 5,
        "input_assets": [source],
        "params": {"steps": 4, "strength": 0.5},
    }
    edited = (await http.post("/v1/jobs", json=body, headers=WAIT)).json()
    assert edited["status"] == "succeeded", edited["error"]
    messages = [e["data"]["message"] for e in reported(edited["id"])]
    assert messages == ["step 1/2", "step 2/2"]  # strength 0.5 of 4 steps

    # inpainting: two seeds repaint the masked half differently and keep the rest alike
    made = []
    for seed in (5, 6):
        job = (
            await http.post("/v1/jobs", json={**body, "mask": mask, "seed": seed}, headers=WAIT)
        ).json()
        assert job["status"] == "succeeded", job["error"]
        made.append(Image.open(io.BytesIO(await _bytes(http, job))).convert("RGB"))
    kept = [_distance(made[0].getpixel((x, y)), made[1].getpixel((x, y))) for x, y in _grid(0, 16)]
    repainted = [
        _distance(made[0].getpixel((x, y)), made[1].getpixel((x, y))) for x, y in _grid(40, 64)
    ]
    assert sum(kept) / len(kept) * 3 < sum(repainted) / len(repainted)


def _grid(left: int, right: int) -> list[tuple[int, int]]:
    return [(x, y) for x in range(left, right, 4) for y in range(0, 64, 8)]


async def test_queued_requests_with_the_same_shape_share_a_pipeline_call(
    settings: Settings,
) -> None:
    await asyncio.to_thread(save_tiny_stable_diffusion, settings.resolved_models_dir / "tiny-sd")
    tuned = settings.model_copy(update={"local_batch_size": 4, "worker_concurrency": 16})
    async with Runtime(tuned) as runtime:
        app = create_app(runtime=runtime)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://im") as http,
        ):
            await _listed(http, "local/tiny-sd")
            # a long job holds the device while the others queue up behind it
            blocker = {"model": "local/tiny-sd", "prompt": "z", "size": "96x96"}
            blocking = await http.post("/v1/jobs", json={**blocker, "params": {"steps": 50}})
            await _until_running(http, blocking.json()["id"])
            body = {"model": "local/tiny-sd", "size": "32x32", "params": {"steps": 2}}
            queued = [{**body, "prompt": "abcdefgh"[i], "seed": i} for i in range(8)]
            odd_one = {**body, "size": "40x40", "prompt": "odd", "seed": 1}
            jobs = await asyncio.gather(
                *(http.post("/v1/jobs", json=b, headers=WAIT) for b in [*queued, odd_one])
            )
            # A busy machine may take longer than the wait: each is waited for till it ends.
            finished = [await _finished(http, j.json()["id"]) for j in jobs]
            provider = runtime.registry.providers["local"]
            batches = list(provider.queue.batches)  # type: ignore[attr-defined]
            again = await http.post("/v1/jobs", json={**queued[5], "cache": "bypass"}, headers=WAIT)
            again_job = await _finished(http, again.json()["id"])
    assert all(j["status"] == "succeeded" for j in finished), finished
    # the blocker; then the 8 compatible ones in two batches of 4, and the other size alone
    assert batches[0] == 1 and sorted(batches[1:]) == [1, 4, 4]
    alone = again_job["outputs"][0]
    assert alone["sha256"] == finished[5]["outputs"][0]["sha256"]  # batched or alone: same


async def _finished(http: httpx.AsyncClient, job_id: str, within: float = 600) -> dict[str, Any]:
    """The job once it ended (generously: the suite may run on a busy machine)."""
    deadline = time.monotonic() + within
    while True:
        job: dict[str, Any] = (await http.get(f"/v1/jobs/{job_id}")).json()
        if job["status"] in ("succeeded", "failed", "canceled"):
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']}"
        await asyncio.sleep(0.05)


async def _until_running(http: httpx.AsyncClient, job_id: str) -> None:
    await _until_progress(http, job_id, 0.0)


async def _until_progress(http: httpx.AsyncClient, job_id: str, fraction: float) -> None:
    deadline = time.monotonic() + 120  # a model's first load on a busy machine included
    while (await http.get(f"/v1/jobs/{job_id}")).json()["progress"] <= fraction:
        assert time.monotonic() < deadline, f"the job never got past {fraction:.0%}"
        await asyncio.sleep(0.01)


async def test_a_canceled_job_stops_the_device_between_steps(settings: Settings) -> None:
    await asyncio.to_thread(save_tiny_stable_diffusion, settings.resolved_models_dir / "tiny-sd")
    async with Runtime(settings) as runtime:
        app = create_app(runtime=runtime)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://im") as http,
        ):
            await _listed(http, "local/tiny-sd")
            body = {"model": "local/tiny-sd", "prompt": "z", "size": "96x96"}
            job_id = (await http.post("/v1/jobs", json={**body, "params": {"steps": 150}})).json()[
                "id"
            ]
            started = time.monotonic()
            await _until_progress(http, job_id, 0.1)
            tenth = time.monotonic() - started  # about 15 steps' time

            canceled = await http.post(f"/v1/jobs/{job_id}/cancel")
            assert canceled.json()["status"] == "canceled"
            stopping = time.monotonic()
            queue = runtime.registry.providers["local"].queue  # type: ignore[attr-defined]
            await queue.idle()
            # the rest of the 150 steps would take about 9 tenths; it stopped at the next step
            assert time.monotonic() - stopping < 2 * tenth + 0.5
            after = await http.post("/v1/jobs", json={**body, "params": {"steps": 2}}, headers=WAIT)
            assert after.json()["status"] == "succeeded"


async def _upload(http: httpx.AsyncClient, image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    response = await http.post("/v1/assets", files={"file": ("in.png", buffer.getvalue())})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _bytes(http: httpx.AsyncClient, job: dict[str, Any]) -> bytes:
    return (await http.get(job["outputs"][0]["url"].removeprefix("http://im"))).content


def _distance(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    return float(sum((x - y) ** 2 for x, y in zip(a, b, strict=True)) ** 0.5)


async def _events(http: httpx.AsyncClient, job_id: str) -> list[dict[str, Any]]:
    from httpx_sse import aconnect_sse

    async with aconnect_sse(http, "GET", f"/v1/jobs/{job_id}/events") as source:
        return [e.json() async for e in source.aiter_sse() if e.data]
