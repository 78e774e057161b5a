"""The Gemini fake's text models (``gemini-2.5-flash``, ``gemini-2.5-flash-lite``), driven
through the official google-genai SDK (and raw HTTP where the SDK would not send what the
test needs): structured output that conforms, vision, thinking, safety, errors, faults."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import jsonschema
import pytest
import pytest_asyncio
from google import genai
from google.genai import errors, types
from PIL import Image
from pydantic import BaseModel

from fakes.faults import Faults
from fakes.gemini import FakeGemini
from fakes.gemini_requests import INPUT_IMAGE_TOKENS
from fakes.server import serve

KEY = "test-key"
FLASH = "gemini-2.5-flash"
LITE = "gemini-2.5-flash-lite"
NO_RETRY = types.HttpRetryOptions(attempts=1)
PRODUCT = "Hand-thrown ceramic mug in a sage green glaze, dishwasher safe, holds 350 ml."

pytestmark = pytest.mark.asyncio(loop_scope="module")

CAPTIONS = {  # what imagemill's caption brief asks for, as JSON Schema
    "type": "object",
    "properties": {
        "captions": {
            "type": "array",
            "minItems": 3,
            "maxItems": 3,
            "items": {
                "type": "object",
                "properties": {
                    "text": {"type": "string"},
                    "hashtags": {
                        "type": "array",
                        "items": {"type": "string"},
                        "minItems": 5,
                        "maxItems": 5,
                    },
                },
                "required": ["text", "hashtags"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["captions"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[FakeGemini, str]]:
    fake = FakeGemini(api_key=KEY)
    with serve(fake.app) as url:
        yield fake, url


@pytest.fixture(autouse=True)
def fake(served: tuple[FakeGemini, str]) -> FakeGemini:
    served[0].calls.clear()
    served[0].faults = Faults()
    return served[0]


@pytest.fixture
def url(served: tuple[FakeGemini, str]) -> str:
    return served[1]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(served: tuple[FakeGemini, str]) -> AsyncIterator[genai.Client]:
    options = types.HttpOptions(
        base_url=served[1], api_version="v1beta", timeout=5000, retry_options=NO_RETRY
    )
    sdk = genai.Client(api_key=KEY, http_options=options)
    yield sdk
    await sdk.aio.aclose()


def png(size: tuple[int, int] = (40, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (120, 160, 130)).save(out, format="PNG")
    return out.getvalue()


def as_json(config: types.GenerateContentConfig) -> types.GenerateContentConfig:
    config.response_mime_type = "application/json"
    return config


def texts(response: types.GenerateContentResponse) -> list[str]:
    """Every candidate's text."""
    found = []
    for candidate in response.candidates or []:
        assert candidate.content and candidate.content.parts
        found.append("".join(part.text or "" for part in candidate.content.parts))
    return found


# -- structured output -----------------------------------------------------------------


async def test_json_schema_answers_conform_with_every_item_asked_for(
    client: genai.Client, fake: FakeGemini
) -> None:
    response = await client.aio.models.generate_content(
        model=FLASH,
        contents=types.Content(
            role="user",
            parts=[
                types.Part.from_text(text=f"Product text: {PRODUCT}"),
                types.Part.from_bytes(data=png(), mime_type="image/png"),
            ],
        ),
        config=as_json(
            types.GenerateContentConfig(
                system_instruction="You write captions for product posts.",
                response_json_schema=CAPTIONS,
                candidate_count=2,
                temperature=0.7,
                seed=11,
                max_output_tokens=4000,
            )
        ),
    )

    assert response.model_version == FLASH and response.candidates
    assert [c.finish_reason for c in response.candidates] == [types.FinishReason.STOP] * 2
    documents = [json.loads(text) for text in texts(response)]
    said = f"Product text: {PRODUCT}".lower().replace("-", "")
    for document in documents:
        jsonschema.validate(document, CAPTIONS)
        for caption in document["captions"]:
            assert len({tag.casefold() for tag in caption["hashtags"]}) == 5
            assert all(tag.lower() in said for tag in caption["hashtags"])
    assert documents[0] != documents[1]
    [call] = fake.calls
    assert call.body["systemInstruction"]["parts"][0]["text"].startswith("You write")
    assert call.body["generationConfig"]["responseJsonSchema"] == CAPTIONS


