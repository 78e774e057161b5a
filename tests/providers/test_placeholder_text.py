"""The placeholder's text: captions, enhanced prompts and descriptions, offline, marked as
placeholder, deterministic, and following the brief (counts, tones, hashtags, style)."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image

from imagemill import writing
from imagemill.domain import InputImage, Task, TaskKind
from imagemill.providers.placeholder import PlaceholderProvider
from providers.running import Recorded


def _image(colour: tuple[int, int, int], width: int = 60, height: int = 30) -> InputImage:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return InputImage("ast_1", buffer.getvalue(), "image/png", width, height)


def _task(
    kind: TaskKind, prompt: str = "Handmade ceramic mug, speckled glaze", **fields: Any
) -> Task:
    values: dict[str, Any] = {
        "job_id": "job_1",
        "kind": kind,
        "model": "placeholder",
        "prompt": prompt,
        "negative_prompt": None,
        "n": 1,
        "width": 0,
        "height": 0,
        "seed": None,
        "params": {},
    }
    return Task(**{**values, **fields})


async def _run(task: Task) -> list[Any]:
    return await PlaceholderProvider().run(task, Recorded().context())


@pytest.mark.parametrize("hashtags", [0, 1, 5, 12])
async def test_captions_come_n_per_tone_with_exactly_the_hashtags_asked(hashtags: int) -> None:
    params = {"tones": ["professional", "playful", "luxurious"], "hashtags": hashtags}
    outputs = await _run(_task(TaskKind.CAPTION, n=2, params=params))
    assert [o.tone for o in outputs] == [t for t in params["tones"] for _ in range(2)]
    for output in outputs:
        assert output.text.startswith("[placeholder caption, ")
        assert writing.count_hashtags(output.text) == hashtags
        assert output.content_type == writing.TEXT_CONTENT_TYPE
        assert output.cost_usd is None  # the price table decides: free, unless configured
    assert len({o.text for o in outputs}) == len(outputs)  # variants differ


async def test_captions_are_deterministic_and_say_their_language_and_emojis() -> None:
    task = _task(TaskKind.CAPTION, params={"language": "German", "emojis": True, "hashtags": 2})
    first, second = await _run(task), await _run(task)
    assert [o.text for o in first] == [o.text for o in second]
    assert "German" in first[0].text and "✨" in first[0].text
    assert "#Handmade #ceramic" in first[0].text


async def test_a_caption_of_images_alone_says_so() -> None:
    outputs = await _run(_task(TaskKind.CAPTION, prompt="", inputs=(_image((0, 0, 0)),)))
    assert "the product in 1 image(s)" in outputs[0].text


async def test_an_enhanced_prompt_keeps_the_prompt_and_works_in_the_style() -> None:
    outputs = await _run(_task(TaskKind.ENHANCE, prompt="a fox", n=3, params={"style": "ukiyo-e"}))
    assert len(outputs) == 3 and len({o.text for o in outputs}) == 3
    for output in outputs:
        assert output.text.startswith("[placeholder enhancement] a fox, ukiyo-e, ")


async def test_a_description_names_the_shape_size_and_colour_of_the_image() -> None:
    [output] = await _run(
        _task(TaskKind.DESCRIBE, prompt="", inputs=(_image((40, 80, 200), 120, 40),))
    )
    assert output.text == "[placeholder description] a landscape image, 120x40, mostly blue"
