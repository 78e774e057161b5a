"""The text kinds' brief and answers: what a caption asks of a model, and what comes back."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from imagemill import writing
from imagemill.domain import InputImage, Task, TaskKind
from imagemill.errors import ProviderError


def _task(kind: TaskKind = TaskKind.CAPTION, n: int = 1, **params: Any) -> Task:
    return Task(
        job_id="job_1",
        kind=kind,
        model="m",
        prompt="Organic cotton tote bag, navy",
        negative_prompt=None,
        n=n,
        width=0,
        height=0,
        seed=None,
        params=params,
    )


def _answer(captions: list[dict[str, Any]]) -> str:
    return json.dumps({"captions": captions})


def test_a_caption_brief_asks_for_n_per_tone_in_order_with_exact_hashtags() -> None:
    task = _task(n=2, tones=["playful", "luxurious"], hashtags=3, language="German")
    brief = writing.brief(task)
    assert brief.count == 4
    assert "2 playful, 2 luxurious" in brief.text
    assert "exactly 3 hashtags" in brief.text
    assert "German" in brief.text
    captions = brief.schema["properties"]["captions"]
    assert (captions["minItems"], captions["maxItems"]) == (4, 4)
    tags = captions["items"]["properties"]["hashtags"]
    assert (tags["minItems"], tags["maxItems"]) == (3, 3)
    Draft202012Validator.check_schema(brief.schema)


def test_every_brief_schema_is_strict_mode_ready() -> None:
    """OpenAI's strict structured outputs: every object closed, every property required."""

    def check(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object":
                assert node["additionalProperties"] is False
                assert sorted(node["required"]) == sorted(node["properties"])
            for value in node.values():
                check(value)
        elif isinstance(node, list):
            for value in node:
                check(value)

    for kind in writing.TEXT_KINDS:
        for hashtags in (0, 4):
            params = {"hashtags": hashtags} if kind is TaskKind.CAPTION else {}
            check(writing.brief(_task(kind, **params)).schema)


def test_answers_become_outputs_tone_by_tone_with_their_hashtags() -> None:
    task = _task(n=1, tones=["playful", "calm"], hashtags=2)
    answer = _answer(
        [
            {"text": "Carry it all ", "hashtags": ["#Tote Bag", "eco"]},
            {"text": "Quiet strength.", "hashtags": ["navy", "organic"]},
        ]
    )
    outputs = writing.read_answer(task, answer, cost_usd=0.002)
    assert [(o.text, o.tone) for o in outputs] == [
        ("Carry it all\n\n#ToteBag #eco", "playful"),
        ("Quiet strength.\n\n#navy #organic", "calm"),
    ]
    assert [o.cost_usd for o in outputs] == [0.001, 0.001]
    assert all(writing.count_hashtags(o.text or "") == 2 for o in outputs)


@pytest.mark.parametrize(
    ("answer", "complaint"),
    [
        ("not json", "not the JSON"),
        (json.dumps({"captions": []}), "0 captions of the 1"),
        (json.dumps({"other": 1}), "0 captions"),
        (_answer([{"text": "x", "hashtags": ["a", "#a", "  "]}]), "1 usable hashtags of the 2"),
        (_answer([{"hashtags": ["a", "b"]}]), "without text"),
        (_answer([{"text": "   ", "hashtags": ["a", "b"]}]), "empty text"),
    ],
)
def test_an_answer_that_breaks_the_brief_is_a_retryable_error(answer: str, complaint: str) -> None:
    with pytest.raises(ProviderError, match=complaint) as raised:
        writing.read_answer(_task(hashtags=2), answer)
    assert raised.value.retryable


def test_enhance_and_describe_answer_prompts() -> None:
    task = _task(TaskKind.ENHANCE, n=2, style="cinematic")
    brief = writing.brief(task)
    assert "cinematic" in brief.text and brief.count == 2
    outputs = writing.read_answer(task, json.dumps({"prompts": ['"one"', " two "]}))
    assert [o.text for o in outputs] == ["one", "two"]
    image = InputImage("ast_1", b"png", "image/png", 4, 4)
    described = writing.brief(
        Task("j", TaskKind.DESCRIBE, "m", "", None, 1, 0, 0, None, {}, inputs=(image,))
    )
    assert described.images == (image,)


@pytest.mark.parametrize(
    ("text", "count"),
    [("#a #b c#d", 2), ("#Été #夏 #x_y", 3), ("no tags # here", 0), ("(#one)", 1)],
)
def test_hashtags_are_counted_as_a_hash_and_a_word(text: str, count: int) -> None:
    assert writing.count_hashtags(text) == count
