"""Budgets: an amount of US dollars an API key, or an owner, may spend per period.

A budget's period is a UTC calendar window: a ``day`` (from midnight), a ``week`` (from
Monday), a ``month`` (from the 1st), or ``total`` (never resets). Amounts are kept as
whole millionths of a dollar (``micros``), so sums are exact: 25 images at $0.04 are
exactly $1.00, where floating point would make them a hair more.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum

from imagemill.boundary import quoted

MICROS_PER_USD = 1_000_000
MAX_BUDGET_USD = Decimal(1_000_000_000)  # a billion dollars: past any real limit
MIN_BUDGET_USD = 1 / MICROS_PER_USD
_BUDGET_TEXT = re.compile(r"\$?(?P<amount>[0-9]+(?:\.[0-9]+)?)(?:/(?P<period>[a-z]+))?")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Period(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    TOTAL = "total"

    def start(self, moment: datetime) -> datetime:
        """The start of the window holding ``moment`` (UTC)."""
        moment = moment.astimezone(UTC)
        midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        if self is Period.DAY:
            return midnight
        if self is Period.WEEK:
            return midnight - timedelta(days=midnight.weekday())
        if self is Period.MONTH:
            return midnight.replace(day=1)
        return _EPOCH

    def end(self, start: datetime) -> datetime | None:
        """When the window that began at ``start`` ends (its budget resets); ``None``
        for ``total``."""
        if self is Period.DAY:
            return start + timedelta(days=1)
        if self is Period.WEEK:
            return start + timedelta(weeks=1)
        if self is Period.MONTH:
            year, month = divmod(start.month, 12)
            return start.replace(year=start.year + year, month=month + 1)
        return None


def to_micros(usd: float | Decimal) -> int:
    """Dollars as whole millionths (rounded half up: a cost of $0.0000005 counts)."""
    return int((Decimal(str(usd)) * MICROS_PER_USD).to_integral_value(rounding="ROUND_HALF_UP"))


def to_usd(micros: int) -> float:
    return micros / MICROS_PER_USD


@dataclass(frozen=True, slots=True)
class Limit:
    """A budget as set: ``limit_micros`` per ``period``."""

    limit_micros: int
    period: Period

    @property
    def limit_usd(self) -> float:
        return to_usd(self.limit_micros)

    def __str__(self) -> str:
        return f"${self.limit_usd:g}/{self.period}"


def parse_limit(text: str) -> Limit:
    """``"20/month"``, ``"$5/day"``, ``"0.50/week"``, ``"100/total"`` (or ``"100"``: in
    total) as a ``Limit``. ``ValueError`` with a reason people can act on."""
    match = _BUDGET_TEXT.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError(
            f"a budget looks like AMOUNT/PERIOD in US dollars, e.g. '20/month' or '5/day', "
            f"not {quoted(text)}"
        )
    period_text = match["period"] or Period.TOTAL.value
    try:
        period = Period(period_text)
    except ValueError:
        periods = ", ".join(p.value for p in Period)
        raise ValueError(
            f"a budget's period is one of {periods}, not {quoted(period_text)}"
        ) from None
    return Limit(limit_micros(match["amount"]), period)


def limit_micros(amount: str | float | Decimal) -> int:
    """A budget's amount in dollars (at most 6 decimals, above 0, up to a billion) as
    micros; ``ValueError`` otherwise."""
    try:
        value = Decimal(str(amount))
    except InvalidOperation:
        raise ValueError(
            f"a budget's amount is a number of dollars, not {quoted(str(amount))}"
        ) from None
    if not value.is_finite() or value <= 0 or value > MAX_BUDGET_USD:
        raise ValueError(f"a budget's amount is above 0 and at most {MAX_BUDGET_USD:,} dollars")
    micros = value * MICROS_PER_USD
    if micros != micros.to_integral_value():
        raise ValueError("a budget's amount has at most 6 decimals (a millionth of a dollar)")
    return int(micros)
