"""The OpenAI fake's Chat Completions, driven through the official ``openai`` SDK
(``AsyncOpenAI``) like the real API: structured outputs that conform, vision, refusals,
errors and faults, on the same base URL as the images."""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import jsonschema
import openai
import pytest
from PIL import Image
from pydantic import BaseModel

from fakes.faults import Faults
from fakes.openai_chat import REFUSAL
from fakes.openai_images import FakeOpenAI, Plug
from fakes.openai_messages import IMAGE_TOKENS
from fakes.server import serve

PRODUCT = "Hand-thrown ceramic mug in a sage green glaze, dishwasher safe, holds 350 ml."


def caption_schema(captions: int, hashtags: int) -> dict[str, Any]:
    """What imagemill's caption brief asks for (strict-mode ready)."""
    caption = {
        "type": "object",
        "properties": {
            "text": {"type": "string"},
            "hashtags": {
                "type": "array",
                "items": {"type": "string"},
                "minItems": hashtags,
                "maxItems": hashtags,
            },
        },
        "required": ["text", "hashtags"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {
            "captions": {
                "type": "array",
                "items": caption,
                "minItems": captions,
                "maxItems": captions,
            }
        },
        "required": ["captions"],
        "additionalProperties": False,
    }


def json_schema(schema: dict[str, Any], strict: bool = True) -> Any:
    return {
        "type": "json_schema",
        "json_schema": {"name": "answer", "strict": strict, "schema": schema},
    }


def data_url(size: tuple[int, int] = (48, 32), fmt: str = "PNG") -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, (120, 160, 130)).save(buffer, fmt)
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(buffer.getvalue()).decode()}"


def user(text: str, *images: dict[str, Any]) -> list[Any]:
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}]
    parts += [{"type": "image_url", "image_url": image} for image in images]
    return [
        {"role": "system", "content": "You write captions for product posts."},
        {"role": "user", "content": parts},
    ]


@pytest.fixture(scope="module")
def socket() -> Iterator[tuple[Plug, str]]:
    plug = Plug()
    with serve(plug) as url:
        yield plug, url


@pytest.fixture
def fake(socket: tuple[Plug, str]) -> FakeOpenAI:
    fake = FakeOpenAI(faults=Faults(retry_after=0.01))
    fake.plug_into(*socket)
    return fake


@pytest.fixture
async def client(fake: FakeOpenAI) -> AsyncIterator[openai.AsyncOpenAI]:
    sdk = openai.AsyncOpenAI(
        api_key="sk-test", base_url=f"{fake.base_url}/v1", max_retries=0, timeout=5.0
    )
    yield sdk
    await sdk.close()


# ---------------------------------------------------------------- structured outputs


async def test_captions_conform_to_the_schema_with_every_item_asked_for(
    client: openai.AsyncOpenAI,
) -> None:
    schema = caption_schema(captions=3, hashtags=5)
    response = await client.chat.completions.create(
        model="gpt-4o-mini",
        messages=user(f"Product text: {PRODUCT}", {"url": data_url()}),
        response_format=json_schema(schema),
        n=2,
        seed=7,
        temperature=0.7,
        user="owner-1",
    )

    assert response.object == "chat.completion" and response.id.startswith("chatcmpl-")
    assert response.model == "gpt-4o-mini-2024-07-18"  # the snapshot that served it
    assert response.system_fingerprint and response.system_fingerprint.startswith("fp_")
    assert [choice.index for choice in response.choices] == [0, 1]
    documents = []
    for choice in response.choices:
        assert choice.finish_reason == "stop" and choice.message.refusal is None
        assert choice.message.role == "assistant" and choice.message.content is not None
        document = json.loads(choice.message.content)
        jsonschema.validate(document, schema)
        for caption in document["captions"]:
            tags = caption["hashtags"]
            assert len({tag.casefold() for tag in tags}) == 5  # distinct, like hashtags
            said = f"Product text: {PRODUCT}"
            assert all(tag.lower() in said.lower().replace("-", "") for tag in tags)
            assert caption["text"] and all(w in said for w in caption["text"].split())
        documents.append(document)
    assert documents[0] != documents[1]  # each choice is its own answer
    usage = response.usage
    assert usage is not None and usage.prompt_tokens > IMAGE_TOKENS["auto"]
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 0


