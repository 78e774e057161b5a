"""Params against a model's JSON Schema: a bad one named by its path, in plain words."""

from __future__ import annotations

from typing import Any

import pytest

from imagemill.errors import InvalidInput
from imagemill.jobs.params import check_params
from imagemill.providers.placeholder import PlaceholderProvider
from imagemill.specs import ModelSpec


@pytest.fixture
def spec() -> ModelSpec:
    return PlaceholderProvider().models()[0]


def test_valid_params_pass(spec: ModelSpec) -> None:
    check_params({"latency_ms": 10, "fail": "transient", "fail_attempts": 2}, spec.params_schema)
    check_params({}, spec.params_schema)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"latency_ms": "slow"}, "params.latency_ms"),
        ({"latency_ms": -1}, "params.latency_ms"),
        ({"fail": "sometimes"}, "params.fail"),
        ({"foo": 1}, "params.foo"),
        ({"latency_ms": 1, "foo": 1}, "params.foo"),
    ],
)
def test_a_bad_param_is_named(spec: ModelSpec, params: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        check_params(params, spec.params_schema)
    assert raised.value.field == field


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"latency_ms": True}, "params.latency_ms must be a whole number"),
        ({"latency_ms": "5"}, "params.latency_ms must be a whole number"),
        ({"latency_ms": -1}, "params.latency_ms must be at least 0"),
        ({"fail": "x\ny"}, 'params.fail must be one of: "transient", "permanent"'),
        ({"bogus\n": 1}, "unknown param 'bogus\\u000a'"),
        ({"it's": 1}, "unknown param 'it's'"),
    ],
)
def test_a_param_error_is_in_plain_words_never_a_python_repr(
    spec: ModelSpec, params: dict[str, Any], says: str
) -> None:
    """jsonschema's own messages show the value's repr (``True is not of type 'integer'``,
    ``'x\\ny' is not one of [...]``)."""
    with pytest.raises(InvalidInput) as raised:
        check_params(params, spec.params_schema)
    assert says in raised.value.message
    assert "True" not in raised.value.message and "\\n" not in raised.value.message


def test_an_unknown_param_lists_the_known_ones(spec: ModelSpec) -> None:
    with pytest.raises(InvalidInput) as raised:
        check_params({"steps": 30}, spec.params_schema)
    assert "'steps'" in raised.value.message
    assert "latency_ms" in raised.value.message


def test_a_missing_required_param_is_named() -> None:
    schema = {"type": "object", "properties": {"style": {"type": "string"}}, "required": ["style"]}
    with pytest.raises(InvalidInput) as raised:
        check_params({}, schema)
    assert raised.value.field == "params.style"


def test_a_nested_param_error_has_a_dotted_path() -> None:
    schema = {
        "type": "object",
        "properties": {
            "loras": {
                "type": "array",
                "items": {"type": "object", "properties": {"scale": {"type": "number"}}},
            }
        },
    }
    with pytest.raises(InvalidInput) as raised:
        check_params({"loras": [{"scale": 1}, {"scale": "big"}]}, schema)
    assert raised.value.field == "params.loras.1.scale"


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "maxProperties": 1},
        {"type": "object", "dependentRequired": {"fail_attempts": ["fail"]}},
    ],
)
def test_a_whole_params_error_is_invalid_input_on_params(schema: dict[str, Any]) -> None:
    """Errors about the params object as a whole have an empty path: they name ``params``."""
    with pytest.raises(InvalidInput) as raised:
        check_params({"fail_attempts": 1, "latency_ms": 2}, schema)
    assert raised.value.field == "params"
