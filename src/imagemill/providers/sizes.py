"""Choosing what a provider can make for a requested size.

imagemill honours exact sizes: a model with fixed sizes or aspect ratios is asked for
the one nearest the request (closest aspect ratio first, then closest area), and the
result is resized and centre-cropped to the request when it is stored.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from imagemill.domain import Size


def _ratio(text: str) -> float:
    width, _, height = text.partition(":")
    return float(width) / float(height)


def _aspect_distance(a: float, b: float) -> float:
    return abs(math.log(a / b))


def nearest_size(requested: Size, options: Iterable[str | Size]) -> Size:
    """The option (``"WxH"`` or ``Size``) closest to ``requested`` in shape, then in area."""
    sizes = [o if isinstance(o, Size) else Size.parse(o) for o in options]
    if not sizes:
        raise ValueError("no sizes to choose from")
    want = requested.width / requested.height
    area = requested.width * requested.height
    return min(
        sizes,
        key=lambda s: (
            round(_aspect_distance(s.width / s.height, want), 6),
            abs(math.log(s.width * s.height / area)),
        ),
    )


def nearest_aspect_ratio(requested: Size, ratios: Iterable[str]) -> str:
    """The ``"W:H"`` ratio closest to ``requested``'s shape."""
    want = requested.width / requested.height
    return min(ratios, key=lambda r: _aspect_distance(_ratio(r), want))


def fit_within(requested: Size, min_side: int, max_side: int, multiple: int = 1) -> Size:
    """``requested`` scaled (keeping its shape) into the side bounds, rounded to ``multiple``."""
    scale = 1.0
    longest, shortest = (
        max(requested.width, requested.height),
        min(requested.width, requested.height),
    )
    if longest > max_side:
        scale = max_side / longest
    if shortest * scale < min_side:
        scale = min_side / shortest

    lowest = -(-min_side // multiple) * multiple  # the first multiple at or above min_side
    highest = max_side - max_side % multiple

    def side(value: int) -> int:
        rounded = round(value * scale / multiple) * multiple
        return min(highest, max(lowest, rounded))

    return Size(side(requested.width), side(requested.height))