async def test_response_schema_in_the_openapi_subset(client: genai.Client) -> None:
    schema = types.Schema(
        type=types.Type.OBJECT,
        properties={
            "tone": types.Schema(type=types.Type.STRING, enum=["calm", "bold"]),
            "tags": types.Schema(
                type=types.Type.ARRAY,
                items=types.Schema(type=types.Type.STRING),
                min_items=4,
                max_items=4,
            ),
            "score": types.Schema(type=types.Type.INTEGER, minimum=2, maximum=5),
            "note": types.Schema(type=types.Type.STRING, nullable=True, max_length=12),
        },
        required=["tone", "tags", "score", "note"],
    )
    response = await client.aio.models.generate_content(
        model=LITE,
        contents=PRODUCT,
        config=as_json(types.GenerateContentConfig(response_schema=schema)),
    )

    document = json.loads(response.text or "")
    assert list(document) == ["tone", "tags", "score", "note"]  # the SDK sends propertyOrdering
    jsonschema.validate(
        document,
        {
            "type": "object",
            "properties": {
                "tone": {"enum": ["calm", "bold"]},
                "tags": {
                    "type": "array",
                    "items": {"type": "string"},
                    "minItems": 4,
                    "maxItems": 4,
                },
                "score": {"type": "integer", "minimum": 2, "maximum": 5},
                "note": {"type": ["string", "null"], "maxLength": 12},
            },
            "required": ["tone", "tags", "score", "note"],
        },
    )
    assert document["tone"] == "calm"


async def test_a_pydantic_schema_is_parsed_back_in_its_property_order(client: genai.Client) -> None:
    class Caption(BaseModel):
        text: str
        hashtags: list[str]

    class Captions(BaseModel):
        captions: list[Caption]

    response = await client.aio.models.generate_content(
        model=FLASH,
        contents=PRODUCT,
        config=as_json(types.GenerateContentConfig(response_schema=Captions)),
    )

    assert isinstance(response.parsed, Captions) and response.parsed.captions
    assert list(json.loads(response.text or "")["captions"][0]) == ["text", "hashtags"]


async def test_limits_sent_as_strings_over_rest_are_honoured(url: str) -> None:
    body = {
        "contents": [{"role": "user", "parts": [{"text": PRODUCT}]}],
        "generationConfig": {
            "responseMimeType": "application/json",
            "responseSchema": {
                "type": "OBJECT",
                "properties": {
                    "title": {"type": "STRING", "maxLength": "10"},
                    "keywords": {"type": "ARRAY", "items": {"type": "STRING"}, "minItems": "6"},
                },
            },
        },
    }
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            f"{url}/v1beta/models/{FLASH}:generateContent",
            headers={"x-goog-api-key": KEY},
            json=body,
        )

    assert answer.status_code == 200
    document = json.loads(answer.json()["candidates"][0]["content"]["parts"][0]["text"])
    assert list(document) == ["keywords", "title"]  # no propertyOrdering: alphabetical
    assert len({word.casefold() for word in document["keywords"]}) == 6
    assert 0 < len(document["title"]) <= 10


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        (
            {
                "type": "OBJECT",
                "properties": {"a": {"type": "STRING"}},
                "additionalProperties": False,
            },
            "Unknown name \"additionalProperties\" at 'generation_config.response_schema'",
        ),
        (
            {"type": "object", "properties": {"a": {"type": "string"}}},
            "Invalid value at 'generation_config.response_schema.type'",
        ),
        ({"type": "OBJECT"}, "response_schema.properties: should be non-empty for OBJECT type"),
        (
            {"type": "ARRAY", "items": {"type": "STRING"}, "minItems": "many"},
            "Invalid value at 'generation_config.response_schema.min_items' (TYPE_INT64)",
        ),
    ],
)
async def test_a_response_schema_the_api_cannot_read_is_400(
    url: str, schema: dict[str, Any], message: str
) -> None:
    body = {
        "contents": [{"parts": [{"text": "x"}]}],
        "generationConfig": {"responseMimeType": "application/json", "responseSchema": schema},
    }
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            f"{url}/v1beta/models/{FLASH}:generateContent", params={"key": KEY}, json=body
        )

    assert answer.status_code == 400
    assert message in answer.json()["error"]["message"]


async def test_plain_text_is_a_sentence_of_the_prompt_and_the_same_each_time(
    client: genai.Client,
) -> None:
    async def ask(seed: int) -> str:
        response = await client.aio.models.generate_content(
            model=LITE, contents=PRODUCT, config=types.GenerateContentConfig(seed=seed)
        )
        return response.text or ""

    first = await ask(1)
    assert first == await ask(1) and first != await ask(2)
    assert first.endswith(".") and set(first.lower().rstrip(".").split()) <= set(
        PRODUCT.lower().replace(",", "").rstrip(".").split()
    )


# -- vision, thinking and usage --------------------------------------------------------


