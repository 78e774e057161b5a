"""Submission → request: presets, model checks, sizes, params against the schema, fallback
models, cache keys."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from imagemill.db.accounts import Preset
from imagemill.domain import (
    FallbackModel,
    ModelSpec,
    Request,
    Size,
    SizeRange,
    Submission,
    TaskKind,
)
from imagemill.errors import InvalidInput
from imagemill.jobs.validation import (
    cache_key,
    check_params,
    expand_preset,
    resolve,
    resolve_fallback,
)
from imagemill.providers.placeholder import PlaceholderProvider

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def spec() -> ModelSpec:
    [placeholder] = PlaceholderProvider().models()
    return placeholder


def _preset(**fields: Any) -> Preset:
    values: dict[str, Any] = {
        "id": "pre_1",
        "owner_id": "own_1",
        "name": "house style",
        "description": "",
        "model": "placeholder",
        "prompt_template": "{prompt}, watercolour",
        "negative_prompt": "text",
        "size": "640x480",
        "params": {"latency_ms": 5, "fail_attempts": 1},
        "created_at": NOW,
        "updated_at": NOW,
    }
    return Preset(**{**values, **fields})


# -- presets --------------------------------------------------------------------------------


def test_no_preset_leaves_the_submission_alone() -> None:
    submission = Submission(model="placeholder", prompt="x")
    assert expand_preset(submission, None) is submission


def test_a_preset_fills_what_the_submission_leaves_out() -> None:
    expanded = expand_preset(Submission(preset="house style", prompt="a fox"), _preset())

    assert expanded.model == "placeholder"
    assert expanded.prompt == "a fox, watercolour"
    assert expanded.negative_prompt == "text"
    assert expanded.size == "640x480"
    assert expanded.params == {"latency_ms": 5, "fail_attempts": 1}


def test_the_submission_wins_over_the_preset() -> None:
    submission = Submission(
        preset="house style",
        model="other/model",
        prompt="a fox",
        negative_prompt="blur",
        aspect_ratio="16:9",
        params={"latency_ms": 9},
    )
    expanded = expand_preset(submission, _preset())

    assert expanded.model == "other/model"
    assert expanded.negative_prompt == "blur"
    assert expanded.size is None and expanded.aspect_ratio == "16:9"
    assert expanded.params == {"latency_ms": 9, "fail_attempts": 1}


def test_a_template_without_the_placeholder_is_appended() -> None:
    expanded = expand_preset(
        Submission(preset="p", prompt="a fox"), _preset(prompt_template="35mm")
    )
    assert expanded.prompt == "a fox 35mm"


def test_a_preset_without_a_model_needs_one_in_the_submission() -> None:
    with pytest.raises(InvalidInput) as raised:
        expand_preset(Submission(preset="p", prompt="a fox"), _preset(model=None))
    assert raised.value.field == "model"


# -- resolve --------------------------------------------------------------------------------


def test_resolve_makes_the_request_with_the_models_default_size(spec: ModelSpec) -> None:
    request = resolve(Submission(model="placeholder", prompt="a fox", seed=3, n=2), spec)
    assert request == Request(
        model="placeholder", prompt="a fox", seed=3, n=2, size=spec.sizes.default
    )


def test_an_aspect_ratio_becomes_a_size(spec: ModelSpec) -> None:
    request = resolve(Submission(model="placeholder", prompt="a fox", aspect_ratio="16:9"), spec)
    assert request.size == "1368x768"


def test_a_kind_the_model_does_not_do_is_rejected(spec: ModelSpec) -> None:
    with pytest.raises(InvalidInput) as raised:
        resolve(Submission(model="placeholder", kind=TaskKind.VIDEO, input_assets=["a"]), spec)
    assert raised.value.field == "kind"


def test_an_unavailable_model_is_rejected_on_the_field_given(spec: ModelSpec) -> None:
    down = spec.model_copy(update={"available": False, "unavailable_reason": "no API key"})
    with pytest.raises(InvalidInput) as raised:
        resolve(Submission(model="placeholder", prompt="x"), down, "models.2")
    assert raised.value.field == "models.2"
    assert "no API key" in raised.value.message


@pytest.mark.parametrize("prompt", ["", "   \n"])
def test_an_image_needs_a_prompt(spec: ModelSpec, prompt: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        resolve(Submission(model="placeholder", prompt=prompt), spec)
    assert raised.value.field == "prompt"


def test_an_edit_needs_an_input_image(spec: ModelSpec) -> None:
    editor = spec.model_copy(update={"kinds": [TaskKind.EDIT]})
    with pytest.raises(InvalidInput) as raised:
        resolve(Submission(model="placeholder", kind=TaskKind.EDIT, prompt="x"), editor)
    assert raised.value.field == "input_assets"


def test_n_above_the_models_maximum_is_rejected(spec: ModelSpec) -> None:
    single = spec.model_copy(update={"max_n": 1})
    resolve(Submission(model="placeholder", prompt="x", n=1), single)
    with pytest.raises(InvalidInput) as raised:
        resolve(Submission(model="placeholder", prompt="x", n=2), single)
    assert raised.value.field == "n"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"size": "2056x512"}, "size"),
        ({"size": "512x2056"}, "size"),
        ({"size": "24x24"}, "size"),
        ({"aspect_ratio": "16:1"}, "aspect_ratio"),  # about a megapixel: 4096x256
    ],
)
def test_a_size_out_of_the_models_bounds_is_rejected(
    spec: ModelSpec, fields: dict[str, str], field: str
) -> None:
    bounded = spec.model_copy(update={"sizes": SizeRange(min_side=32, max_side=2048)})
    with pytest.raises(InvalidInput) as raised:
        resolve(Submission(model="placeholder", prompt="x", **fields), bounded)
    assert raised.value.field == field


def test_sizes_at_the_bounds_are_accepted(spec: ModelSpec) -> None:
    assert (
        resolve(Submission(model="placeholder", prompt="x", size="16x4096"), spec).size == "16x4096"
    )


# -- params ---------------------------------------------------------------------------------


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


# -- fallback models ------------------------------------------------------------------------


def test_a_fallback_is_resolved_to_its_model_id_with_its_own_params(spec: ModelSpec) -> None:
    aliased = spec.model_copy(update={"aliases": ["ph"]})
    submission = Submission(model="scripted/model", prompt="x", params={"steps": 30})

    fallback = resolve_fallback(submission, Size(64, 64), aliased, {"latency_ms": 5}, "fallback.0")

    assert fallback == FallbackModel(model="placeholder", params={"latency_ms": 5})


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"latency_ms": "slow"}, "fallback.1.params.latency_ms"),
        ({"foo": 1}, "fallback.1.params.foo"),
        ({"fail": "sometimes"}, "fallback.1.params.fail"),
    ],
)
def test_a_fallbacks_params_are_checked_against_its_own_schema(
    spec: ModelSpec, params: dict[str, Any], field: str
) -> None:
    submission = Submission(model="scripted/model", prompt="x", params={"foo": 1})
    with pytest.raises(InvalidInput) as raised:
        resolve_fallback(submission, Size(64, 64), spec, params, "fallback.1")
    assert raised.value.field == field


def test_a_fallback_must_accept_the_requests_size(spec: ModelSpec) -> None:
    bounded = spec.model_copy(update={"sizes": SizeRange(min_side=256, max_side=1024)})
    submission = Submission(model="scripted/model", prompt="x")

    resolve_fallback(submission, Size(256, 1024), bounded, {}, "fallback.0")
    with pytest.raises(InvalidInput) as raised:
        resolve_fallback(submission, Size(2048, 1024), bounded, {}, "fallback.0")
    assert raised.value.field == "fallback.0"


def test_a_fallback_must_do_the_requests_kind(spec: ModelSpec) -> None:
    submission = Submission(model="scripted/model", kind=TaskKind.EDIT, input_assets=["a"])
    with pytest.raises(InvalidInput) as raised:
        resolve_fallback(submission, Size(64, 64), spec, {}, "fallback.0")
    assert raised.value.field == "fallback.0"
    assert "'placeholder'" in raised.value.message and "'edit'" in raised.value.message


def test_a_fallback_making_fewer_images_is_rejected_on_its_field(spec: ModelSpec) -> None:
    few = spec.model_copy(update={"max_n": 1})
    with pytest.raises(InvalidInput) as raised:
        resolve_fallback(
            Submission(model="m", prompt="x", n=2), Size(64, 64), few, {}, "fallback.1"
        )
    assert raised.value.field == "fallback.1"


def test_an_unavailable_fallback_is_rejected_on_its_field(spec: ModelSpec) -> None:
    down = spec.model_copy(update={"available": False, "unavailable_reason": "no API key"})
    with pytest.raises(InvalidInput) as raised:
        resolve_fallback(Submission(model="m", prompt="x"), Size(64, 64), down, {}, "fallback.2")
    assert raised.value.field == "fallback.2"
    assert "no API key" in raised.value.message


# -- cache key ------------------------------------------------------------------------------


def _request(**fields: Any) -> Request:
    values: dict[str, Any] = {
        "model": "placeholder",
        "prompt": "a fox",
        "size": "64x64",
        "seed": 1,
        "params": {"latency_ms": 1, "fail_attempts": 2},
    }
    return Request(**{**values, **fields})


def test_the_cache_key_ignores_dict_order_and_metadata() -> None:
    key = cache_key(_request(), ["abc"])
    assert len(key) == 64 and int(key, 16) >= 0
    assert cache_key(_request(params={"fail_attempts": 2, "latency_ms": 1}), ["abc"]) == key
    assert cache_key(_request(metadata={"ticket": 1}), ["abc"]) == key


@pytest.mark.parametrize(
    "change",
    [
        {"seed": 2},
        {"seed": None},
        {"params": {"latency_ms": 2, "fail_attempts": 2}},
        {"prompt": "a fox "},
        {"negative_prompt": "blur"},
        {"size": "64x65"},
        {"n": 2},
        {"model": "scripted/model"},
        {"kind": TaskKind.EDIT},
    ],
)
def test_the_cache_key_changes_with_anything_that_changes_pixels(change: dict[str, Any]) -> None:
    assert cache_key(_request(**change), ["abc"]) != cache_key(_request(), ["abc"])


def test_the_cache_key_depends_on_the_input_images() -> None:
    assert cache_key(_request(), ["abc"]) != cache_key(_request(), ["abd"])
    assert cache_key(_request(), ["a", "b"]) != cache_key(_request(), ["b", "a"])
    assert cache_key(_request(), []) != cache_key(_request(), ["abc"])
