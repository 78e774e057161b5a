"""Regular expressions for ranges of numbers and for sizes (``WxH``), as the OpenAPI
document states what a model takes (``api/contract.py``): written without leading zeros,
matching exactly the numbers of the range."""

from __future__ import annotations


def size_pattern(low: int, high: int, multiple: int = 1) -> str:
    """A regular expression for ``WxH`` with each side from ``low`` to ``high`` (and even,
    for ``multiple`` 2), written without leading zeros."""
    side = number_pattern(low, high, even=multiple == 2)
    return f"^{side}[xX]{side}$"


def number_pattern(low: int, high: int, *, even: bool = False) -> str:
    """A regular expression matching the decimal numbers from ``low`` to ``high`` (only
    the even ones, with ``even``)."""
    if not even:
        parts = [_range(str(a), str(b)) for a, b in _split_by_length(low, high)]
        return "(?:" + "|".join(parts) + ")"
    low += low % 2
    high -= high % 2
    first, last = low // 10, high // 10  # the tens: all but the last digit
    if first == last:
        return _tens(first) + _digits(low % 10, high % 10)
    parts = [_tens(first) + _digits(low % 10, 8)]
    if last - first > 1:
        parts.append(number_pattern(first + 1, last - 1) + "[02468]")
    parts.append(_tens(last) + _digits(0, high % 10))
    return "(?:" + "|".join(parts) + ")"


def _tens(value: int) -> str:
    return str(value) if value else ""


def _digits(low: int, high: int) -> str:
    return "[" + "".join(str(d) for d in range(low, high + 1, 2)) + "]"


def _split_by_length(low: int, high: int) -> list[tuple[int, int]]:
    spans = []
    while low <= high:
        top = min(high, 10 ** len(str(low)) - 1)
        spans.append((low, top))
        low = top + 1
    return spans


def _range(low: str, high: str) -> str:
    """Same-length decimal strings ``low`` to ``high``, as a regular expression."""
    if low == high:
        return low
    if len(low) == 1:
        return f"[{low}-{high}]"
    if low[0] == high[0]:
        return low[0] + "(?:" + _range(low[1:], high[1:]) + ")"
    rest = len(low) - 1
    parts = [low[0] + "(?:" + _range(low[1:], "9" * rest) + ")"]
    if int(high[0]) - int(low[0]) > 1:
        parts.append(f"[{int(low[0]) + 1}-{int(high[0]) - 1}][0-9]{{{rest}}}")
    parts.append(high[0] + "(?:" + _range("0" * rest, high[1:]) + ")")
    return "(?:" + "|".join(parts) + ")"
