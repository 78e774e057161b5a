"""Turning a submission into runnable requests, rejecting bad input before any work.

Everything a provider would refuse is caught here, at submit, with the field named:
the model and kind, the size against the model's sizes and the server's pixel limit,
``n``, the prompt's length, the input images (how many, their format, bytes, pixels,
sides and shape), the mask (only where a model takes one, and covering the image), what
an upscale would make, and ``params`` against the model's JSON Schema.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from imagemill.boundary import PARAMS_LIMITS, BoundaryError, escaped, has_words, quoted
from imagemill.db.accounts import Preset
from imagemill.domain import Asset, FallbackModel, Request, Size, Submission, TaskKind
from imagemill.errors import InvalidInput
from imagemill.fields import MAX_PROMPT_CHARS, MAX_SIDE, MIN_SIDE
from imagemill.jobs.params import check_params
from imagemill.providers.sizes import fit_within
from imagemill.specs import InputLimits, ModelSpec

PROMPT_PLACEHOLDER = "{prompt}"
TAKES_INPUT = [kind for kind in TaskKind if kind.rules.inputs != "none"]


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
                f"preset {quoted(preset.name)} names no model; give 'model'", field="model"
            )
        update["model"] = preset.model
    if (
        submission.size is None
        and submission.aspect_ratio is None
        and submission.kind is not TaskKind.UPSCALE  # which makes the size of its image
        and submission.kind.rules.sized
        and preset.size
    ):
        update["size"] = preset.size
    if len(update["prompt"]) > MAX_PROMPT_CHARS:
        raise InvalidInput(
            f"with preset {quoted(preset.name)} the prompt is "
            f"{len(update['prompt']):,} characters; the limit is {MAX_PROMPT_CHARS:,}",
            field="prompt",
        )
    try:
        PARAMS_LIMITS.check(update["params"])
    except BoundaryError as exc:
        raise InvalidInput(
            f"params merged with preset {quoted(preset.name)} {exc.message}",
            field=exc.field("params"),
        ) from exc
    return submission.model_copy(update=update)


def with_params(submission: Submission, params: dict[str, Any], field: str) -> Submission:
    """``submission`` for one model of a comparison: ``params`` (the model's own, at
    ``field``) added to the request's, winning over them."""
    if not params:
        return submission
    merged = {**submission.params, **params}
    try:
        PARAMS_LIMITS.check(merged)
    except BoundaryError as exc:
        raise InvalidInput(
            f"params with those of {field} {exc.message}", field=exc.field(f"{field}.params")
        ) from exc
    return submission.model_copy(update={"params": merged})


@dataclass(frozen=True, slots=True)
class Inputs:
    """The assets a submission names, found: its input images and its mask."""

    images: tuple[Asset, ...] = ()
    mask: Asset | None = None


def resolve(
    submission: Submission,
    spec: ModelSpec,
    field: str = "model",
    fallback: Sequence[FallbackModel] = (),
    inputs: Inputs = Inputs(),
    max_pixels: int | None = None,
) -> Request:
    """The request for one model, checked against its spec (``fallback``: checked already).

    ``max_pixels``: the most pixels this server makes or takes in one image
    (``IMAGEMILL_MAX_IMAGE_PIXELS``), so every output can be an input again. A model that
    is unavailable here (no credentials) is refused unless the submission names a
    fallback, which then runs in its place (each fallback must be available).
    """
    _check_model(submission, spec, field, covered=bool(submission.fallback))
    if submission.kind is TaskKind.UPSCALE:
        size = _upscaled_size(submission, spec, inputs)
    elif not submission.kind.rules.sized:
        _no_size(submission)
        size = None
    else:
        size = _size(submission, spec, max_pixels)
    check_limits(submission, spec, inputs, field, max_pixels)
    check_params(submission.params, spec.params_schema)
    return Request(
        kind=submission.kind,
        model=spec.id,
        prompt=submission.prompt,
        negative_prompt=submission.negative_prompt,
        n=submission.n,
        size=str(size) if size else None,
        seed=submission.seed,
        params=submission.params,
        input_assets=submission.input_assets,
        mask=submission.mask,
        cache=submission.cache,
        fallback=list(fallback),
        enhance=submission.enhance,
        deadline_seconds=submission.deadline_seconds,
        webhook_url=submission.webhook_url,
        webhook_events=submission.webhook_events,
        metadata=submission.metadata,
    )


