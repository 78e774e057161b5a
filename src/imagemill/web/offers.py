"""What the studio's form offers: each model with its price in a few words, the model
ticked on a fresh page (the cheapest that is set up), and which kinds some model here
can do (the others are offered disabled, saying why)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from imagemill.domain import Size, TaskKind
from imagemill.providers.placeholder import MODEL_ID as PLACEHOLDER
from imagemill.specs import ModelSpec


@dataclass(frozen=True, slots=True)
class Offer:
    """The form's choices, for one page."""

    models: list[ModelSpec]  # available first, then by id
    prices: dict[str, str]  # model id → "free", "$0.04 / image", ...
    defaults: dict[str, str | None]  # kind → the model ticked for it at first
    kinds: dict[str, int]  # kind → how many available models do it


def offer(models: Sequence[ModelSpec]) -> Offer:
    listed = sorted(models, key=lambda m: (not m.available, m.id))
    available = [m for m in listed if m.available]
    return Offer(
        models=listed,
        prices={m.id: price_label(m) for m in listed},
        defaults={kind.value: default_model(available, kind) for kind in TaskKind},
        kinds={kind.value: sum(kind in m.kinds for m in available) for kind in TaskKind},
    )


def image_price(spec: ModelSpec) -> float:
    """USD for one image at the model's default size and quality."""
    return spec.pricing.price(Size.parse(spec.sizes.default))


def default_model(available: Sequence[ModelSpec], kind: TaskKind) -> str | None:
    """The cheapest model here that does ``kind`` (the first by id among equals); the
    placeholder only when nothing else is set up, as it makes no real images."""
    doers = [m for m in available if kind in m.kinds]
    real = [m for m in doers if m.id != PLACEHOLDER] or doers
    if not real:
        return None
    return min(real, key=lambda m: (image_price(m), m.id)).id


def price_label(spec: ModelSpec) -> str:
    """A model's price in a few words: "free", "$0.04 / image", "from $0.011 / image"
    (by size or quality), "$0.15 / $0.60 per M tokens" (text models)."""
    pricing = spec.pricing
    if pricing.per_million_input_tokens or pricing.per_million_output_tokens:
        return (
            f"${pricing.per_million_input_tokens:g} / ${pricing.per_million_output_tokens:g} "
            "per M tokens"
        )
    prices = {
        pricing.per_image,
        *pricing.by_size.values(),
        *(price for table in pricing.by_quality.values() for price in table.values()),
    }
    charged = {price for price in prices if price > 0}
    if not charged:
        return "free"
    return f"{'from ' if len(charged) > 1 else ''}${min(charged):.3g} / image"
