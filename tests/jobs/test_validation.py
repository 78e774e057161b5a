"""Submission → request: presets, model checks, sizes, params against the schema, fallback
models, cache keys."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from imagemill.config import Settings
from imagemill.db.accounts import Preset
from imagemill.domain import (
    MAX_PROMPT_CHARS,
    Asset,
    FallbackModel,
    Request,
    Size,
    Submission,
    TaskKind,
)
from imagemill.errors import InvalidInput
from imagemill.jobs.validation import (
    Inputs,
    cache_key,
    check_limits,
    expand_preset,
    resolve,
    resolve_fallback,
    tokens_at_least,
)
from imagemill.providers.gemini import Gemini
from imagemill.providers.local import LocalModels
from imagemill.providers.local import _diffusers_spec as local_diffusers_spec
from imagemill.providers.openai_images import OpenAIImages
from imagemill.providers.placeholder import PlaceholderProvider
from imagemill.providers.recraft import Recraft
from imagemill.providers.replicate import Replicate
from imagemill.specs import ModelSpec, SizeRange

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
    ],
)
def test_a_size_out_of_the_models_bounds_is_rejected(
    spec: ModelSpec, fields: dict[str, str], field: str
) -> None:
    bounded = spec.model_copy(update={"sizes": SizeRange(min_side=32, max_side=2048)})
    with pytest.raises(InvalidInput) as raised:
        resolve(Submission(model="placeholder", prompt="x", **fields), bounded)
    assert raised.value.field == field


@pytest.mark.parametrize(("ratio", "size"), [("16:1", "2048x128"), ("1:16", "128x2048")])
def test_an_aspect_ratio_is_made_in_the_models_bounds(
    spec: ModelSpec, ratio: str, size: str
) -> None:
    """The shape is asked for; the area (about a megapixel: 4096x256) is imagemill's."""
    bounded = spec.model_copy(update={"sizes": SizeRange(min_side=32, max_side=2048)})
    request = resolve(Submission(model="placeholder", prompt="x", aspect_ratio=ratio), bounded)
    assert request.size == size


def test_sizes_at_the_bounds_are_accepted(spec: ModelSpec) -> None:
    assert (
        resolve(Submission(model="placeholder", prompt="x", size="16x4096"), spec).size == "16x4096"
    )


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


# -- every model's own limits, checked at submit ---------------------------------------------


def _every_model() -> list[ModelSpec]:
    """Every built-in model as it is when its provider is set up (keys given)."""
    settings = Settings(
        openai_api_key="sk-x", gemini_api_key="g", replicate_api_token="r8", recraft_api_key="rc"
    )
    specs = [
        *PlaceholderProvider().models(),
        *OpenAIImages(settings).models(),
        *Gemini(settings).models(),
        *Recraft(settings).models(),
        *Replicate(settings).models(),
        *LocalModels(settings).models(),
        local_diffusers_spec("tiny-sd"),
    ]
    return [spec.model_copy(update={"available": True}) for spec in specs]


MODELS = {spec.id: spec for spec in _every_model()}


def _asset(
    asset_id: str = "ast_1",
    width: int = 512,
    height: int = 512,
    content_type: str = "image/png",
    byte_size: int = 1000,
) -> Asset:
    return Asset(
        asset_id, "own_1", "0" * 64, content_type, width, height, byte_size, "k", None, NOW
    )


def _submission_for(spec: ModelSpec, **fields: Any) -> Submission:
    kind = spec.kinds[0]
    base: dict[str, Any] = {"kind": kind, "model": spec.id, "prompt": "a red fox"}
    if kind is not TaskKind.IMAGE:
        base["input_assets"] = ["ast_1"]
    return Submission(**{**base, **fields})


def _refused(spec: ModelSpec, submission: Submission, inputs: Inputs, **kw: Any) -> InvalidInput:
    with pytest.raises(InvalidInput) as refused:
        check_limits(submission, spec, inputs, **kw)
    return refused.value


def _inputs_of(submission: Submission, **asset: Any) -> Inputs:
    return Inputs(tuple(_asset(i, **asset) for i in submission.input_assets))


def _states_a_prompt_limit(spec: ModelSpec) -> bool:
    limits = spec.limits
    return any(
        limit is not None
        for limit in (limits.max_prompt_chars, limits.max_prompt_bytes, limits.max_prompt_tokens)
    )


PROMPT_LIMITED = {k: spec for k, spec in MODELS.items() if _states_a_prompt_limit(spec)}


