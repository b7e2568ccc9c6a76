"""Day-proration: days = e − s on Seoul calendar dates, and report rounding (half up)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from fractions import Fraction

import pytest

from prorate.errors import ProrateError
from prorate.period import Period, add_months, km_to_m, report_km, report_pct, seoul_date


def test_days_is_end_minus_start() -> None:
    assert Period(date(2022, 1, 1), date(2023, 1, 1)).days == 365
    assert Period(date(2024, 1, 1), date(2025, 1, 1)).days == 366
    assert Period(date(2022, 3, 1), date(2022, 3, 2)).days == 1


def test_end_before_or_on_start_is_refused() -> None:
    with pytest.raises(ProrateError) as e:
        Period(date(2022, 3, 2), date(2022, 3, 1))
    assert e.value.code == "end_before_start"
    with pytest.raises(ProrateError) as e:
        Period(date(2022, 3, 2), date(2022, 3, 2))
    assert e.value.code == "empty_period"


def test_dates_are_seoul_calendar_dates() -> None:
    # 15:30 UTC on 31 Dec is already 1 Jan in Seoul (UTC+9).
    assert seoul_date(datetime(2022, 12, 31, 15, 30, tzinfo=UTC)) == date(2023, 1, 1)
    assert seoul_date(datetime(2022, 12, 31, 14, 59, tzinfo=UTC)) == date(2022, 12, 31)
    with pytest.raises(ProrateError):
        seoul_date(datetime(2022, 12, 31, 14, 59))


@pytest.mark.parametrize(
    ("metres", "km"),
    [
        (Fraction(12_250), "12.3"),  # a tie rounds up
        (Fraction(12_249), "12.2"),
        (Fraction(-12_250), "-12.3"),  # ties round away from zero
        (Fraction(-49), "0.0"),  # no negative zero
        (Fraction(1, 3), "0.0"),
        (Fraction(100_050, 1), "100.1"),
    ],
)
def test_report_km_half_up(metres: Fraction, km: str) -> None:
    assert str(report_km(metres)) == km


def test_report_pct_half_up() -> None:
    assert str(report_pct(Fraction(12345, 1_000_000))) == "1.23"
    assert str(report_pct(Fraction(12350, 1_000_000))) == "1.24"
    assert str(report_pct(Fraction(1, 3))) == "33.33"


def test_km_to_whole_metres() -> None:
    assert km_to_m(Decimal("12345.678"), "x") == 12_345_678
    assert km_to_m(7, "x") == 7000
    with pytest.raises(ProrateError):
        km_to_m(Decimal("1.0001"), "x")
    with pytest.raises(ProrateError):
        km_to_m(Decimal("-1"), "x")


def test_add_months_clamps_to_month_end() -> None:
    assert add_months(date(2024, 2, 29), -12) == date(2023, 2, 28)
    assert add_months(date(2022, 3, 31), -1) == date(2022, 2, 28)
    assert add_months(date(2022, 1, 15), -12) == date(2021, 1, 15)
