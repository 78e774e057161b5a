"""A request's ``params`` against its model's JSON Schema, refused in plain words.

Each model states its params as a JSON Schema (``ModelSpec.params_schema``); a request's
are checked against it at submit, and a refusal names ``params.<key>`` and the rule in
words a person reads (never a Python repr). Validators are compiled once per schema.
"""

from __future__ import annotations

import json
from typing import Any, cast

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from imagemill.boundary import escaped, quoted
from imagemill.errors import InvalidInput


def check_params(params: dict[str, Any], schema: dict[str, Any]) -> None:
    """Validate ``params`` against a model's JSON Schema; the error names ``params.<key>``.

    A rule between params (an ``anyOf`` with a ``description`` and a ``field``, as
    ``{"field": "output_format", "description": "..."}``) is reported in its own words.
    """
    errors = list(_validator(schema).iter_errors(params))
    for error in errors:
        rule = error.schema if isinstance(error.schema, dict) else {}
        if error.validator == "anyOf" and "description" in rule:
            field = ".".join(["params", *map(str, error.absolute_path), rule.get("field", "")])
            raise InvalidInput(str(rule["description"]), field=field.rstrip("."))
    error = best_match(errors)
    if error is None:
        return
    path = [str(p) for p in error.absolute_path]
    if not path and error.validator == "additionalProperties":
        allowed = ", ".join(sorted(schema.get("properties", {}))) or "none"
        unknown = next((k for k in params if k not in schema.get("properties", {})), "")
        raise InvalidInput(
            f"unknown param {quoted(unknown)}; this model takes: {allowed}",
            field=f"params.{escaped(unknown)}",
        )
    if not path and error.validator == "required":
        required: list[str] = list(cast(Any, error.validator_value))
        missing = next(k for k in required if k not in params)
        raise InvalidInput(f"params.{missing} is required", field=f"params.{missing}")
    field = ".".join(["params", *(escaped(p) for p in path)])
    raise InvalidInput(f"{field} {_schema_rule(error)}", field=field)


_JSON_TYPES = {
    "integer": "a whole number",
    "number": "a number",
    "string": "text",
    "boolean": "true or false",
    "object": "an object",
    "array": "a list",
    "null": "null",
}


def _schema_rule(error: ValidationError) -> str:
    """The JSON Schema rule a value broke, in plain words (never the value's Python repr)."""
    rule, expected = error.validator, cast(Any, error.validator_value)
    if rule == "type":
        kinds = [expected] if isinstance(expected, str) else list(expected)
        return "must be " + " or ".join(_JSON_TYPES.get(k, k) for k in kinds)
    if rule in ("enum", "const"):
        choices = expected if rule == "enum" else [expected]
        return "must be one of: " + ", ".join(json.dumps(c, ensure_ascii=False) for c in choices)
    bounds = {
        "minimum": "at least",
        "maximum": "at most",
        "exclusiveMinimum": "more than",
        "exclusiveMaximum": "less than",
    }
    if rule in bounds:
        return f"must be {bounds[rule]} {expected}"
    lengths = {
        "minLength": "at least {} characters",
        "maxLength": "at most {} characters",
        "minItems": "at least {} items",
        "maxItems": "at most {} items",
        "minProperties": "at least {} keys",
        "maxProperties": "at most {} keys",
    }
    if rule in lengths:
        return "must have " + lengths[rule].format(expected)
    if rule == "pattern":
        return f"must match the pattern {expected}"
    if rule == "multipleOf":
        return f"must be a multiple of {expected}"
    if rule == "additionalProperties":
        return "holds a key this param does not take"
    if rule == "required":
        return "lacks a key it needs: " + ", ".join(map(str, expected))
    return f"breaks the model's {rule} rule"


# Building a validator costs more than validating; models' schemas live as long as the
# registry, so each is compiled once. Keyed by identity, holding the schema so the id
# is not reused; cleared if it ever grows (schemas made per call).
_validators: dict[int, tuple[dict[str, Any], Draft202012Validator]] = {}
_MAX_VALIDATORS = 256


def _validator(schema: dict[str, Any]) -> Draft202012Validator:
    cached = _validators.get(id(schema))
    if cached is None or cached[0] is not schema:
        if len(_validators) >= _MAX_VALIDATORS:
            _validators.clear()
        cached = (schema, Draft202012Validator(schema))
        _validators[id(schema)] = cached
    return cached[1]
