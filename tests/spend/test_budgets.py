"""Budget periods and amounts (``spend/budgets.py``)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from imagemill.spend.budgets import Limit, Period, parse_limit, to_micros

# A Wednesday evening, the last day of a month.
MOMENT = datetime(2026, 12, 30, 21, 15, 7, 123, tzinfo=UTC)


@pytest.mark.parametrize(
    ("period", "start", "end"),
    [
        (Period.DAY, datetime(2026, 12, 30, tzinfo=UTC), datetime(2026, 12, 31, tzinfo=UTC)),
        (Period.WEEK, datetime(2026, 12, 28, tzinfo=UTC), datetime(2027, 1, 4, tzinfo=UTC)),
        (Period.MONTH, datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
        (Period.TOTAL, datetime(1970, 1, 1, tzinfo=UTC), None),
    ],
)
def test_periods_are_utc_calendar_windows(
    period: Period, start: datetime, end: datetime | None
) -> None:
    assert period.start(MOMENT) == start
    assert period.end(start) == end


def test_a_month_in_the_middle_of_the_year_ends_on_the_first_of_the_next() -> None:
    start = Period.MONTH.start(datetime(2027, 2, 14, tzinfo=UTC))
    assert Period.MONTH.end(start) == datetime(2027, 3, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "limit"),
    [
        ("20/month", Limit(20_000_000, Period.MONTH)),
        ("$5/day", Limit(5_000_000, Period.DAY)),
        (" 0.50/week ", Limit(500_000, Period.WEEK)),
        ("100", Limit(100_000_000, Period.TOTAL)),
        ("1.000001/DAY", Limit(1_000_001, Period.DAY)),
    ],
)
def test_budgets_are_read_as_people_write_them(text: str, limit: Limit) -> None:
    assert parse_limit(text) == limit


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("20/year", "one of day, week, month, total"),
        ("twenty/month", "AMOUNT/PERIOD"),
        ("-5/day", "AMOUNT/PERIOD"),
        ("0/day", "above 0"),
        ("0.0000001/day", "at most 6 decimals"),
        ("2000000000/day", "at most 1,000,000,000"),
    ],
)
def test_a_wrong_budget_says_why(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_limit(text)


def test_amounts_are_exact_millionths() -> None:
    assert sum(to_micros(0.04) for _ in range(25)) == 1_000_000  # floats would drift
    assert to_micros(0.04 * 4) == 160_000
    assert to_micros(0.0000005) == 1  # half a millionth counts
    assert str(Limit(5_500_000, Period.DAY)) == "$5.5/day"
