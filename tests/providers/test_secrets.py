"""No provider key or token appears in any log line, error message or API response,
whatever goes wrong (a test grepping everything captured for the configured secrets)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest

from fakes.faults import Faults
from fakes.gemini import FakeGemini
from fakes.openai_images import FakeOpenAI
from fakes.recraft import FakeRecraft
from fakes.replicate import FakeReplicate
from fakes.server import serve
from imagemill.api.app import create_app
from imagemill.runtime import Runtime
from providers.running import ProviderRuntime, run

SECRETS = {
    "openai": "sk-secret-openai-1f2e3d4c5b6a",
    "gemini": "gm-secret-gemini-9a8b7c6d5e4f",
    "replicate": "r8_secret_replicate_0a1b2c3d4e",
    "recraft": "rc-secret-recraft-5f6e7d8c9b",
}


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, tuple[object, str]]]:
    # The fakes expect other keys: every call with a configured secret is refused (401/403).
    openai_fake, gemini_fake = FakeOpenAI(api_key="sk-other"), FakeGemini(api_key="gm-other")
    replicate_fake, recraft_fake = FakeReplicate(token="r8_other"), FakeRecraft(api_key="rc-o")
    with (
        serve(openai_fake.app) as openai_url,
        serve(gemini_fake.app) as gemini_url,
        serve(replicate_fake.app) as replicate_url,
        serve(recraft_fake.app) as recraft_url,
    ):
        yield {
            "openai": (openai_fake, f"{openai_url}/v1"),
            "gemini": (gemini_fake, gemini_url),
            "replicate": (replicate_fake, replicate_url),
            "recraft": (recraft_fake, f"{recraft_url}/v1"),
        }


async def test_no_secret_leaks_into_logs_errors_or_responses(
    provider_runtime: ProviderRuntime,
    fakes: dict[str, tuple[object, str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    runtime: Runtime = await provider_runtime(
        openai_api_key=SECRETS["openai"],
        openai_base_url=fakes["openai"][1],
        gemini_api_key=SECRETS["gemini"],
        gemini_base_url=fakes["gemini"][1],
        replicate_api_token=SECRETS["replicate"],
        replicate_base_url=fakes["replicate"][1],
        recraft_api_key=SECRETS["recraft"],
        recraft_base_url=fakes["recraft"][1],
        provider_timeout_seconds=0.5,
    )
    gemini_fake = fakes["gemini"][0]
    assert isinstance(gemini_fake, FakeGemini)
    gemini_fake.faults = Faults()

    jobs = [
        await run(runtime, model=model, prompt="leak test")
        for model in (
            "openai/gpt-image-1",
            "openai/dall-e-3",
            "nano-banana",
            "gemini/imagen-3.0-generate-002",
            "replicate/black-forest-labs/flux-schnell",
            "recraft/recraftv3",
        )
    ]
    assert all(job.error is not None and job.error.code == "provider_auth" for job in jobs), [
        (job.model, job.error) for job in jobs
    ]

    app = create_app(runtime=runtime)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://im") as http,
    ):
        answers = [await http.get(f"/v1/jobs/{job.id}") for job in jobs]
        answers += [await http.get("/v1/jobs"), await http.get("/v1/models")]
        answers.append(await http.get("/openapi.json"))
    seen = "\n".join([caplog.text, *(r.text for r in answers), *(str(job.error) for job in jobs)])
    for provider, secret in SECRETS.items():
        assert secret not in seen, f"the {provider} secret leaked"
        assert secret[:12] not in seen, f"a prefix of the {provider} secret leaked"
