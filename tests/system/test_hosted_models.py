"""Every hosted model, end to end through imagemill's HTTP API, each against its
provider's fake driven by the official SDK; once the fakes' output URLs have expired,
imagemill still serves every output."""

from __future__ import annotations

import hashlib
import io
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from fakes.gemini import FakeGemini
from fakes.openai_images import FakeOpenAI
from fakes.recraft import FakeRecraft
from fakes.replicate import FakeReplicate
from fakes.server import serve
from imagemill.api.app import create_app
from imagemill.config import Settings
from imagemill.runtime import Runtime

MODELS = [
    "openai/gpt-image-1",
    "openai/dall-e-3",
    "gemini/imagen-3.0-generate-002",
    "gemini/gemini-2.5-flash-image",
    "replicate/black-forest-labs/flux-1.1-pro",
    "replicate/black-forest-labs/flux-schnell",
    "replicate/ideogram-ai/ideogram-v2",
    "replicate/bytedance/seedream-3",
    "recraft/recraftv3",
]


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, Any]]:
    fakes: dict[str, Any] = {
        "openai": FakeOpenAI(api_key="sk-e2e"),
        "gemini": FakeGemini(api_key="gm-e2e"),
        "replicate": FakeReplicate(token="r8_e2e", run_seconds=0.1),
        "recraft": FakeRecraft(api_key="rc-e2e"),
    }
    with (
        serve(fakes["openai"].app) as openai_url,
        serve(fakes["gemini"].app) as gemini_url,
        serve(fakes["replicate"].app) as replicate_url,
        serve(fakes["recraft"].app) as recraft_url,
    ):
        fakes["urls"] = {
            "openai_base_url": f"{openai_url}/v1",
            "gemini_base_url": gemini_url,
            "replicate_base_url": replicate_url,
            "recraft_base_url": f"{recraft_url}/v1",
        }
        yield fakes


@pytest.fixture
async def api(settings: Settings, fakes: dict[str, Any]) -> AsyncIterator[httpx.AsyncClient]:
    configured = Settings(
        **{
            **settings.model_dump(),
            **fakes["urls"],
            "openai_api_key": "sk-e2e",
            "gemini_api_key": "gm-e2e",
            "replicate_api_token": "r8_e2e",
            "recraft_api_key": "rc-e2e",
        }
    )
    async with Runtime(configured) as runtime:
        app = create_app(runtime=runtime)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://im", timeout=30
            ) as http,
        ):
            yield http


async def test_every_hosted_model_runs_and_its_outputs_outlive_the_provider_urls(
    api: httpx.AsyncClient, fakes: dict[str, Any]
) -> None:
    listed = {m["id"]: m for m in (await api.get("/v1/models")).json()["data"]}
    jobs = {}
    for model in MODELS:
        assert listed[model]["available"] is True, listed[model]
        body = {"model": model, "prompt": "a red fox in snow", "size": "800x600", "seed": 5}
        response = await api.post("/v1/jobs", json=body, headers={"Prefer": "wait=20"})
        assert response.status_code == 200, response.text
        jobs[model] = response.json()
        assert jobs[model]["status"] == "succeeded", jobs[model]["error"]

    for fake in ("openai", "replicate", "recraft"):
        fakes[fake].expire_urls()

    for model, job in jobs.items():
        [output] = job["outputs"]
        assert output["model"] == model and output["fallback"] is False
        response = await api.get(output["url"].removeprefix("http://im"))
        assert response.status_code == 200, (model, response.text)
        assert hashlib.sha256(response.content).hexdigest() == output["sha256"]
        with Image.open(io.BytesIO(response.content)) as image:
            assert image.size == (800, 600), model
        assert job["cost_usd"] > 0, model

    usage = (await api.get("/v1/usage")).json()
    assert {row["model"] for row in usage["data"]} == set(MODELS)
