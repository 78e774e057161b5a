"""The text fakes' structured answers: documents that conform to the schema asked for,
made of the request's words (checked with jsonschema, over hand-picked and random
schemas), and Gemini's OpenAPI-subset schemas read as the API reads them."""

from __future__ import annotations

import random
import re
from typing import Any

import jsonschema
import pytest

from fakes.structured import OpenAPIProblem, SchemaProblem, Words, from_openapi, instance

TEXT = "A poster of a red fox in falling snow, soft morning light, muted colours."


def conforming(schema: dict[str, Any], text: str = TEXT, key: str = "") -> Any:
    document = instance(schema, Words(text), key)
    jsonschema.validate(document, schema, format_checker=jsonschema.FormatChecker())
    return document


@pytest.mark.parametrize(
    ("array", "count"),
    [
        ({"minItems": 4}, 4),
        ({"minItems": 2, "maxItems": 2}, 2),
        ({"maxItems": 1}, 1),
        ({"maxItems": 0}, 0),
        ({}, 3),
    ],
)
def test_arrays_have_min_items_or_a_few(array: dict[str, Any], count: int) -> None:
    document = conforming({"type": "array", "items": {"type": "string"}, **array})
    assert len(document) == count


def test_hashtag_items_are_distinct_words_of_the_text_even_when_few() -> None:
    schema = {
        "type": "object",
        "properties": {"hashtags": {"type": "array", "items": {"type": "string"}, "minItems": 5}},
    }
    tags = conforming(schema, "red fox")["hashtags"]
    assert len({tag.casefold() for tag in tags}) == 5  # numbered once every word is used
    assert {tag.rstrip("0123456789") for tag in tags} == {"red", "fox"}
    assert all(tag in TEXT for tag in conforming(schema)["hashtags"])


def test_strings_honour_lengths_formats_patterns_and_enums() -> None:
    schema = {
        "type": "object",
        "properties": {
            "long": {"type": "string", "minLength": 120},
            "short": {"type": "string", "maxLength": 4},
            "when": {"type": "string", "format": "date-time"},
            "site": {"type": "string", "format": "uri"},
            "word": {"type": "string", "pattern": "^[a-z]+$"},
            "tone": {"type": "string", "enum": ["warm", "cold"]},
            "fixed": {"const": "v1"},
        },
    }
    document = conforming(schema)
    assert (document["tone"], document["fixed"]) == ("warm", "v1")
    assert set(document["long"].split()) <= set(re.findall(r"[\w'-]+", TEXT))


def test_numbers_sit_inside_their_bounds() -> None:
    conforming(
        {
            "type": "object",
            "properties": {
                "a": {"type": "integer", "minimum": 5},
                "b": {"type": "integer", "maximum": -3},
                "c": {"type": "number", "exclusiveMinimum": 2, "exclusiveMaximum": 3},
                "d": {"type": "integer", "minimum": 7, "multipleOf": 5},
                "e": {"type": "boolean"},
                "f": {"type": "null"},
            },
        }
    )


def test_refs_choices_and_recursion() -> None:
    tree = {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "parent": {"anyOf": [{"$ref": "#/$defs/node"}, {"type": "null"}]},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
                },
                "required": ["name", "parent", "children"],
            }
        },
        "$ref": "#/$defs/node",
    }
    document = conforming(tree)
    assert document["parent"] is not None  # a non-null choice first, until deep enough


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}},
        {"$ref": "https://example.com/schema.json"},
        {
            "$defs": {"loop": {"type": "object", "properties": {"x": {"$ref": "#/$defs/loop"}}}},
            "$ref": "#/$defs/loop",
        },
    ],
)
def test_a_schema_no_document_can_follow_is_a_schema_problem(schema: dict[str, Any]) -> None:
    with pytest.raises(SchemaProblem):
        instance(schema, Words(TEXT))


def test_the_same_key_gives_the_same_document_and_another_key_another() -> None:
    schema = {"type": "object", "properties": {"text": {"type": "string"}}}
    assert conforming(schema, key="1") == conforming(schema, key="1")
    assert conforming(schema, key="1") != conforming(schema, key="2")
    assert conforming(schema, text="")["text"]  # no words: stock ones