async def test_inline_images_are_accepted_and_counted(client: genai.Client) -> None:
    async def usage(images: int) -> types.GenerateContentResponseUsageMetadata:
        parts = [types.Part.from_text(text="Describe this image as a prompt.")]
        parts += [types.Part.from_bytes(data=png(), mime_type="image/png") for _ in range(images)]
        response = await client.aio.models.generate_content(
            model=LITE, contents=types.Content(role="user", parts=parts)
        )
        assert response.usage_metadata is not None
        return response.usage_metadata

    none, two = await usage(0), await usage(2)
    assert two.prompt_token_count == (none.prompt_token_count or 0) + 2 * INPUT_IMAGE_TOKENS
    assert two.prompt_tokens_details and [d.modality for d in two.prompt_tokens_details] == [
        types.MediaModality.TEXT,
        types.MediaModality.IMAGE,
    ]
    assert two.thoughts_token_count is None  # -lite does not think unless asked to
    assert two.total_token_count == (two.prompt_token_count or 0) + (
        two.candidates_token_count or 0
    )


async def test_flash_thinks_and_its_thoughts_spend_the_output_budget(client: genai.Client) -> None:
    thought = await client.aio.models.generate_content(model=FLASH, contents=PRODUCT)
    usage = thought.usage_metadata
    assert usage and usage.thoughts_token_count and usage.candidates_token_count
    assert usage.prompt_token_count
    assert usage.total_token_count == (
        usage.prompt_token_count + usage.candidates_token_count + usage.thoughts_token_count
    )

    starved = await client.aio.models.generate_content(
        model=FLASH, contents=PRODUCT, config=types.GenerateContentConfig(max_output_tokens=30)
    )
    assert (
        starved.candidates and starved.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    )
    assert starved.text is None  # the thoughts took it all

    unthinking = await client.aio.models.generate_content(
        model=FLASH,
        contents=PRODUCT,
        config=types.GenerateContentConfig(
            max_output_tokens=5, thinking_config=types.ThinkingConfig(thinking_budget=0)
        ),
    )
    assert unthinking.text and len(unthinking.text) == 20  # cut at the limit
    assert unthinking.usage_metadata and unthinking.usage_metadata.thoughts_token_count is None


# -- safety, errors, faults ------------------------------------------------------------


async def test_a_blocked_prompt_has_prompt_feedback_and_no_candidates(client: genai.Client) -> None:
    response = await client.aio.models.generate_content(
        model=FLASH,
        contents="a caption for something forbidden",
        config=as_json(types.GenerateContentConfig(response_json_schema=CAPTIONS)),
    )

    assert not response.candidates and response.text is None
    assert (
        response.prompt_feedback
        and response.prompt_feedback.block_reason == types.BlockedReason.SAFETY
    )


async def test_a_filtered_answer_has_finish_reason_safety(client: genai.Client) -> None:
    response = await client.aio.models.generate_content(
        model=LITE,
        contents="an unsafe caption",
        config=types.GenerateContentConfig(candidate_count=2),
    )

    assert response.candidates and len(response.candidates) == 2
    assert {c.finish_reason for c in response.candidates} == {types.FinishReason.SAFETY}
    assert all(c.content is None for c in response.candidates)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            types.GenerateContentConfig(response_modalities=["TEXT", "IMAGE"]),
            "Model does not support the requested response modalities: text,image",
        ),
        (types.GenerateContentConfig(candidate_count=9), "candidate_count"),
        (types.GenerateContentConfig(temperature=3), "temperature"),
        (types.GenerateContentConfig(response_mime_type="text/csv"), "response_mime_type"),
        (types.GenerateContentConfig(response_json_schema=CAPTIONS), "response_mime_type"),
        (
            as_json(
                types.GenerateContentConfig(
                    response_json_schema={
                        "type": "object",
                        "properties": {"a": {"$ref": "#/$defs/none"}},
                    }
                )
            ),
            "response_json_schema",
        ),
    ],
)
async def test_invalid_requests_are_400(
    client: genai.Client, config: types.GenerateContentConfig, message: str
) -> None:
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.models.generate_content(model=FLASH, contents="x", config=config)

    assert (caught.value.code, caught.value.status) == (400, "INVALID_ARGUMENT")
    assert caught.value.message and message in caught.value.message


async def test_an_unknown_text_model_is_404(client: genai.Client) -> None:
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.models.generate_content(model="gemini-2.5-flash-huge", contents="x")
    assert caught.value.code == 404


async def test_faults_on_text_models(client: genai.Client, fake: FakeGemini) -> None:
    fake.faults.queue("429", "503")
    with pytest.raises(errors.ClientError) as limited:
        await client.aio.models.generate_content(model=FLASH, contents="x")
    with pytest.raises(errors.ServerError) as unavailable:
        await client.aio.models.generate_content(model=LITE, contents="x")

    assert (limited.value.code, limited.value.status) == (429, "RESOURCE_EXHAUSTED")
    assert limited.value.response.headers["Retry-After"] == "1"
    assert unavailable.value.code == 503
    assert fake.faults.log == [("generate_content", "429"), ("generate_content", "503")]