def resolve_fallback(
    submission: Submission,
    size: Size | None,
    spec: ModelSpec,
    params: dict[str, Any],
    field: str,
    inputs: Inputs = Inputs(),
    max_pixels: int | None = None,
) -> FallbackModel:
    """A fallback model, checked like the main one: it must be able to run this request."""
    _check_model(submission, spec, field)
    if submission.kind is TaskKind.UPSCALE:  # the same size as the model's, or no fallback
        own = submission.model_copy(update={"params": params, "size": None})
        made = _upscaled_size(own, spec, inputs)
        if size is not None and made != size:
            raise InvalidInput(
                f"model {quoted(spec.id)} would make {made or 'another size'} of this image, "
                f"not the {size} the request makes; fall back to a model of the same scale",
                field=field,
            )
    elif size is not None and submission.kind.rules.sized:
        _check_bounds(size, spec, field)
    check_limits(submission.model_copy(update={"params": params}), spec, inputs, field, max_pixels)
    try:
        check_params(params, spec.params_schema)
    except InvalidInput as exc:
        raise InvalidInput(exc.message, field=f"{field}.{exc.field}") from exc
    return FallbackModel(model=spec.id, params=params)


def _check_model(
    submission: Submission, spec: ModelSpec, field: str, *, covered: bool = False
) -> None:
    """The model can run this submission; errors name ``field`` when it is a fallback's.
    ``covered``: a fallback runs if the model is unavailable, so that is no error."""
    main = not field.startswith("fallback")
    if not spec.available and not covered:
        hint = " (or name an available model in 'fallback')" if main else ""
        raise InvalidInput(
            f"model {quoted(spec.id)} is unavailable: {spec.unavailable_reason}{hint}",
            field=field,
        )
    if submission.kind not in spec.kinds:
        kinds = ", ".join(spec.kinds)
        raise InvalidInput(
            f"model {quoted(spec.id)} does not do {quoted(submission.kind)} (it does: {kinds})",
            "kind" if main else field,
        )
    rules = submission.kind.rules
    if rules.prompt == "required" and not has_words(submission.prompt):
        raise InvalidInput("a prompt is required", field="prompt")
    if rules.inputs == "required" and not submission.input_assets:
        raise InvalidInput(
            f"{submission.kind} needs at least one input image", field="input_assets"
        )
    if not has_words(submission.prompt) and not submission.input_assets:
        raise InvalidInput(
            f"{submission.kind} needs a prompt (the product text) or input images, or both",
            field="prompt",
        )
    if submission.n > spec.max_n:
        raise InvalidInput(
            f"model {quoted(spec.id)} makes "
            + ("one image" if spec.max_n == 1 else f"at most {spec.max_n} images")
            + " per request",
            "n" if main else field,
        )


def check_limits(
    submission: Submission,
    spec: ModelSpec,
    inputs: Inputs,
    field: str = "model",
    max_pixels: int | None = None,
) -> None:
    """The prompt, input images, mask and upscale output within what ``spec`` takes (and
    the server's pixel limit). Errors name the offending field, or ``field`` (the
    fallback) when the main model took it but this one does not."""
    main = not field.startswith("fallback")

    def refuse(message: str, where: str) -> InvalidInput:
        return InvalidInput(f"model {quoted(spec.id)} {message}", where if main else field)

    limits = spec.limits
    for name in ("prompt", "negative_prompt"):
        text = getattr(submission, name) or ""
        if limits.max_prompt_chars is not None and len(text) > limits.max_prompt_chars:
            raise refuse(
                f"takes at most {limits.max_prompt_chars:,} characters of {name}; "
                f"this one has {len(text):,}",
                name,
            )
    if not limits.negative_prompt and has_words(submission.negative_prompt or ""):
        raise refuse("takes no negative prompt", "negative_prompt")
    for name in submission.params:
        kinds = limits.param_kinds.get(name)
        if kinds is not None and submission.kind not in kinds:
            raise refuse(
                f"takes params.{name} for {' and '.join(kinds)} only, not {submission.kind}",
                f"params.{escaped(name)}",
            )
    prompt = submission.prompt
    if limits.max_prompt_bytes is not None and len(prompt.encode()) > limits.max_prompt_bytes:
        raise refuse(
            f"takes a prompt of at most {limits.max_prompt_bytes:,} bytes (UTF-8); this one "
            f"has {len(prompt.encode()):,}",
            "prompt",
        )
    if limits.max_prompt_tokens is not None:
        tokens = tokens_at_least(prompt)
        if tokens > limits.max_prompt_tokens:
            raise refuse(
                f"takes a prompt of at most {limits.max_prompt_tokens} tokens; this one has "
                f"{tokens:,} at least",
                "prompt",
            )
    if submission.kind.rules.inputs == "none":
        if submission.input_assets:
            raise refuse(
                f"does {submission.kind} from the prompt alone; input images are for "
                f"{', '.join(TAKES_INPUT)}",
                "input_assets",
            )
    elif len(submission.input_assets) > limits.max_inputs:
        raise refuse(
            f"takes at most {limits.max_inputs} input image(s); "
            f"{len(submission.input_assets)} were given",
            "input_assets",
        )
    for index, asset in enumerate(inputs.images):
        _check_input(asset, limits, functools.partial(refuse, where=f"input_assets.{index}"))
    total = sum(asset.byte_size for asset in inputs.images)
    if limits.max_total_input_bytes is not None and total > limits.max_total_input_bytes:
        raise refuse(
            f"takes at most {limits.max_total_input_bytes:,} bytes of input images in all; "
            f"these are {total:,}",
            "input_assets",
        )
    if submission.mask is not None:
        if submission.kind is not TaskKind.EDIT or not limits.mask:
            raise refuse("takes no mask", "mask")
        if inputs.mask is not None and inputs.images:
            _check_mask(inputs.mask, inputs.images[0], lambda message: refuse(message, "mask"))
    if submission.kind is TaskKind.UPSCALE and inputs.images and max_pixels is not None:
        _check_upscale(submission, spec, inputs.images[0], max_pixels, field if not main else None)