def _random_schema(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    kinds = ["string", "integer", "number", "boolean", "enum", "nullable"]
    kind = rng.choice([*kinds, "object", "array"] if depth < 3 else kinds)
    if kind == "object":
        names = rng.sample(["text", "hashtags", "tags", "title", "score", "items", "tone"], 3)
        return {
            "type": "object",
            "properties": {name: _random_schema(rng, depth + 1) for name in names},
            "required": names,
            "additionalProperties": False,
        }
    if kind == "array":
        schema: dict[str, Any] = {"type": "array", "items": _random_schema(rng, depth + 1)}
        low = rng.choice([None, 0, 1, 4])
        if low is not None:
            schema["minItems"] = low
        if rng.random() < 0.5:
            schema["maxItems"] = max(low or 0, rng.choice([0, 1, 2, 6]))
        return schema
    if kind == "string":
        low = rng.choice([0, 1, 30, 90])
        return {"type": "string", "minLength": low, "maxLength": low + rng.choice([1, 5, 50])}
    if kind in ("integer", "number"):
        low = rng.randint(-50, 50)
        return {"type": kind, "minimum": low, "maximum": low + rng.randint(0, 9)}
    if kind == "enum":
        return {"type": "string", "enum": ["one", "two"]}
    if kind == "nullable":
        return {"anyOf": [_random_schema(rng, depth + 1), {"type": "null"}]}
    return {"type": "boolean"}


@pytest.mark.parametrize("seed", range(150))
def test_random_schemas_get_conforming_documents(seed: int) -> None:
    rng = random.Random(seed)
    conforming(_random_schema(rng), text=rng.choice([TEXT, "", "one", "fox fox fox"]))


# -- Gemini's responseSchema -----------------------------------------------------------


def test_an_openapi_schema_means_its_json_schema() -> None:
    schema = from_openapi(
        {
            "type": "OBJECT",
            "properties": {
                "b": {
                    "type": "ARRAY",
                    "items": {"type": "STRING"},
                    "min_items": "2",
                    "maxItems": 3,
                },
                "a": {"type": "STRING", "nullable": True, "maxLength": "9"},
                "c": {"type": "STRING", "enum": ["x", "y"], "format": "enum"},
            },
            "property_ordering": ["c", "b"],
            "required": ["a", "b"],
        }
    )

    assert schema == {
        "type": "object",
        "required": ["a", "b"],
        "properties": {
            "c": {"type": "string", "format": "enum", "enum": ["x", "y"]},
            "b": {"type": "array", "minItems": 2, "maxItems": 3, "items": {"type": "string"}},
            "a": {"type": ["string", "null"], "maxLength": 9},
        },
    }
    assert list(schema["properties"]) == ["c", "b", "a"]  # ordered, then the rest
    assert list(
        from_openapi({"type": "OBJECT", "properties": {"z": {}, "y": {}}})["properties"]
    ) == [
        "y",
        "z",
    ]


@pytest.mark.parametrize(
    ("schema", "kind", "where"),
    [
        (
            {"type": "OBJECT", "properties": {"a": {"type": "string"}}},
            "invalid_value",
            "properties[a].type",
        ),
        (
            {"type": "OBJECT", "properties": {"a": {"type": "STRING", "$ref": "#"}}},
            "unknown_name",
            "properties[a]",
        ),
        (
            {"type": "ARRAY", "items": {"type": "STRING"}, "maxItems": "lots"},
            "invalid_value",
            "max_items",
        ),
        ({"type": "OBJECT", "properties": {}}, "invalid", "properties"),
    ],
)
def test_an_openapi_schema_the_api_cannot_read(
    schema: dict[str, Any], kind: str, where: str
) -> None:
    with pytest.raises(OpenAPIProblem) as problem:
        from_openapi(schema)
    assert (problem.value.kind, problem.value.where) == (kind, where)
