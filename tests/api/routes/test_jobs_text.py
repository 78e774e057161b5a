"""``/v1/jobs`` for the text kinds (caption, enhance, describe) and for image requests that
enhance their prompt first: outputs with ``text``, storage, search, cache, cost, fallbacks
and the checks at the door."""

from __future__ import annotations

import io
from typing import Any

import httpx
import pytest
from PIL import Image

from imagemill import writing
from imagemill.specs import Pricing

WAIT = {"Prefer": "wait=10"}


async def _job(http: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await http.post("/v1/jobs", json=body, headers=WAIT)
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    assert job["status"] == "succeeded", job["error"]
    return job


async def _upload(http: httpx.AsyncClient, colour: tuple[int, int, int] = (200, 40, 40)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 32), colour).save(buffer, format="PNG")
    response = await http.post("/v1/assets", files={"file": ("in.png", buffer.getvalue())})
    assert response.status_code == 201, response.text
    asset_id: str = response.json()["id"]
    return asset_id


async def test_captions_are_text_outputs_stored_as_assets_and_searchable(
    client: httpx.AsyncClient,
) -> None:
    body = {
        "kind": "caption",
        "model": "placeholder",
        "prompt": "Linen summer dress, sage green",
        "n": 2,
        "params": {"tones": ["playful", "elegant"], "hashtags": 4},
    }
    job = await _job(client, body)
    assert [o["tone"] for o in job["outputs"]] == ["playful", "playful", "elegant", "elegant"]
    for output in job["outputs"]:
        assert writing.count_hashtags(output["text"]) == 4
        assert output["content_type"] == "text/plain; charset=utf-8"
        assert (output["width"], output["height"]) == (None, None)
        assert output["thumbnail_url"] is None  # a text has none
        served = await client.get(output["url"])
        assert served.status_code == 200
        assert served.text == output["text"]
        assert served.headers["content-type"].startswith("text/plain")
    # Text a caption holds, but the prompt does not, finds the job.
    found = await client.get("/v1/jobs", params={"q": "#Linen #summer"})
    assert [j["id"] for j in found.json()["data"]] == [job["id"]]
    events = await client.get(f"/v1/jobs/{job['id']}/events")
    outputs = [
        line for line in events.text.splitlines() if line.startswith("data:") and '"tone"' in line
    ]
    assert len(outputs) == 4


async def test_describe_writes_a_prompt_from_an_image(client: httpx.AsyncClient) -> None:
    asset = await _upload(client, (40, 80, 200))
    job = await _job(client, {"kind": "describe", "model": "placeholder", "input_assets": [asset]})
    [output] = job["outputs"]
    assert output["text"] == "[placeholder description] a landscape image, 64x32, mostly blue"


async def test_a_seeded_text_request_is_served_from_the_cache_at_no_cost(
    client: httpx.AsyncClient,
) -> None:
    body = {"kind": "enhance", "model": "placeholder", "prompt": "a fox", "seed": 3}
    first = await _job(client, body)
    again = await _job(client, body)
    assert again["cached"] is True and again["cost_usd"] == 0.0
    assert [o["text"] for o in again["outputs"]] == [o["text"] for o in first["outputs"]]
    assert [o["asset_id"] for o in again["outputs"]] == [o["asset_id"] for o in first["outputs"]]


async def test_an_image_request_can_enhance_its_prompt_first(client: httpx.AsyncClient) -> None:
    body = {
        "model": "placeholder",
        "prompt": "a lighthouse at dusk",
        "size": "64x64",
        "enhance": {"model": "placeholder", "style": "oil painting"},
    }
    job = await _job(client, body)
    assert job["request"]["prompt"] == "a lighthouse at dusk"
    assert job["enhanced_prompt"].startswith(
        "[placeholder enhancement] a lighthouse at dusk, oil painting, "
    )
    assert job["request"]["enhance"] == {
        "model": "placeholder",
        "style": None,
        "params": {"style": "oil painting"},
    }
    # The image was made from the enhanced prompt (the placeholder draws its prompt).
    png = (await client.get(job["outputs"][0]["url"])).content
    assert b"oil painting" in png  # the generation parameters' text chunk
    # What it recorded can be submitted again as it is.
    again = await client.post("/v1/jobs", json={**job["request"], "fallback": []}, headers=WAIT)
    assert again.status_code == 200, again.text