@pytest.mark.parametrize("model", ["gpt-4o-mini", "gpt-4.1-mini"])
async def test_answers_are_the_same_for_the_same_request_and_seed(
    client: openai.AsyncOpenAI, model: str
) -> None:
    async def answer(seed: int) -> str | None:
        response = await client.chat.completions.create(
            model=model,
            messages=user("Prompt: a lighthouse at dusk\nWrite 2 different variants."),
            response_format=json_schema(prompts_schema(2)),
            seed=seed,
        )
        return response.choices[0].message.content

    first = await answer(1)
    assert first == await answer(1)
    assert first != await answer(2)
    assert len(json.loads(first or "")["prompts"]) == 2


def prompts_schema(count: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "prompts": {"type": "array", "items": {"type": "string"}, "minItems": count}
        },
        "required": ["prompts"],
        "additionalProperties": False,
    }


async def test_string_number_and_choice_keywords_are_honoured(client: openai.AsyncOpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {
            "tone": {"type": "string", "enum": ["playful", "calm"]},
            "title": {"type": "string", "minLength": 60, "maxLength": 80},
            "short": {"type": "string", "maxLength": 5},
            "score": {"type": "integer", "minimum": 3, "maximum": 9},
            "ratio": {"type": "number", "exclusiveMinimum": 1},
            "ok": {"type": "boolean"},
            "note": {"type": ["string", "null"]},
            "when": {"type": "string", "format": "date-time"},
            "kind": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/kind"}]},
            "keywords": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
        },
        "required": [
            "tone",
            "title",
            "short",
            "score",
            "ratio",
            "ok",
            "note",
            "when",
            "kind",
            "keywords",
        ],
        "additionalProperties": False,
        "$defs": {
            "kind": {
                "type": "object",
                "properties": {"label": {"type": "string"}},
                "required": ["label"],
                "additionalProperties": False,
            }
        },
    }
    response = await client.chat.completions.create(
        model="gpt-4.1-mini",
        messages=user("a quiet harbour with fishing boats"),
        response_format=json_schema(schema),
    )

    document = json.loads(response.choices[0].message.content or "")
    jsonschema.validate(document, schema, format_checker=jsonschema.FormatChecker())
    assert document["tone"] == "playful"  # an enum: its first value
    assert len(document["keywords"]) == 2 and document["kind"]["label"]


async def test_the_sdk_parse_helper_reads_a_pydantic_answer(client: openai.AsyncOpenAI) -> None:
    class Caption(BaseModel):
        text: str
        hashtags: list[str]

    class Captions(BaseModel):
        captions: list[Caption]

    completion = await client.chat.completions.parse(
        model="gpt-4o-mini", messages=user(PRODUCT), response_format=Captions
    )

    parsed = completion.choices[0].message.parsed
    assert parsed is not None and parsed.captions and parsed.captions[0].hashtags


async def test_without_a_schema_the_answer_is_a_sentence_of_the_users_words(
    client: openai.AsyncOpenAI, fake: FakeOpenAI
) -> None:
    response = await client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": PRODUCT},
        ],
        response_format={"type": "text"},
        max_completion_tokens=200,
    )

    content = response.choices[0].message.content or ""
    assert content.endswith(".") and content[0].isupper()
    assert {w.lower() for w in re.findall(r"[\w'-]+", content)} <= {
        w.lower() for w in re.findall(r"[\w'-]+", PRODUCT)
    }
    [call] = fake.calls
    assert call.endpoint == "chat" and call.fields["max_completion_tokens"] == 200