def test_the_models_without_a_prompt_limit_are_those_whose_providers_document_none() -> None:
    """A new model, or a limit found in a provider's reference, shows up here."""
    assert set(MODELS) - set(PROMPT_LIMITED) == {
        "placeholder",
        "gemini/gemini-2.5-flash-image",  # 32,768 tokens: more than 32,000 characters make
        "replicate/black-forest-labs/flux-1.1-pro",
        "replicate/black-forest-labs/flux-schnell",
        "replicate/ideogram-ai/ideogram-v2",
        "replicate/bytedance/seedream-3",
        "replicate/black-forest-labs/flux-kontext-pro",
        "replicate/nightmareai/real-esrgan",
        "local/realesrgan-x4",
        "local/realesrgan-x4-anime",
        "local/realesrgan-x4-fast",
        "local/realesrgan-x3",
        "local/realesrgan-x2",
        "local/motion",
        "local/tiny-sd",  # the tokenizer cuts a long prompt; nothing is refused
    }


@pytest.mark.parametrize("spec", PROMPT_LIMITED.values(), ids=PROMPT_LIMITED.keys())
def test_a_prompt_over_the_models_limit_is_refused_naming_prompt(spec: ModelSpec) -> None:
    limits = spec.limits
    if limits.max_prompt_chars is not None:
        too_long = "x" * (limits.max_prompt_chars + 1)
    elif limits.max_prompt_bytes is not None:  # counted in bytes: few characters, many bytes
        too_long = "é" * (limits.max_prompt_bytes // 2 + 1)
        assert len(too_long) <= limits.max_prompt_bytes
    else:
        too_long = "word " * ((limits.max_prompt_tokens or 0) + 1)
    if len(too_long) > MAX_PROMPT_CHARS:  # past imagemill's own limit: refused even sooner
        with pytest.raises(ValidationError) as invalid:
            _submission_for(spec, prompt=too_long)
        assert invalid.value.errors()[0]["loc"] == ("prompt",)
        return
    submission = _submission_for(spec, prompt=too_long)
    error = _refused(spec, submission, _inputs_of(submission))
    assert error.field == "prompt"
    assert spec.id in error.message


@pytest.mark.parametrize("spec", MODELS.values(), ids=MODELS.keys())
def test_input_images_are_checked_against_the_models_rules(spec: ModelSpec) -> None:
    limits, kind = spec.limits, spec.kinds[0]
    if kind is TaskKind.IMAGE:  # input images are for edit, upscale and video
        submission = _submission_for(spec, input_assets=["ast_1"])
        assert _refused(spec, submission, _inputs_of(submission)).field == "input_assets"
        return
    many = [f"ast_{i}" for i in range(limits.max_inputs + 1)]
    submission = _submission_for(spec, input_assets=many)
    assert _refused(spec, submission, _inputs_of(submission)).field == "input_assets"
    one = _submission_for(spec)
    check_limits(one, spec, _inputs_of(one))  # a plain 512x512 PNG (or JPEG) is fine
    cases: list[dict[str, Any]] = []
    if "image/gif" not in limits.input_types:
        cases.append({"content_type": "image/gif"})
    if limits.max_input_bytes is not None:
        cases.append({"byte_size": limits.max_input_bytes + 1})
    if limits.max_input_pixels is not None:
        side = int(limits.max_input_pixels**0.5) + 1
        cases.append({"width": side, "height": side})
    if limits.max_input_side is not None:
        cases.append({"width": limits.max_input_side + 1, "height": 64})
    if limits.min_input_side is not None:
        cases.append({"width": limits.min_input_side - 1, "height": 512})
    if limits.input_aspect is not None:
        cases.append({"width": 2000, "height": 400})
    for case in cases:
        asset = {"content_type": limits.input_types[0], **case}
        error = _refused(spec, one, _inputs_of(one, **asset))
        assert error.field == "input_assets.0", (spec.id, case, error.message)


@pytest.mark.parametrize("spec", MODELS.values(), ids=MODELS.keys())
def test_a_mask_only_where_the_model_takes_one(spec: ModelSpec) -> None:
    kind = spec.kinds[1] if TaskKind.EDIT in spec.kinds[1:] else spec.kinds[0]
    base = {"kind": kind, "input_assets": [] if kind is TaskKind.IMAGE else ["ast_1"]}
    submission = _submission_for(spec, mask="ast_mask", **base)
    inputs = Inputs(_inputs_of(submission).images, _asset("ast_mask"))
    if kind is TaskKind.EDIT and spec.limits.mask:
        check_limits(submission, spec, inputs)
    else:
        assert _refused(spec, submission, inputs).field == "mask"


def test_a_mask_of_another_shape_is_refused_and_of_the_same_shape_accepted() -> None:
    spec = MODELS["openai/gpt-image-1"]
    submission = _submission_for(spec, kind="edit", input_assets=["ast_1"], mask="ast_mask")
    image = _asset("ast_1", 256, 256)
    same_shape = Inputs((image,), _asset("ast_mask", 128, 128))
    check_limits(submission, spec, same_shape)  # resized to the image when it runs
    other_shape = Inputs((image,), _asset("ast_mask", 128, 64))
    error = _refused(spec, submission, other_shape)
    assert error.field == "mask" and "256x256" in error.message


@pytest.mark.parametrize(
    ("model", "params", "factor"),
    [("local/realesrgan-x2", {}, 2), ("replicate/nightmareai/real-esrgan", {"scale": 2}, 2)],
)
def test_an_upscale_past_the_servers_pixel_limit_is_refused_at_submit(
    model: str, params: dict[str, Any], factor: int
) -> None:
    """300x300 x2 makes 360,000 pixels: over a limit of 100,000, refused before it runs."""
    spec = MODELS[model].model_copy(update={"params_schema": {"type": "object"}})
    submission = _submission_for(spec, params=params)
    inputs = _inputs_of(submission, width=300, height=300)
    error = _refused(spec, submission, inputs, max_pixels=100_000)
    assert error.field == "input_assets.0"
    assert "600x600" in error.message and "100,000" in error.message
    check_limits(submission, spec, inputs, max_pixels=360_000)


@pytest.mark.parametrize(
    ("model", "params"),
    [("local/realesrgan-x2", {}), ("replicate/nightmareai/real-esrgan", {"scale": 2})],
)
def test_an_upscale_records_the_size_it_makes_and_takes_no_other(
    model: str, params: dict[str, Any]
) -> None:
    """An upscale of 200x100 with ``size: 64x64`` made 400x200 and recorded 64x64; with no
    size it recorded 1024x1024. The recorded request must be one that can be sent again."""
    spec = MODELS[model]
    submission = _submission_for(spec, params=params)
    inputs = _inputs_of(submission, width=200, height=100)

    request = resolve(submission, spec, inputs=inputs, max_pixels=10_000_000)
    assert request.size == "400x200"
    again = Submission(**request.model_dump(include=set(Submission.model_fields)))
    assert resolve(again, spec, inputs=inputs, max_pixels=10_000_000).size == "400x200"

    for field, value in (("size", "64x64"), ("aspect_ratio", "16:9")):
        with pytest.raises(InvalidInput) as refused:
            resolve(submission.model_copy(update={field: value}), spec, inputs=inputs)
        assert refused.value.field == field
        assert "upscale" in refused.value.message


def test_a_presets_size_does_not_apply_to_an_upscale() -> None:
    spec = MODELS["local/realesrgan-x2"]
    submission = _submission_for(spec, preset="house style")
    expanded = expand_preset(
        submission.model_copy(update={"model": None}),
        _preset(model=spec.id, params={}, negative_prompt=None),
    )
    assert expanded.size is None
    inputs = _inputs_of(submission, width=200, height=100)
    assert resolve(expanded, spec, inputs=inputs).size == "400x200"


def test_size_and_aspect_ratio_together_are_refused(spec: ModelSpec) -> None:
    """Both were accepted and the size silently won."""
    submission = Submission(model="placeholder", prompt="x", size="64x64", aspect_ratio="1:1")
    with pytest.raises(InvalidInput) as refused:
        resolve(submission, spec)
    assert refused.value.field == "aspect_ratio"


@pytest.mark.parametrize(
    ("prompt", "at_least"),
    [
        ("a red fox in the snow", 6),
        ("photorealistic", 1),
        ("x" * 20_000, 1250),  # one long "word": one token per 16 letters at the least
        ("\u5b57" * 5000, 1250),  # Chinese without spaces: one per 4 characters
        ("\u8d85\u9ad8\u6e05\u7684\u7ea2\u8272\u72d0\u72f8", 2),
    ],
)
def test_tokens_are_counted_as_a_floor(prompt: str, at_least: int) -> None:
    assert tokens_at_least(prompt) == at_least


@pytest.mark.parametrize("prompt", ["x" * 20_000, "\u5b57" * 5000, "word " * 481])
def test_imagens_token_limit_holds_for_prompts_without_spaces(prompt: str) -> None:
    """480 tokens were counted as 480 words: one 20,000-letter word passed."""
    spec = MODELS["gemini/imagen-3.0-generate-002"]
    submission = _submission_for(spec, prompt=prompt)
    error = _refused(spec, submission, Inputs())
    assert error.field == "prompt" and "480 tokens" in error.message
    check_limits(_submission_for(spec, prompt="a red fox " * 100), spec, Inputs())


@pytest.mark.parametrize(
    ("kind", "param"), [(TaskKind.EDIT, "moderation"), (TaskKind.IMAGE, "input_fidelity")]
)
def test_a_param_for_another_kind_is_refused_not_dropped(kind: TaskKind, param: str) -> None:
    """gpt-image-1's edits take no ``moderation`` (its generations no ``input_fidelity``):
    the provider left it out, so the request was made without what it asked."""
    spec = MODELS["openai/gpt-image-1"]
    value = {"moderation": "low", "input_fidelity": "high"}[param]
    submission = _submission_for(spec, kind=kind, params={param: value})
    if kind is TaskKind.EDIT:
        submission = submission.model_copy(update={"input_assets": ["ast_1"]})
    error = _refused(spec, submission, _inputs_of(submission))
    assert error.field == f"params.{param}"
    assert "only" in error.message


def test_a_model_that_cannot_do_a_kind_says_so_in_words() -> None:
    submission = Submission(kind="edit", model="placeholder", prompt="x", input_assets=["a"])
    with pytest.raises(InvalidInput) as refused:
        resolve(submission, MODELS["placeholder"])
    assert refused.value.field == "kind"
    assert "does not do 'edit'" in refused.value.message
    assert "TaskKind" not in refused.value.message


def test_replicates_upscale_factor_defaults_to_its_schemas() -> None:
    spec = MODELS["replicate/nightmareai/real-esrgan"].model_copy(
        update={"params_schema": {"properties": {"scale": {"type": "number", "default": 4}}}}
    )
    submission = _submission_for(spec)
    error = _refused(
        spec, submission, _inputs_of(submission, width=300, height=300), max_pixels=1_000_000
    )
    assert "1200x1200" in error.message


def test_a_size_past_the_servers_pixel_limit_is_refused(spec: ModelSpec) -> None:
    submission = Submission(model="placeholder", prompt="x", size="4096x4096")
    with pytest.raises(InvalidInput) as refused:
        resolve(submission, spec, max_pixels=10_000_000)
    assert refused.value.field == "size"
    resolve(submission, spec, max_pixels=4096 * 4096)


def test_a_fallback_that_cannot_take_the_prompt_is_refused_on_its_field() -> None:
    submission = Submission(model="placeholder", prompt="x" * 4500)
    with pytest.raises(InvalidInput) as refused:
        resolve_fallback(submission, Size(1024, 1024), MODELS["openai/dall-e-3"], {}, "fallback.0")
    assert refused.value.field == "fallback.0"


@pytest.mark.parametrize(
    "model",
    ["openai/dall-e-3", "openai/gpt-image-1", "gemini/imagen-3.0-generate-002", "local/motion"],
)
def test_a_negative_prompt_is_refused_where_the_model_takes_none(model: str) -> None:
    """dall-e-3 stored "no text" as the negative prompt and made the image with text: the
    provider has no such input, so it was dropped without a word."""
    spec = MODELS[model]
    submission = _submission_for(spec, negative_prompt="text")
    error = _refused(spec, submission, _inputs_of(submission))
    assert error.field == "negative_prompt"
    assert "takes no negative prompt" in error.message
    check_limits(
        submission.model_copy(update={"negative_prompt": " "}), spec, _inputs_of(submission)
    )


@pytest.mark.parametrize("model", ["placeholder", "recraft/recraftv3", "local/tiny-sd"])
def test_a_negative_prompt_is_taken_where_the_model_takes_one(model: str) -> None:
    spec = MODELS[model]
    submission = _submission_for(spec, negative_prompt="text")
    check_limits(submission, spec, _inputs_of(submission))


@pytest.mark.parametrize(
    ("width", "height", "made"),
    [(1, 1, "2x2"), (5000, 20, "10000x40"), (7, 400, "14x800")],
)
def test_an_upscale_must_make_sides_imagemill_can_store(width: int, height: int, made: str) -> None:
    spec = MODELS["local/realesrgan-x2"]
    submission = _submission_for(spec)
    inputs = _inputs_of(submission, width=width, height=height)
    with pytest.raises(InvalidInput) as refused:
        resolve(submission, spec, inputs=inputs, max_pixels=10**9)
    assert refused.value.field == "input_assets.0"
    assert made in refused.value.message and "16 to 8192" in refused.value.message


def test_an_upscales_fallback_must_make_the_same_size() -> None:
    """A x2 upscale falling back to a x4 upscaler made an image twice the size recorded."""
    spec = MODELS["local/realesrgan-x2"]
    submission = _submission_for(spec)
    inputs = _inputs_of(submission, width=200, height=100)
    request = resolve(submission, spec, inputs=inputs)
    x4 = MODELS["local/realesrgan-x4"]
    with pytest.raises(InvalidInput) as refused:
        resolve_fallback(submission, request.dimensions, x4, {}, "fallback.0", inputs=inputs)
    assert refused.value.field == "fallback.0"
    assert "800x400" in refused.value.message and "400x200" in refused.value.message
    same = MODELS["replicate/nightmareai/real-esrgan"]
    resolve_fallback(
        submission, request.dimensions, same, {"scale": 2}, "fallback.0", inputs=inputs
    )