async def test_a_text_fallback_writes_to_the_same_brief(client: httpx.AsyncClient) -> None:
    """No OpenAI key here: the placeholder writes the captions, with the tones and
    hashtags asked of the model, marked as a fallback and why."""
    body = {
        "kind": "caption",
        "model": "openai/gpt-4o-mini",
        "prompt": "Leather wallet",
        "params": {"tones": ["bold", "warm"], "hashtags": 2},
        "fallback": ["placeholder"],
    }
    job = await _job(client, body)
    assert [o["tone"] for o in job["outputs"]] == ["bold", "warm"]
    for output in job["outputs"]:
        assert output["model"] == "placeholder" and output["fallback"] is True
        assert "OPENAI_API_KEY is not set" in output["fallback_reason"]
        assert writing.count_hashtags(output["text"]) == 2


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"kind": "caption", "prompt": "x", "size": "64x64"}, "size", "makes text"),
        ({"kind": "enhance", "prompt": "x", "aspect_ratio": "16:9"}, "aspect_ratio", "makes text"),
        ({"kind": "caption", "prompt": " "}, "prompt", "product text) or input images"),
        ({"kind": "describe"}, "input_assets", "needs at least one input image"),
        ({"kind": "enhance", "prompt": ""}, "prompt", "a prompt is required"),
        (
            {"kind": "enhance", "prompt": "x", "params": {"tones": ["a"]}},
            "params.tones",
            "caption only",
        ),
        (
            {"kind": "caption", "prompt": "x", "params": {"style": "a"}},
            "params.style",
            "enhance only",
        ),
        (
            {"kind": "caption", "prompt": "x", "params": {"hashtags": 31}},
            "params.hashtags",
            "at most 30",
        ),
        (
            {"kind": "caption", "prompt": "x", "params": {"tones": ["a", "a"]}},
            "params.tones",
            "",
        ),
        ({"prompt": "x", "enhance": {"model": "nope"}}, "enhance.model", "unknown model"),
        (
            {"prompt": "x", "enhance": {"model": "local/realesrgan-x4"}},
            "enhance.model",
            "does not do 'enhance'",
        ),
        (
            {"prompt": "x", "enhance": {"model": "placeholder", "params": {"fail": "x"}}},
            "enhance.params.fail",
            "must be one of",
        ),
        (
            {"kind": "caption", "prompt": "x", "enhance": {"model": "placeholder"}},
            "enhance",
            "enhance is for image, edit, video requests",
        ),
        (
            {"kind": "caption", "model": "openai/gpt-4o-mini", "prompt": "x"},
            "model",
            "OPENAI_API_KEY is not set",
        ),
    ],
)
async def test_text_requests_are_checked_at_the_door(
    client: httpx.AsyncClient, body: dict[str, Any], field: str, words: str
) -> None:
    response = await client.post("/v1/jobs", json={"model": "placeholder", **body})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == field
    assert words in error["message"]


async def test_text_kinds_take_no_input_images_where_the_model_reads_none(
    client: httpx.AsyncClient,
) -> None:
    asset = await _upload(client)
    body = {"kind": "enhance", "model": "placeholder", "prompt": "x", "input_assets": [asset]}
    response = await client.post("/v1/jobs", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "input_assets"


async def test_enhancing_shares_the_provider_slot_the_job_holds(
    make_client: Any,
) -> None:
    """One placeholder call at a time: the job holds that slot when it enhances with the
    placeholder too, and must not wait for a second one (it would wait forever)."""
    async with make_client(provider_concurrency={"placeholder": 1}) as http:
        body = {"prompt": "a fox", "size": "32x32", "enhance": {"model": "placeholder"}}
        job = await _job(http, {"model": "placeholder", **body})
        assert job["enhanced_prompt"].startswith("[placeholder enhancement] a fox")


async def test_the_enhancement_is_paid_and_counted_in_usage_even_when_the_render_fails(
    make_client: Any,
) -> None:
    prices = {"placeholder": Pricing(per_image=0.01)}
    async with make_client(prices=prices) as http:
        body = {"model": "placeholder", "prompt": "a fox", "size": "32x32"}
        job = await _job(http, {**body, "enhance": {"model": "placeholder"}})
        assert job["cost_usd"] == pytest.approx(0.02)  # the enhancement and the image
        failing = {**body, "params": {"fail": "permanent"}, "enhance": {"model": "placeholder"}}
        response = await http.post("/v1/jobs", json=failing, headers=WAIT)
        failed = response.json()
        assert failed["status"] == "failed" and failed["cost_usd"] == pytest.approx(0.01)
        usage = (await http.get("/v1/usage")).json()
        [line] = [line for line in usage["data"] if line["model"] == "placeholder"]
        assert line["cost_usd"] == pytest.approx(0.03)  # two enhancements, one image
        assert line["images"] == 1


async def test_a_text_fallback_writes_to_the_requests_brief_only(
    client: httpx.AsyncClient,
) -> None:
    body = {
        "kind": "caption",
        "model": "openai/gpt-4o-mini",
        "prompt": "x",
        "fallback": [{"model": "placeholder", "params": {"tones": ["warm", "calm"]}}],
    }
    response = await client.post("/v1/jobs", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "fallback.0.params.tones"


async def test_enhancing_needs_a_prompt(client: httpx.AsyncClient) -> None:
    asset = await _upload(client)
    body = {
        "kind": "video",
        "model": "local/motion",
        "input_assets": [asset],
        "enhance": {"model": "placeholder"},
    }
    response = await client.post("/v1/jobs", json=body)
    assert response.status_code == 422
    assert response.json()["error"] == {
        "code": "invalid_input",
        "message": "enhance needs a prompt to enhance",
        "field": "prompt",
    }