async def test_json_object_mode_needs_the_word_json(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        await client.chat.completions.create(
            model="gpt-4o-mini", messages=user(PRODUCT), response_format={"type": "json_object"}
        )
    assert refused.value.param == "messages"

    response = await client.chat.completions.create(
        model="gpt-4o-mini",
        messages=user(f"{PRODUCT} Answer in JSON."),
        response_format={"type": "json_object"},
    )
    assert isinstance(json.loads(response.choices[0].message.content or ""), dict)


# ---------------------------------------------------------------- strict mode's rules


@pytest.mark.parametrize(
    ("schema", "context"),
    [
        (  # a nested object without additionalProperties: false
            {
                "type": "object",
                "properties": {
                    "a": {
                        "type": "object",
                        "properties": {"b": {"type": "string"}},
                        "required": ["b"],
                    }
                },
                "required": ["a"],
                "additionalProperties": False,
            },
            "In context=('properties', 'a'), 'additionalProperties' is required",
        ),
        (  # an optional property
            {
                "type": "object",
                "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
                "required": ["a"],
                "additionalProperties": False,
            },
            "In context=(), 'required' is required to be supplied and to be an array "
            "including every key in properties. Missing 'b'.",
        ),
        (  # the items of an array
            {
                **caption_schema(1, 1),
                "properties": {
                    "captions": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {"t": {"type": "string"}},
                            "required": ["t"],
                        },
                    }
                },
            },
            "In context=('properties', 'captions', 'items'), 'additionalProperties'",
        ),
        (
            {"type": "array", "items": {"type": "string"}},
            "schema must be a JSON Schema of 'type: \"object\"'",
        ),
    ],
)
async def test_a_schema_that_breaks_strict_mode_is_a_400_naming_response_format(
    client: openai.AsyncOpenAI, schema: dict[str, Any], context: str
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        await client.chat.completions.create(
            model="gpt-4o-mini", messages=user(PRODUCT), response_format=json_schema(schema)
        )

    error = refused.value
    assert error.status_code == 400 and error.param == "response_format"
    assert error.type == "invalid_request_error"
    assert isinstance(error.body, dict)  # the SDK keeps the "error" object
    assert error.body["message"].startswith("Invalid schema for response_format 'answer': ")
    assert context in error.body["message"]


async def test_without_strict_the_same_schema_is_accepted(client: openai.AsyncOpenAI) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}}
    response = await client.chat.completions.create(
        model="gpt-4o-mini", messages=user(PRODUCT), response_format=json_schema(schema, False)
    )
    jsonschema.validate(json.loads(response.choices[0].message.content or ""), schema)


# ---------------------------------------------------------------- vision


