"""Built-in styles (``imagemill.styles``): listed on a fresh server, read-only, copyable,
and usable with every image model, their negative prompt going only where it is taken."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from imagemill.config import Settings
from imagemill.domain import Submission, TaskKind
from imagemill.errors import InvalidInput
from imagemill.providers.gemini import Gemini
from imagemill.providers.openai_images import OpenAIImages
from imagemill.providers.placeholder import PlaceholderProvider
from imagemill.providers.recraft import Recraft
from imagemill.providers.registry import Registry
from imagemill.runtime import Runtime
from imagemill.styles import BUILTIN_STYLES

ASKED_FOR = {"modern", "traditional", "festive", "elegant", "cinematic", "watercolor"}
ASKED_FOR |= {"photographic", "flat illustration"}


@pytest.fixture
async def every_model(settings: Settings) -> AsyncIterator[Runtime]:
    """A runtime whose hosted models are all set up (keys given; nothing is called)."""
    keys = {"openai_api_key": "sk-x", "gemini_api_key": "g", "recraft_api_key": "rc"}
    keyed = Settings(**{**settings.model_dump(), **keys})
    providers = [PlaceholderProvider(), OpenAIImages(keyed), Gemini(keyed), Recraft(keyed)]
    async with Runtime(keyed, registry=Registry(providers), run_workers=False) as runtime:
        yield runtime


async def test_a_fresh_server_lists_the_styles_read_only(client: httpx.AsyncClient) -> None:
    listed = (await client.get("/v1/presets")).json()["data"]
    styles = {p["name"]: p for p in listed if p["builtin"]}
    assert set(styles) >= ASKED_FOR
    for style in styles.values():
        assert style["model"] is None, "a style is for any model"
        assert "{prompt}" in style["prompt_template"]
        assert style["negative_prompt"] and style["size"] and style["description"]
        assert (await client.get(f"/v1/presets/{style['id']}")).json() == style
    cinematic = styles["cinematic"]
    patched = await client.patch(f"/v1/presets/{cinematic['id']}", json={"size": "64x64"})
    assert patched.status_code == 403 and "/copy" in patched.json()["error"]["message"]
    assert (await client.delete("/v1/presets/cinematic")).status_code == 403
    assert (await client.get("/v1/presets/cinematic")).json() == cinematic


async def test_a_style_copied_is_the_owners_own_to_change(client: httpx.AsyncClient) -> None:
    copied = await client.post("/v1/presets/pre_builtin_watercolor/copy", json={"name": "wash"})
    assert copied.status_code == 201, copied.text
    mine = copied.json()
    assert (mine["builtin"], mine["name"]) == (False, "wash")
    assert (
        mine["prompt_template"]
        == (await client.get("/v1/presets/watercolor")).json()["prompt_template"]
    )
    changed = await client.patch("/v1/presets/wash", json={"size": "64x64"})
    assert changed.status_code == 200 and changed.json()["size"] == "64x64"
    # Named like the style, the copy comes first; the style's id still means the style.
    same = await client.post("/v1/presets/watercolor/copy")
    assert same.status_code == 201 and same.json()["name"] == "watercolor"
    assert (await client.get("/v1/presets/watercolor")).json()["id"] == same.json()["id"]
    assert (await client.get("/v1/presets/pre_builtin_watercolor")).json()["builtin"] is True
    again = await client.post("/v1/presets/pre_builtin_watercolor/copy")
    assert again.status_code == 409 and again.json()["error"]["field"] == "name"


async def test_a_job_in_a_style(client: httpx.AsyncClient) -> None:
    body = {"model": "placeholder", "prompt": "a harbour", "preset": "cinematic"}
    response = await client.post("/v1/jobs", json=body, headers={"Prefer": "wait=10"})
    assert response.status_code == 200, response.text
    request = response.json()["request"]
    assert request["prompt"].startswith("a harbour, cinematic film still")
    assert request["size"] == "1536x864"
    assert request["negative_prompt"] == "flat lighting, cartoon, low quality, blurry"
    assert response.json()["outputs"][0]["width"] == 1536


@pytest.mark.parametrize("style", [s.name for s in BUILTIN_STYLES])
async def test_every_style_runs_on_every_image_model(every_model: Runtime, style: str) -> None:
    """Its negative prompt is kept for the models that take one and left out for the
    others (it was a 422 on `negative_prompt` for OpenAI's and Google's models)."""
    owner = await every_model.local_owner()
    for spec in every_model.registry.models():
        if TaskKind.IMAGE not in spec.kinds:
            continue
        submission = Submission(model=spec.id, prompt="a lighthouse", preset=style)
        [job] = await every_model.service.submit(owner.id, submission)
        taken = job.request.negative_prompt is not None
        assert taken == spec.limits.negative_prompt, spec.id
        assert job.request.prompt.startswith("a lighthouse, ")
    explicit = Submission(model="openai/dall-e-3", prompt="x", preset=style, negative_prompt="text")
    with pytest.raises(InvalidInput) as refused:
        await every_model.service.submit(owner.id, explicit)
    assert refused.value.field == "negative_prompt", "one you give is still refused"
