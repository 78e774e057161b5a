"""What a request will cost, before anything runs: ``POST /v1/estimate``, and the amount
a job reserves against its caller's budgets at submit.

An image's price comes from its model's price table (``ModelSpec.pricing``, with the
operator's ``IMAGEMILL_PRICES`` overrides) at the size the model will make: the nearest
of its fixed sizes, as the provider bills it, and the quality the request asks for.
Text models (captions, enhanced prompts, descriptions) are priced by tokens, which are
known only once they answer; their estimate takes the prompt at 4 characters a token,
1,000 tokens per input image and 500 written per text, an upper bound for what
imagemill asks of them. Settling uses what the job really cost.

A job's reservation is the most it can cost: each output at its priciest model in the
fallback chain, plus enhancing its prompt. A fallback that is free (``placeholder``)
reserves nothing more.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from imagemill.domain import Request, Size, TaskKind, output_count
from imagemill.providers.sizes import nearest_size
from imagemill.specs import ModelSpec
from imagemill.spend.budgets import to_micros

CHARS_PER_TOKEN = 4
TOKENS_PER_INPUT_IMAGE = 1_000
TOKENS_WRITTEN_PER_TEXT = 500

SpecOf = Callable[[str], ModelSpec]


@dataclass(frozen=True, slots=True)
class Estimate:
    """What one job will cost, in millionths of a dollar."""

    model: str
    kind: TaskKind
    outputs: int  # images (or texts) it makes
    unit_micros: int  # each output, made by the model asked for
    cost_micros: int  # the job, made by the model asked for (enhancing included)
    reserve_micros: int  # the most it can cost: what submit holds against budgets

    @property
    def free(self) -> bool:
        return self.reserve_micros == 0


def estimate(request: Request, spec_of: SpecOf) -> Estimate:
    """The cost of ``request`` (resolved at submit: its size, params and fallback chain),
    with ``spec_of`` giving a model id's spec (``InvalidInput`` for an unknown one)."""
    outputs = output_count(request.kind, request.n, request.params)
    unit = _unit_micros(request, spec_of(request.model), request.params)
    priciest = max(
        [unit, *(_unit_micros(request, spec_of(f.model), f.params) for f in request.fallback)]
    )
    enhancing = 0
    if request.enhance is not None:
        enhancer = spec_of(request.enhance.model)
        enhancing = (
            _text_micros(enhancer, request.prompt, 0, 1)
            if _by_tokens(enhancer)
            else to_micros(enhancer.pricing.per_image)  # what the worker charges then
        )
    return Estimate(
        model=request.model,
        kind=request.kind,
        outputs=outputs,
        unit_micros=unit,
        cost_micros=unit * outputs + enhancing,
        reserve_micros=priciest * outputs + enhancing,
    )


def _unit_micros(request: Request, spec: ModelSpec, params: dict[str, Any]) -> int:
    pricing = spec.pricing
    if _by_tokens(spec):
        return _text_micros(spec, request.prompt, len(request.input_assets), 1)
    size = request.dimensions or Size.parse(spec.sizes.default)
    if spec.sizes.fixed:
        size = nearest_size(size, spec.sizes.fixed)
    quality = params.get("quality")
    return to_micros(pricing.price(size, quality if isinstance(quality, str) else None))


def _by_tokens(spec: ModelSpec) -> bool:
    return bool(spec.pricing.per_million_input_tokens or spec.pricing.per_million_output_tokens)


def _text_micros(spec: ModelSpec, prompt: str, images: int, texts: int) -> int:
    read = math.ceil(len(prompt) / CHARS_PER_TOKEN) + images * TOKENS_PER_INPUT_IMAGE
    return to_micros(spec.pricing.tokens(read, texts * TOKENS_WRITTEN_PER_TEXT))
