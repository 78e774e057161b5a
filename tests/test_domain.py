"""Domain models: sizes, aspect ratios, submissions, statuses, pricing."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from imagemill.domain import (
    MAX_N,
    CachePolicy,
    ComparedModel,
    JobStatus,
    Request,
    Size,
    Submission,
    TaskKind,
)
from imagemill.specs import Pricing


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1920x1080", Size(1920, 1080)),
        ("512X256", Size(512, 256)),
        ("16x8192", Size(16, 8192)),
    ],
)
def test_size_parse(text: str, size: Size) -> None:
    assert Size.parse(text) == size


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1024",
        "1024x",
        "x1024",
        "1024*768",
        "-5x10",
        "1.5x2",
        "axb",
        "\uff11\uff10\uff12\uff14x768",  # full-width digits: sizes are ASCII
        "1024x\u0667\u0666\u0668",  # Arabic-Indic digits
        "1024\u00d7768",  # the multiplication sign
        "1024\u2003x768",  # an em space
        " 512 x 256 ",  # spaces: the schema's pattern has none either
        "0512x256",  # leading zeros
    ],
)
def test_size_parse_rejects_malformed(text: str) -> None:
    with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
        Size.parse(text)


@pytest.mark.parametrize("text", ["15x512", "512x15", "8193x100", "0x0"])
def test_size_parse_rejects_out_of_range(text: str) -> None:
    with pytest.raises(ValueError, match="between 16 and 8192"):
        Size.parse(text)


def test_size_prints_as_wxh() -> None:
    assert str(Size(640, 480)) == "640x480"


@pytest.mark.parametrize(
    ("ratio", "size"),
    [
        ("1:1", Size(1024, 1024)),
        ("16:9", Size(1368, 768)),
        ("9:16", Size(768, 1368)),
        ("2.39:1", Size(1584, 664)),
    ],
)
def test_from_aspect_ratio(ratio: str, size: Size) -> None:
    assert Size.from_aspect_ratio(ratio) == size


def test_from_aspect_ratio_keeps_about_the_area_in_multiples_of_8() -> None:
    for ratio in ["3:2", "4:3", "21:9", "1:4"]:
        size = Size.from_aspect_ratio(ratio, area=512 * 512)
        assert size.width % 8 == 0 and size.height % 8 == 0
        assert abs(size.width * size.height - 512 * 512) / (512 * 512) < 0.05
        w, h = (float(x) for x in ratio.split(":"))
        assert abs(size.width / size.height - w / h) / (w / h) < 0.05


@pytest.mark.parametrize("ratio", ["", "16/9", "0:1", "1:0", "1000:1", "1:0.5", "wide", "16 : 9"])
def test_from_aspect_ratio_rejects(ratio: str) -> None:
    with pytest.raises(ValueError):
        Size.from_aspect_ratio(ratio)


def test_job_status_terminal() -> None:
    assert {s for s in JobStatus if s.terminal} == {
        JobStatus.SUCCEEDED,
        JobStatus.FAILED,
        JobStatus.CANCELED,
    }


def test_pricing_by_size_overrides_per_image() -> None:
    pricing = Pricing(per_image=0.04, by_size={"1792x1024": 0.08})
    assert pricing.price(Size(1024, 1024)) == 0.04
    assert pricing.price(Size(1792, 1024)) == 0.08


def test_request_dimensions() -> None:
    assert Request(model="m", size="64x32").dimensions == Size(64, 32)
    assert Request(model="m").dimensions is None


# -- submissions ----------------------------------------------------------------------------


def test_a_minimal_submission() -> None:
    submission = Submission(model="placeholder", prompt="x")
    assert (submission.kind, submission.n, submission.cache) == (
        TaskKind.IMAGE,
        1,
        CachePolicy.AUTO,
    )


@pytest.mark.parametrize(
    "fields",
    [
        {},  # neither model nor models
        {"model": "a", "models": ["b"]},  # both
        {"models": []},
        {"models": [str(i) for i in range(9)]},
        {"model": "a", "n": 0},
        {"model": "a", "n": MAX_N + 1},
        {"model": "a", "seed": -1},
        {"model": "a", "seed": 2**32},
        {"model": "a", "size": "big"},
        {"model": "a", "aspect_ratio": "0:1"},
        {"model": "a", "kind": "painting"},
        {"model": "a", "cache": "sometimes"},
        {"model": "a", "temperature": 1},  # unknown field
    ],
)
def test_invalid_submissions(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Submission(prompt="x", **fields)


def test_models_or_a_preset_may_stand_for_model() -> None:
    compared = Submission(models=["a", {"model": "b", "params": {"steps": 4}}], prompt="x")
    assert compared.models == [
        ComparedModel(model="a"),
        ComparedModel(model="b", params={"steps": 4}),
    ]
    assert Submission(preset="house", prompt="x").model is None
    assert Submission(preset="house", model="a", prompt="x").model == "a"


def test_the_size_is_normalised() -> None:
    assert Submission(model="a", size="1920X1080").size == "1920x1080"


def test_a_validation_error_names_the_field() -> None:
    with pytest.raises(ValidationError) as raised:
        Submission(model="a", size="huge")
    assert raised.value.errors()[0]["loc"] == ("size",)