async def test_images_count_toward_prompt_tokens_and_are_recorded_by_size(
    client: openai.AsyncOpenAI, fake: FakeOpenAI
) -> None:
    async def prompt_tokens(*images: dict[str, Any]) -> int:
        response = await client.chat.completions.create(
            model="gpt-4.1-mini", messages=user("describe this", *images)
        )
        assert response.usage is not None
        return response.usage.prompt_tokens

    text_only = await prompt_tokens()
    url = data_url(fmt="JPEG")
    assert await prompt_tokens({"url": url, "detail": "low"}) == text_only + IMAGE_TOKENS["low"]
    assert (
        await prompt_tokens({"url": url}, {"url": data_url()})
        == text_only + 2 * IMAGE_TOKENS["auto"]
    )
    recorded = fake.calls[-1].fields["messages"][1]["content"][1]["image_url"]
    assert recorded["url"] == len(base64.b64decode(url.split(",", 1)[1]))  # its size, not its bytes


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        (
            [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
            "messages[0]",
        ),
        (
            user("x", {"url": data_url(), "detail": "huge"}),
            "messages[1].content[1].image_url.detail",
        ),
        (user("x", {"url": "data:image/png;base64,bm90IGFuIGltYWdl"}), None),
        (user("x", {"url": "ftp://example.com/a.png"}), "messages[1].content[1].image_url.url"),
        ([{"role": "robot", "content": "hi"}], "messages[0].role"),
        ([], "messages"),
    ],
)
async def test_bad_messages_are_400s(
    client: openai.AsyncOpenAI, messages: list[Any], param: str | None
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        await client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    assert refused.value.param == param


# ---------------------------------------------------------------- refusals and limits


async def test_a_refused_structured_answer_is_message_refusal(client: openai.AsyncOpenAI) -> None:
    response = await client.chat.completions.create(
        model="gpt-4o-mini",
        messages=user("a caption for a forbidden product"),
        response_format=json_schema(caption_schema(1, 0)),
        n=2,
    )

    for choice in response.choices:
        assert choice.message.refusal == REFUSAL and choice.message.content is None
        assert choice.finish_reason == "stop"


async def test_a_refused_plain_answer_is_its_content(client: openai.AsyncOpenAI) -> None:
    response = await client.chat.completions.create(
        model="gpt-4o-mini", messages=user("something forbidden")
    )
    message = response.choices[0].message
    assert message.content == REFUSAL and message.refusal is None


async def test_a_token_limit_cuts_the_answer_short(client: openai.AsyncOpenAI) -> None:
    response = await client.chat.completions.create(
        model="gpt-4o-mini",
        messages=user(PRODUCT),
        response_format=json_schema(caption_schema(3, 5)),
        max_tokens=10,
    )

    choice = response.choices[0]
    assert choice.finish_reason == "length" and len(choice.message.content or "") == 40
    with pytest.raises(ValueError):
        json.loads(choice.message.content or "")  # cut JSON, as the API sends it
    assert response.usage is not None and response.usage.completion_tokens == 10


@pytest.mark.parametrize(
    ("options", "param", "code"),
    [
        ({"n": 0}, "n", "integer_below_min_value"),
        ({"temperature": 2.5}, "temperature", "decimal_above_max_value"),
        ({"max_completion_tokens": 100_000}, "max_completion_tokens", "invalid_value"),
        ({"response_format": {"type": "xml"}}, "response_format.type", "invalid_value"),
        ({"extra_body": {"reasoning_effort": "low"}}, "reasoning_effort", "unsupported_parameter"),
        ({"extra_body": {"colour": "blue"}}, None, None),
    ],
)
async def test_invalid_parameters_are_400s(
    client: openai.AsyncOpenAI, options: dict[str, Any], param: str | None, code: str | None
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        await client.chat.completions.create(model="gpt-4o-mini", messages=user("x"), **options)
    assert (refused.value.param, refused.value.code) == (param, code)


# ---------------------------------------------------------------- auth, models, faults


async def test_a_wrong_key_is_401_and_a_missing_one_too(fake: FakeOpenAI) -> None:
    async with openai.AsyncOpenAI(
        api_key="sk-wrong-0123456789", base_url=f"{fake.base_url}/v1", max_retries=0
    ) as wrong:
        with pytest.raises(openai.AuthenticationError) as refused:
            await wrong.chat.completions.create(model="gpt-4o-mini", messages=user("x"))
    assert refused.value.code == "invalid_api_key"

    async with httpx.AsyncClient() as raw:
        answer = await raw.post(f"{fake.base_url}/v1/chat/completions", json={})
    assert answer.status_code == 401 and answer.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("model", ["gpt-5-nano-ultra", "gpt-image-1"])
async def test_a_model_that_does_not_chat_is_a_404(client: openai.AsyncOpenAI, model: str) -> None:
    with pytest.raises(openai.NotFoundError) as refused:
        await client.chat.completions.create(model=model, messages=user("x"))
    assert refused.value.status_code == 404


async def test_faults_answer_429_with_retry_after_and_5xx(
    client: openai.AsyncOpenAI, fake: FakeOpenAI
) -> None:
    fake.faults.queue("429", "503")
    with pytest.raises(openai.RateLimitError) as limited:
        await client.chat.completions.create(model="gpt-4o-mini", messages=user("x"))
    assert limited.value.response.headers["retry-after"] == "0.01"
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(model="gpt-4o-mini", messages=user("x"))
    assert fake.faults.log == [("chat", "429"), ("chat", "503")]


async def test_the_sdk_retries_a_429_and_then_succeeds(fake: FakeOpenAI) -> None:
    fake.faults.queue("429")
    async with openai.AsyncOpenAI(
        api_key="sk-test", base_url=f"{fake.base_url}/v1", max_retries=1
    ) as retrying:
        response = await retrying.chat.completions.create(model="gpt-4o-mini", messages=user("x"))
    assert response.choices[0].message.content
    assert [call.endpoint for call in fake.calls] == ["chat", "chat"]


async def test_one_base_url_serves_images_and_chat(client: openai.AsyncOpenAI) -> None:
    image = await client.images.generate(model="gpt-image-1", prompt="a mug", quality="low")
    chat = await client.chat.completions.create(model="gpt-4o-mini", messages=user("a mug"))
    assert image.data and image.data[0].b64_json and chat.choices[0].message.content
