"""Turning a submission into runnable requests, rejecting bad input before any work.

Everything a provider would refuse is caught here, at submit, with the field named:
the model and kind, the size against the model's sizes, ``n``, and ``params``
against the model's JSON Schema.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from imagemill.db.accounts import Preset
from imagemill.domain import FallbackModel, ModelSpec, Request, Size, Submission, TaskKind
from imagemill.errors import InvalidInput

PROMPT_PLACEHOLDER = "{prompt}"
NEEDS_INPUT = (TaskKind.EDIT, TaskKind.UPSCALE, TaskKind.VIDEO)


def expand_preset(submission: Submission, preset: Preset | None) -> Submission:
    """Apply a preset's template, negative prompt, model, size and default params."""
    if preset is None:
        return submission
    update: dict[str, Any] = {
        "prompt": preset.prompt_template.replace(PROMPT_PLACEHOLDER, submission.prompt)
        if PROMPT_PLACEHOLDER in preset.prompt_template
        else f"{submission.prompt} {preset.prompt_template}".strip(),
        "params": {**preset.params, **submission.params},
    }
    if submission.negative_prompt is None and preset.negative_prompt:
        update["negative_prompt"] = preset.negative_prompt
    if submission.model is None and submission.models is None:
        if not preset.model:
            raise InvalidInput(
                f"preset {preset.name!r} names no model; give 'model'", field="model"
            )
        update["model"] = preset.model
    if submission.size is None and submission.aspect_ratio is None and preset.size:
        update["size"] = preset.size
    return submission.model_copy(update=update)


def resolve(
    submission: Submission,
    spec: ModelSpec,
    field: str = "model",
    fallback: Sequence[FallbackModel] = (),
) -> Request:
    """The request for one model, checked against its spec (``fallback``: checked already)."""
    _check_model(submission, spec, field)
    size = _size(submission, spec)
    check_params(submission.params, spec.params_schema)
    return Request(
        kind=submission.kind,
        model=spec.id,
        prompt=submission.prompt,
        negative_prompt=submission.negative_prompt,
        n=submission.n,
        size=str(size),
        seed=submission.seed,
        params=submission.params,
        input_assets=submission.input_assets,
        mask=submission.mask,
        cache=submission.cache,
        fallback=list(fallback),
        deadline_seconds=submission.deadline_seconds,
        webhook_url=submission.webhook_url,
        webhook_events=submission.webhook_events,
        metadata=submission.metadata,
    )


def resolve_fallback(
    submission: Submission, size: Size, spec: ModelSpec, params: dict[str, Any], field: str
) -> FallbackModel:
    """A fallback model, checked like the main one: it must be able to run this request."""
    _check_model(submission, spec, field)
    _check_bounds(size, spec, field)
    try:
        check_params(params, spec.params_schema)
    except InvalidInput as exc:
        raise InvalidInput(exc.message, field=f"{field}.{exc.field}") from exc
    return FallbackModel(model=spec.id, params=params)


def _check_model(submission: Submission, spec: ModelSpec, field: str) -> None:
    """The model can run this submission; errors name ``field`` when it is a fallback's."""
    main = not field.startswith("fallback")
    if not spec.available:
        raise InvalidInput(
            f"model {spec.id!r} is unavailable: {spec.unavailable_reason}", field=field
        )
    if submission.kind not in spec.kinds:
        kinds = ", ".join(spec.kinds)
        raise InvalidInput(
            f"model {spec.id!r} does not do {submission.kind!r} (it does: {kinds})",
            "kind" if main else field,
        )
    if submission.kind is TaskKind.IMAGE and not submission.prompt.strip():
        raise InvalidInput("a prompt is required", field="prompt")
    if submission.kind in NEEDS_INPUT and not submission.input_assets:
        raise InvalidInput(
            f"{submission.kind} needs at least one input image", field="input_assets"
        )
    if submission.n > spec.max_n:
        raise InvalidInput(
            f"model {spec.id!r} makes at most {spec.max_n} images per request",
            "n" if main else field,
        )


def _size(submission: Submission, spec: ModelSpec) -> Size:
    field = "size"
    if submission.size is not None:
        size = Size.parse(submission.size)
    elif submission.aspect_ratio is not None:
        size, field = Size.from_aspect_ratio(submission.aspect_ratio), "aspect_ratio"
    else:
        return Size.parse(spec.sizes.default)
    return _check_bounds(size, spec, field)


def _check_bounds(size: Size, spec: ModelSpec, field: str) -> Size:
    bounds = spec.sizes
    if not all(bounds.min_side <= side <= bounds.max_side for side in (size.width, size.height)):
        raise InvalidInput(
            f"model {spec.id!r} accepts sides from {bounds.min_side} to {bounds.max_side} pixels; "
            f"{size} is out of range",
            field=field,
        )
    if size.width % bounds.multiple_of or size.height % bounds.multiple_of:
        raise InvalidInput(
            f"model {spec.id!r} needs sides that are multiples of {bounds.multiple_of}; "
            f"{size} is not",
            field=field,
        )
    return size


def check_params(params: dict[str, Any], schema: dict[str, Any]) -> None:
    """Validate ``params`` against a model's JSON Schema; the error names ``params.<key>``."""
    error = best_match(_validator(schema).iter_errors(params))
    if error is None:
        return
    path = [str(p) for p in error.absolute_path]
    if not path and error.validator == "additionalProperties":
        allowed = set(schema.get("properties", {}))
        path = [next((k for k in params if k not in allowed), "")]
        message = (
            f"unknown param {path[0]!r}; this model takes: {', '.join(sorted(allowed)) or 'none'}"
        )
    elif not path and error.validator == "required":
        path = [str(error.message).split("'")[1]]
        message = error.message
    else:
        message = error.message
    raise InvalidInput(message, field=".".join(["params", *path]) if path and path[0] else "params")


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


def cache_key(request: Request, input_hashes: Sequence[str]) -> str:
    """sha256 of the canonical request: everything that changes the pixels, nothing else."""
    canonical = {
        "model": request.model,
        "kind": request.kind.value,
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt,
        "size": request.size,
        "n": request.n,
        "seed": request.seed,
        "params": request.params,
        "inputs": list(input_hashes),
    }
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()
