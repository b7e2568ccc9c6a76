"""Reward tiers at every boundary of the 2022 table: half-open ranges, better of rate and amount."""

from __future__ import annotations

from fractions import Fraction

import pytest

from prorate.period import report_pct
from prorate.rules import rule_set_named
from prorate.tiers import decide_points

TIERS = rule_set_named("seoul-2022").tiers
KM = 1000


@pytest.mark.parametrize(
    ("reduction_m", "points", "by"),
    [
        # Amount alone decides when the baseline is huge (rate stays far below 10 %).
        (Fraction(0), 0, "none"),
        (Fraction(-1), 0, "none"),
        (Fraction(1), 20_000, "rate_and_amount"),
        (Fraction(1000 * KM) - Fraction(1, 10**9), 20_000, "rate_and_amount"),
        (Fraction(1000 * KM), 30_000, "amount"),
        (Fraction(2000 * KM) - 1, 30_000, "amount"),
        (Fraction(2000 * KM), 50_000, "amount"),
        (Fraction(3000 * KM) - 1, 50_000, "amount"),
        (Fraction(3000 * KM), 70_000, "amount"),
        (Fraction(90_000 * KM), 70_000, "amount"),
    ],
)
def test_amount_boundaries(reduction_m: Fraction, points: int, by: str) -> None:
    d = decide_points(reduction_m, Fraction(10**12), TIERS)
    assert (d.points, d.by) == (points, by)


@pytest.mark.parametrize(
    ("rate", "points"),
    [
        (Fraction(1, 10**6), 20_000),
        (Fraction(10, 100) - Fraction(1, 10**12), 20_000),
        (Fraction(10, 100), 30_000),
        (Fraction(20, 100) - Fraction(1, 10**12), 30_000),
        (Fraction(20, 100), 50_000),
        (Fraction(30, 100) - Fraction(1, 10**12), 50_000),
        (Fraction(30, 100), 70_000),
        (Fraction(1), 70_000),
    ],
)
def test_rate_boundaries(rate: Fraction, points: int) -> None:
    # A 900 km baseline: the amount never leaves the first tier, so the rate decides.
    baseline_m = Fraction(900 * KM)
    d = decide_points(rate * baseline_m, baseline_m, TIERS)
    assert d.points == points
    assert d.by in ("rate", "rate_and_amount")


def test_better_of_rate_and_amount() -> None:
    # 1,500 km off a 20,000 km baseline: 7.5 % (tier 1) but 1,500 km (tier 2) -> the amount pays.
    d = decide_points(Fraction(1500 * KM), Fraction(20_000 * KM), TIERS)
    assert (d.points, d.by) == (30_000, "amount")
    # 950 km off a 3,000 km baseline: 31.7 % (top tier) beats 950 km (first tier).
    d = decide_points(Fraction(950 * KM), Fraction(3000 * KM), TIERS)
    assert (d.points, d.by) == (70_000, "rate")


def test_rate_just_below_ten_percent_is_not_rounded_up() -> None:
    # 9.99995 % prints as 10.00 % but is decided on the exact value: still the first tier.
    baseline_m = Fraction(5000 * KM)
    rate = Fraction(999995, 10**7)
    assert str(report_pct(rate)) == "10.00"
    assert decide_points(baseline_m * rate, baseline_m, TIERS).points == 20_000
