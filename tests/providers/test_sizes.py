"""Size helpers: the nearest fixed size or aspect ratio a model makes, and fitting into bounds."""

from __future__ import annotations

import pytest

from imagemill.domain import Size
from imagemill.providers.gemini import FLASH_IMAGE_RATIOS, IMAGEN_RATIOS
from imagemill.providers.openai_images import DALL_E_3_SIZES, GPT_IMAGE_SIZES
from imagemill.providers.sizes import fit_within, nearest_aspect_ratio, nearest_size

# -- nearest_size ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requested", "options", "expected"),
    [
        ("1920x1080", GPT_IMAGE_SIZES, "1536x1024"),
        ("1080x1920", GPT_IMAGE_SIZES, "1024x1536"),
        ("1000x1000", GPT_IMAGE_SIZES, "1024x1024"),
        ("4000x4000", GPT_IMAGE_SIZES, "1024x1024"),
        ("1200x1000", GPT_IMAGE_SIZES, "1024x1024"),  # 1.2 is nearer 1:1 than 3:2
        ("1400x1000", GPT_IMAGE_SIZES, "1536x1024"),
        ("1920x1080", DALL_E_3_SIZES, "1792x1024"),
        ("1080x1920", DALL_E_3_SIZES, "1024x1792"),
        ("512x512", DALL_E_3_SIZES, "1024x1024"),
    ],
)
def test_nearest_size_picks_the_closest_shape(
    requested: str, options: list[str], expected: str
) -> None:
    assert nearest_size(Size.parse(requested), options) == Size.parse(expected)


def test_shape_wins_over_area() -> None:
    # 400x200 has the requested 2:1 shape but a tenth of its area; 1024x1024 is closer in area.
    assert nearest_size(Size(2000, 1000), ["1024x1024", "400x200"]) == Size(400, 200)


@pytest.mark.parametrize(
    ("requested", "expected"),
    [("900x900", "1024x1024"), ("600x600", "512x512"), ("3000x3000", "2048x2048")],
)
def test_among_one_shape_the_closest_area_wins(requested: str, expected: str) -> None:
    options = ["512x512", "1024x1024", "2048x2048"]
    assert nearest_size(Size.parse(requested), options) == Size.parse(expected)


def test_options_may_be_sizes() -> None:
    assert nearest_size(Size(1920, 1080), [Size(1024, 1024), Size(1344, 768)]) == Size(1344, 768)


def test_no_options_is_an_error() -> None:
    with pytest.raises(ValueError, match="no sizes"):
        nearest_size(Size(1024, 1024), [])


# -- nearest_aspect_ratio -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requested", "ratios", "expected"),
    [
        ("1920x1080", FLASH_IMAGE_RATIOS, "16:9"),
        ("1080x1920", FLASH_IMAGE_RATIOS, "9:16"),
        ("2560x1080", FLASH_IMAGE_RATIOS, "21:9"),
        ("1000x1000", FLASH_IMAGE_RATIOS, "1:1"),
        ("1080x1350", FLASH_IMAGE_RATIOS, "4:5"),
        ("1536x1024", FLASH_IMAGE_RATIOS, "3:2"),
        ("2560x1080", IMAGEN_RATIOS, "16:9"),
        ("1536x1024", IMAGEN_RATIOS, "4:3"),
        ("1080x1350", IMAGEN_RATIOS, "3:4"),
    ],
)
def test_nearest_aspect_ratio(requested: str, ratios: list[str], expected: str) -> None:
    assert nearest_aspect_ratio(Size.parse(requested), ratios) == expected


def _mirrored(ratio: str) -> str:
    width, _, height = ratio.partition(":")
    return f"{height}:{width}"


@pytest.mark.parametrize("size", ["1543x1000", "655x1000", "1920x1080", "1100x1000", "3000x1000"])
def test_a_portrait_request_gets_the_mirror_of_the_landscape_ratio(size: str) -> None:
    """Shapes are compared by ratio (log distance), so 2:1 is as far from 1:1 as 1:2 is."""
    landscape = Size.parse(size)
    portrait = Size(landscape.height, landscape.width)
    assert nearest_aspect_ratio(portrait, IMAGEN_RATIOS) == _mirrored(
        nearest_aspect_ratio(landscape, IMAGEN_RATIOS)
    )


# -- fit_within -----------------------------------------------------------------------------


def test_a_size_within_bounds_is_kept() -> None:
    assert fit_within(Size(1000, 600), 64, 2048) == Size(1000, 600)


def test_a_size_within_bounds_is_rounded_to_the_multiple() -> None:
    assert fit_within(Size(1000, 1000), 64, 2048, multiple=64) == Size(1024, 1024)
    assert fit_within(Size(1001, 999), 64, 2048, multiple=8) == Size(1000, 1000)


def test_a_large_size_is_scaled_down_keeping_its_shape() -> None:
    assert fit_within(Size(8000, 4000), 64, 2048, multiple=64) == Size(2048, 1024)
    assert fit_within(Size(3000, 4000), 64, 2000) == Size(1500, 2000)


def test_a_small_size_is_scaled_up_keeping_its_shape() -> None:
    assert fit_within(Size(10, 20), 64, 2048) == Size(64, 128)
    assert fit_within(Size(100, 50), 256, 2048, multiple=32) == Size(512, 256)


def test_rounding_up_never_passes_the_maximum() -> None:
    # 2030 is within bounds but rounds to 2048, past 2040: the largest multiple within is 1984.
    assert fit_within(Size(2030, 1000), 64, 2040, multiple=64) == Size(1984, 1024)


def test_a_shape_too_extreme_for_the_bounds_is_clamped_to_them() -> None:
    assert fit_within(Size(10_000, 100), 64, 2048, multiple=64) == Size(2048, 64)


@pytest.mark.parametrize(
    ("requested", "min_side", "max_side", "multiple"),
    [
        (Size(1920, 1080), 256, 1440, 64),
        (Size(7, 5000), 256, 1440, 64),
        (Size(5000, 7), 64, 2048, 16),
        (Size(333, 777), 256, 1024, 32),
        (Size(4097, 4095), 16, 4096, 8),
        (Size(16, 16), 16, 4096, 64),
    ],
)
def test_the_result_is_within_bounds_and_a_multiple(
    requested: Size, min_side: int, max_side: int, multiple: int
) -> None:
    fitted = fit_within(requested, min_side, max_side, multiple)
    for side in (fitted.width, fitted.height):
        assert min_side <= side <= max_side, fitted
        assert side % multiple == 0, fitted


def test_a_minimum_that_is_not_a_multiple_rounds_up_to_one() -> None:
    fitted = fit_within(Size(40, 40), 80, 2048, multiple=64)
    assert fitted == Size(128, 128)