def _check_input(asset: Asset, limits: InputLimits, refuse: Callable[[str], InvalidInput]) -> None:
    if asset.content_type not in limits.input_types:
        kinds = ", ".join(t.removeprefix("image/").upper() for t in limits.input_types)
        raise refuse(f"takes {kinds} input images; this one is {asset.content_type}")
    if limits.max_input_bytes is not None and asset.byte_size > limits.max_input_bytes:
        raise refuse(
            f"takes input images of at most {limits.max_input_bytes:,} bytes; this one has "
            f"{asset.byte_size:,}"
        )
    width, height = asset.width or 0, asset.height or 0
    if limits.max_input_pixels is not None and width * height > limits.max_input_pixels:
        raise refuse(
            f"takes input images of at most {limits.max_input_pixels:,} pixels; this one is "
            f"{width}x{height} ({width * height:,})"
        )
    if limits.max_input_side is not None and max(width, height) > limits.max_input_side:
        raise refuse(
            f"takes input images up to {limits.max_input_side} pixels a side; this one is "
            f"{width}x{height}"
        )
    if limits.min_input_side is not None and min(width, height) < limits.min_input_side:
        raise refuse(
            f"takes input images at least {limits.min_input_side} pixels a side; this one is "
            f"{width}x{height}"
        )
    if limits.input_aspect is not None and height:
        narrowest, widest = limits.input_aspect
        if not narrowest <= width / height <= widest:
            raise refuse(
                f"takes input images from {_shape(narrowest)} to {_shape(widest)} in shape; "
                f"this one is {width}x{height}"
            )


MASK_SHAPE_TOLERANCE = 0.01  # a mask of the image's shape at another size is resized to it


def _check_mask(mask: Asset, image: Asset, refuse: Callable[[str], InvalidInput]) -> None:
    """A mask must cover the (first) input image: its size, or its shape to be resized."""
    if not (mask.width and mask.height and image.width and image.height):
        return
    if (mask.width, mask.height) == (image.width, image.height):
        return
    if abs(mask.width / mask.height / (image.width / image.height) - 1) > MASK_SHAPE_TOLERANCE:
        raise refuse(
            f"needs a mask of the image's size ({image.width}x{image.height}) or at least its "
            f"shape; this mask is {mask.width}x{mask.height}"
        )


# Scripts written without spaces, whose tokens are a character or a few: CJK ideographs
# (with extension A and the compatibility block), kana, and Hangul syllables.
_CJK = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
LETTERS_PER_TOKEN = 16  # the most a subword token spans of a word in a Latin-like script
CJK_PER_TOKEN = 4  # ... and of Chinese, Japanese or Korean


