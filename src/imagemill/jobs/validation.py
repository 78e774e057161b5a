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
from imagemill.domain import ModelSpec, Request, Size, Submission, TaskKind
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


def resolve(submission: Submission, spec: ModelSpec, field: str = "model") -> Request:
    """The request for one model, checked against its spec."""
    if not spec.available:
        raise InvalidInput(
            f"model {spec.id!r} is unavailable: {spec.unavailable_reason}", field=field
        )
    if submission.kind not in spec.kinds:
        kinds = ", ".join(spec.kinds)
        raise InvalidInput(
            f"model {spec.id!r} does not do {submission.kind!r} (it does: {kinds})", "kind"
        )
    if submission.kind is TaskKind.IMAGE and not submission.prompt.strip():
        raise InvalidInput("a prompt is required", field="prompt")
    if submission.kind in NEEDS_INPUT and not submission.input_assets:
        raise InvalidInput(
            f"{submission.kind} needs at least one input image", field="input_assets"
        )
    if submission.n > spec.max_n:
        raise InvalidInput(f"model {spec.id!r} makes at most {spec.max_n} images per request", "n")
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
        metadata=submission.metadata,
    )


def _size(submission: Submission, spec: ModelSpec) -> Size:
    field = "size"
    if submission.size is not None:
        size = Size.parse(submission.size)
    elif submission.aspect_ratio is not None:
        size, field = Size.from_aspect_ratio(submission.aspect_ratio), "aspect_ratio"
    else:
        return Size.parse(spec.sizes.default)
    bounds = spec.sizes
    if not all(bounds.min_side <= side <= bounds.max_side for side in (size.width, size.height)):
        raise InvalidInput(
            f"model {spec.id!r} accepts sides from {bounds.min_side} to {bounds.max_side} pixels; "
            f"{size} is out of range",
            field=field,
        )
    return size


def check_params(params: dict[str, Any], schema: dict[str, Any]) -> None:
    """Validate ``params`` against a model's JSON Schema; the error names ``params.<key>``."""
    error = best_match(Draft202012Validator(schema).iter_errors(params))
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
