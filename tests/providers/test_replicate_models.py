"""Replicate's Cog OpenAPI schemas turned into imagemill params schemas."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator

from imagemill.domain import TaskKind
from imagemill.providers.replicate_models import CATALOGUE, CONTROLLED, input_params_schema

OPENAPI: dict[str, Any] = {
    "components": {
        "schemas": {
            "Input": {
                "type": "object",
                "required": ["prompt", "style"],
                "properties": {
                    "style": {"allOf": [{"$ref": "#/components/schemas/style"}], "x-order": 2},
                    "prompt": {"type": "string", "title": "Prompt", "x-order": 0},
                    "steps": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": 4,
                        "default": 4,
                        "x-order": 1,
                        "title": "Steps",
                    },
                    "image": {"type": "string", "format": "uri", "x-order": 3},
                    "mask": {"type": "string", "format": "uri", "x-order": 4},
                },
            },
            "style": {"type": "string", "enum": ["a", "b"], "title": "style", "description": "x"},
        }
    }
}


def test_refs_are_inlined_cog_keys_dropped_and_controlled_inputs_left_out() -> None:
    schema, inputs = input_params_schema(OPENAPI, {"prompt", "image"})

    assert inputs == ["prompt", "steps", "style", "image", "mask"]  # by x-order
    assert list(schema["properties"]) == ["steps", "style", "mask"]
    assert schema["properties"]["style"] == {
        "type": "string",
        "enum": ["a", "b"],
        "title": "style",
        "description": "x",
    }
    assert schema["properties"]["steps"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 4,
        "default": 4,
        "title": "Steps",
    }
    assert schema["properties"]["mask"] == {"type": "string"}  # "uri" also takes data URIs
    assert schema["required"] == ["style"]
    assert schema["additionalProperties"] is False


def test_the_schema_validates_params_as_replicate_would() -> None:
    schema, _ = input_params_schema(OPENAPI, CONTROLLED)
    validator = Draft202012Validator(schema)

    assert validator.is_valid({"style": "a", "steps": 2})
    assert not validator.is_valid({"style": "c"})
    assert not validator.is_valid({"style": "a", "steps": 9})
    assert not validator.is_valid({"style": "a", "guidance": 3})
    assert not validator.is_valid({})  # style is required


def test_an_empty_openapi_gives_an_empty_strict_schema() -> None:
    schema, inputs = input_params_schema({}, CONTROLLED)
    assert schema == {"type": "object", "additionalProperties": False, "properties": {}}
    assert inputs == []


def test_the_catalogue_covers_each_kind_with_image_inputs_where_needed() -> None:
    kinds = {entry.kind for entry in CATALOGUE}
    assert kinds == {kind for kind in TaskKind if kind.rules.sized}  # text: other providers
    for entry in CATALOGUE:
        assert entry.id == f"replicate/{entry.ref}"
        needs_image = entry.kind.rules.inputs == "required"
        assert (entry.image_field is not None) == needs_image, entry.ref