def tokens_at_least(text: str) -> int:
    """A floor on the tokens a subword tokenizer (SentencePiece, BPE) makes of ``text``:
    each word one at least, a long word one per 16 letters, and text without spaces in
    Chinese, Japanese or Korean one per 4 characters. A prompt over a model's token limit
    by this count is over it by any count."""
    total = 0
    for word in text.split():
        cjk = len(_CJK.findall(word))
        total += max(1, -(-(len(word) - cjk) // LETTERS_PER_TOKEN) + -(-cjk // CJK_PER_TOKEN))
    return total


def upscale_factor(spec: ModelSpec, params: dict[str, Any]) -> float | None:
    """How much ``spec`` enlarges an image with ``params``, if it upscales."""
    limits = spec.limits
    if limits.upscale_param is not None:
        default = spec.params_schema.get("properties", {}).get(limits.upscale_param, {})
        value = params.get(limits.upscale_param, default.get("default", limits.upscale_factor))
        return float(value) if isinstance(value, int | float) else None
    return float(limits.upscale_factor) if limits.upscale_factor else None


def _check_upscale(
    submission: Submission, spec: ModelSpec, image: Asset, max_pixels: int, field: str | None
) -> None:
    factor = upscale_factor(spec, submission.params)
    if factor is None or not image.width or not image.height:
        return
    width, height = round(image.width * factor), round(image.height * factor)
    if width * height > max_pixels:
        raise InvalidInput(
            f"upscaling the {image.width}x{image.height} image x{factor:g} makes "
            f"{width}x{height} ({width * height:,} pixels); this server makes at most "
            f"{max_pixels:,} pixels per image (IMAGEMILL_MAX_IMAGE_PIXELS)",
            field=field or "input_assets.0",
        )


def _shape(ratio: float) -> str:
    return f"1:{1 / ratio:g}" if ratio < 1 else f"{ratio:g}:1"


def _upscaled_size(submission: Submission, spec: ModelSpec, inputs: Inputs) -> Size | None:
    """What an upscale makes: its input image enlarged by the model's factor, not a size of
    one's choosing (``size`` may only repeat it); ``None`` if that cannot be known here."""
    if submission.aspect_ratio is not None:
        raise InvalidInput(
            "an upscale keeps its image's shape; leave aspect_ratio out", field="aspect_ratio"
        )
    factor = upscale_factor(spec, submission.params)
    image = inputs.images[0] if inputs.images else None
    if factor is None or image is None or not image.width or not image.height:
        if submission.size is not None:
            raise InvalidInput(
                "an upscale makes what its model makes of the image; leave size out",
                field="size",
            )
        return None
    width, height = round(image.width * factor), round(image.height * factor)
    if not all(MIN_SIDE <= side <= MAX_SIDE for side in (width, height)):
        raise InvalidInput(
            f"upscaling the {image.width}x{image.height} image x{factor:g} makes "
            f"{width}x{height}; imagemill makes sides from {MIN_SIDE} to {MAX_SIDE} pixels",
            field="input_assets.0",
        )
    made = Size(width, height)
    if submission.size is not None and Size.parse(submission.size) != made:
        raise InvalidInput(
            f"an upscale makes {made} of this {image.width}x{image.height} image "
            f"(x{factor:g}); leave size out, or choose the scale in params",
            field="size",
        )
    return made


def _no_size(submission: Submission) -> None:
    """A text kind makes no pixels: a size asked of it is a mistake, said so."""
    for name in ("size", "aspect_ratio"):
        if getattr(submission, name) is not None:
            raise InvalidInput(
                f"{submission.kind} makes text, not images; leave {name} out", field=name
            )


def _size(submission: Submission, spec: ModelSpec, max_pixels: int | None = None) -> Size:
    field = "size"
    if submission.size is not None and submission.aspect_ratio is not None:
        raise InvalidInput("give size or aspect_ratio, not both", field="aspect_ratio")
    if submission.size is not None:
        size = Size.parse(submission.size)
    elif submission.aspect_ratio is not None:
        # The shape is what was asked for; the area (about a megapixel) is imagemill's
        # choice, so it is made to fit the model's sides.
        sides = spec.sizes
        about = Size.from_aspect_ratio(submission.aspect_ratio)
        size = fit_within(about, sides.min_side, sides.max_side, sides.multiple_of)
        field = "aspect_ratio"
    else:
        return Size.parse(spec.sizes.default)
    if max_pixels is not None and size.width * size.height > max_pixels:
        raise InvalidInput(
            f"{size} is {size.width * size.height:,} pixels; this server makes at most "
            f"{max_pixels:,} pixels per image (IMAGEMILL_MAX_IMAGE_PIXELS)",
            field=field,
        )
    return _check_bounds(size, spec, field)


def _check_bounds(size: Size, spec: ModelSpec, field: str) -> Size:
    bounds = spec.sizes
    if not all(bounds.min_side <= side <= bounds.max_side for side in (size.width, size.height)):
        raise InvalidInput(
            f"model {quoted(spec.id)} accepts sides from {bounds.min_side} to "
            f"{bounds.max_side} pixels; {size} is out of range",
            field=field,
        )
    if size.width % bounds.multiple_of or size.height % bounds.multiple_of:
        raise InvalidInput(
            f"model {quoted(spec.id)} needs sides that are multiples of {bounds.multiple_of}; "
            f"{size} is not",
            field=field,
        )
    return size


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
    if request.enhance is not None:  # the prompt rendered is the enhanced one
        canonical["enhance"] = request.enhance.model_dump(mode="json")
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()
