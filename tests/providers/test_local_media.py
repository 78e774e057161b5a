"""The built-in local models end to end: Real-ESRGAN upscaling and camera-motion video,
submitted through the API like any other model, stored and served."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator

import httpx
import pytest
from PIL import Image, ImageDraw

from imagemill.api.app import create_app
from imagemill.config import Settings
from imagemill.runtime import Runtime

WAIT = {"Prefer": "wait=180"}


@pytest.fixture
async def http(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with Runtime(settings) as runtime:
        app = create_app(runtime=runtime)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://im"
            ) as client,
        ):
            yield client


def _picture(width: int, height: int) -> bytes:
    """Shapes with edges (what an upscaler has to keep sharp) on a gradient."""
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    draw = ImageDraw.Draw(image)
    for i in range(0, width, max(8, width // 8)):
        draw.rectangle((i, height // 4, i + width // 16, height * 3 // 4), fill=(220, 40, 40))
    draw.ellipse((width // 3, height // 3, width * 2 // 3, height * 2 // 3), fill=(30, 90, 220))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _mean_difference(a: Image.Image, b: Image.Image) -> float:
    pairs = zip(a.tobytes(), b.tobytes(), strict=True)
    return sum(abs(x - y) for x, y in pairs) / (a.width * a.height * len(a.getbands()))


async def _upload(http: httpx.AsyncClient, data: bytes) -> str:
    response = await http.post("/v1/assets", files={"file": ("in.png", data)})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _download(http: httpx.AsyncClient, job: dict[str, object]) -> bytes:
    outputs = job["outputs"]
    assert isinstance(outputs, list)
    return (await http.get(outputs[0]["url"].removeprefix("http://im"))).content


async def test_realesrgan_x4_makes_a_256_image_1024(http: httpx.AsyncClient) -> None:
    models = {m["id"]: m for m in (await http.get("/v1/models")).json()["data"]}
    assert {"local/realesrgan-x4", "local/realesrgan-x4-anime", "local/realesrgan-x2"} <= set(
        models
    )
    assert models["local/realesrgan-x4"]["kinds"] == ["upscale"]
    source = _picture(256, 256)
    body = {
        "kind": "upscale",
        "model": "local/realesrgan-x4",
        "input_assets": [await _upload(http, source)],
    }
    job = (await http.post("/v1/jobs", json=body, headers=WAIT)).json()

    assert job["status"] == "succeeded", job["error"]
    output = job["outputs"][0]
    assert (output["width"], output["height"]) == (1024, 1024)
    upscaled = Image.open(io.BytesIO(await _download(http, job))).convert("RGB")
    assert upscaled.size == (1024, 1024)
    # it is the same picture, larger: shrunk back, it matches the source closely
    back = upscaled.resize((256, 256), Image.Resampling.BOX)
    original = Image.open(io.BytesIO(source)).convert("RGB")
    error = _mean_difference(back, original)
    assert error < 12


async def test_upscaling_needs_an_input_image(http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/jobs", json={"kind": "upscale", "model": "local/realesrgan-x2"})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "input_assets"


MEMORY_PROBE = textwrap.dedent(
    """
    import io, json, resource, sys
    from PIL import Image
    from imagemill.providers.local import upscale
    side, tile = int(sys.argv[1]), int(sys.argv[2])
    upscaler = upscale.UPSCALERS["realesrgan-x4-fast"]
    net = upscale.load(upscaler)
    buffer = io.BytesIO()
    Image.linear_gradient("L").resize((side, side)).convert("RGB").save(buffer, "PNG")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = upscale.upscale(net, upscaler.scale, buffer.getvalue(), tile=tile)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"size": Image.open(io.BytesIO(out)).size, "grew_mb": (peak - before) / 1024}))
    """
)


def _peak_growth(side: int, tile: int) -> tuple[list[int], float]:
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(side), str(tile)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["size"], result["grew_mb"]


def test_a_1024_input_is_upscaled_tile_by_tile_in_bounded_memory() -> None:
    size, grew_mb = _peak_growth(1024, 128)
    assert size == [4096, 4096]
    # Untiled, this network needs about 2.9 GB for a 1024² input (docs/benchmarks.md);
    # tiled (measured: 260 MB), it is the 48 MB output, its PNG encoding and one tile's work.
    assert grew_mb < 450, grew_mb


def test_tiles_join_without_seams() -> None:
    from imagemill.providers.local import upscale

    upscaler = upscale.UPSCALERS["realesrgan-x4-fast"]
    net = upscale.load(upscaler)
    source = _picture(96, 80)
    tiled = Image.open(io.BytesIO(upscale.upscale(net, 4, source, tile=32)))
    whole = Image.open(io.BytesIO(upscale.upscale(net, 4, source, tile=1024)))
    assert tiled.size == whole.size == (384, 320)
    differences = [abs(a - b) for a, b in zip(tiled.tobytes(), whole.tobytes(), strict=True)]
    assert sum(differences) / len(differences) < 0.5 and max(differences) < 16


def test_upscaling_reports_each_tile_and_stops_between_tiles() -> None:
    from imagemill.providers.local import upscale

    net = upscale.load(upscale.UPSCALERS["realesrgan-x2"])
    reported: list[float] = []
    upscale.upscale(net, 2, _picture(64, 40), tile=32, progress=reported.append)
    assert reported == [0.25, 0.5, 0.75, 1.0]  # 2 by 2 tiles

    checks: list[bool] = []

    def stop_after_two() -> bool:
        checks.append(True)
        return len(checks) > 2

    with pytest.raises(upscale.Stopped):
        upscale.upscale(net, 2, _picture(64, 40), tile=32, should_stop=stop_after_two)
    assert len(checks) == 3


async def test_motion_turns_a_still_into_an_mp4_of_the_asked_duration_and_fps(
    http: httpx.AsyncClient,
) -> None:
    import av

    body = {
        "kind": "video",
        "model": "local/motion",
        "size": "320x180",
        "input_assets": [await _upload(http, _picture(640, 360))],
        "params": {"duration": 3, "fps": 15, "motion": "zoom_in"},
    }
    job = (await http.post("/v1/jobs", json=body, headers=WAIT)).json()

    assert job["status"] == "succeeded", job["error"]
    assert job["outputs"][0]["content_type"] == "video/mp4"
    response = await http.get(job["outputs"][0]["url"].removeprefix("http://im"))
    assert response.headers["content-type"] == "video/mp4"
    with av.open(io.BytesIO(response.content)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        assert stream.average_rate == 15
        assert container.duration is not None
        assert abs(container.duration / av.time_base - 3) < 1 / 15
    assert len(frames) == 45
    assert (frames[0].width, frames[0].height) == (320, 180)


async def test_motion_refuses_odd_sizes_and_unknown_paths_at_submit(
    http: httpx.AsyncClient,
) -> None:
    asset = await _upload(http, _picture(64, 64))
    body = {"kind": "video", "model": "local/motion", "input_assets": [asset]}
    odd = await http.post("/v1/jobs", json={**body, "size": "321x180"})
    assert odd.status_code == 422 and odd.json()["error"]["field"] == "size"
    bad = await http.post("/v1/jobs", json={**body, "params": {"motion": "spin"}})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "params.motion"


async def test_work_waiting_for_the_busy_device_says_so(settings: Settings) -> None:
    """A job whose turn on the device has not come says why it sits at 0 %, rather than a
    silent "running"; it runs once the device is free."""
    from imagemill.domain import InputImage, Task, TaskKind
    from imagemill.providers.local import WAITING, LocalModels
    from providers.running import Recorded

    provider = LocalModels(settings)
    still = InputImage("ast_x", _picture(64, 48), "image/png", 64, 48)
    task = Task(
        job_id="job_x",
        kind=TaskKind.VIDEO,
        model="motion",
        prompt="",
        negative_prompt=None,
        n=1,
        width=64,
        height=48,
        seed=None,
        params={"duration": 1, "fps": 8},
        inputs=(still,),
    )
    recorded = Recorded()
    async with provider._cpu:  # another job has the device
        running = asyncio.create_task(provider.run(task, recorded.context()))
        await asyncio.wait_for(recorded.reported.wait(), 60)
        assert recorded.progress == [(0.0, WAITING)]
    [video] = await running
    assert video.content_type == "video/mp4" and recorded.progress[-1][0] == 1.0
    await provider.aclose()
