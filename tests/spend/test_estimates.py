"""Estimates (``spend/estimates.py``): a request's price before it runs."""

from __future__ import annotations

from imagemill.domain import Enhancement, FallbackModel, Request, TaskKind
from imagemill.providers.openai_images import DALL_E_3
from imagemill.specs import ModelSpec, Pricing
from imagemill.spend.estimates import estimate

FREE = ModelSpec(id="placeholder", provider="placeholder", name="placeholder")
WRITER = ModelSpec(
    id="w/text",
    provider="w",
    name="text",
    kinds=[TaskKind.ENHANCE, TaskKind.CAPTION],
    pricing=Pricing(per_million_input_tokens=1.0, per_million_output_tokens=2.0),
)
SPECS = {spec.id: spec for spec in (FREE, DALL_E_3, WRITER)}


def test_an_image_is_priced_at_the_size_the_model_makes_and_the_quality_asked() -> None:
    # 1920x1080 is made at 1792x1024 (DALL·E 3's nearest): $0.08, or $0.12 in hd.
    wide = Request(model="openai/dall-e-3", size="1920x1080", n=2)
    hd = wide.model_copy(update={"params": {"quality": "hd"}})
    assert estimate(wide, SPECS.__getitem__).cost_micros == 160_000
    assert estimate(hd, SPECS.__getitem__).unit_micros == 120_000
    default = Request(model="openai/dall-e-3")  # its default size, 1024x1024
    assert estimate(default, SPECS.__getitem__).unit_micros == 40_000


def test_the_reservation_is_the_priciest_model_of_the_chain() -> None:
    request = Request(
        model="placeholder", size="1024x1024", fallback=[FallbackModel(model="openai/dall-e-3")]
    )
    found = estimate(request, SPECS.__getitem__)
    assert (found.cost_micros, found.reserve_micros) == (0, 40_000)
    assert not found.free


def test_text_models_and_enhancing_are_priced_by_an_upper_bound_of_tokens() -> None:
    prompt = "x" * 400  # 100 tokens read, 500 written: $0.0001 + $0.001
    caption = Request(kind=TaskKind.CAPTION, model="w/text", prompt=prompt)
    assert estimate(caption, SPECS.__getitem__).unit_micros == 1_100
    enhanced = Request(model="openai/dall-e-3", prompt=prompt, enhance=Enhancement(model="w/text"))
    found = estimate(enhanced, SPECS.__getitem__)
    assert found.cost_micros == 40_000 + 1_100
    assert found.reserve_micros == found.cost_micros
