"""Properties of the arithmetic that citizens' money relies on (hypothesis)."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from prorate.baseline import Baseline
from prorate.figures import PeriodFigures, compute
from prorate.period import Period, round_half_up
from prorate.rules import SeasonRules, rule_set_named
from prorate.season import season_for_period, season_m, season_starting, special_points
from prorate.tiers import decide_points

RULES = rule_set_named("seoul-2022")
def _season() -> SeasonRules:
    s = RULES.season
    assert s is not None
    return s


SEASON = _season()

starts = st.dates(min_value=date(2022, 1, 1), max_value=date(2030, 12, 31))
#: Annual periods long enough to be computed (shorter ones are refused: test_programme_rules.py).
days_st = st.integers(min_value=RULES.periods.min_annual_days, max_value=800)
odometers = st.integers(min_value=0, max_value=2_000_000_000)
distances = st.integers(min_value=0, max_value=200_000_000)
daily = st.builds(Baseline, method=st.just("override"), daily_m_num=st.integers(0, 500_000), daily_m_den=st.integers(1, 10_000))


def annual(baseline: Baseline, start: date, days: int, odo: int, actual: int) -> PeriodFigures:
    return compute(
        program="annual",
        rules=RULES,
        period=Period(start, start + timedelta(days=days)),
        start_odometer_m=odo,
        end_odometer_m=odo + actual,
        baseline=baseline,
    )


@given(daily, starts, days_st, odometers, distances, distances)
def test_driving_more_never_earns_more(b: Baseline, start: date, days: int, odo: int, a: int, extra: int) -> None:
    assert (annual(b, start, days, odo, a + extra).points or 0) <= (annual(b, start, days, odo, a).points or 0)


@given(daily, starts, days_st, odometers, distances, st.integers(2, 5))
def test_scaling_days_and_distance_keeps_the_rate(b: Baseline, start: date, days: int, odo: int, a: int, k: int) -> None:
    one = annual(b, start, days, odo, a)
    scaled = annual(b, start, days * k, odo, a * k)
    assert one.reduction_rate == scaled.reduction_rate
    assert one.reduction_m is not None and scaled.reduction_m == one.reduction_m * k


@given(daily, starts, days_st, odometers, distances)
def test_reduction_plus_actual_is_the_baseline(b: Baseline, start: date, days: int, odo: int, a: int) -> None:
    f = annual(b, start, days, odo, a)
    assert f.reduction_m is not None and f.baseline_m is not None
    assert f.reduction_m + f.actual_m == f.baseline_m == b.daily_m * days
    assert ((f.points or 0) > 0) == (f.reduction_m > 0)


@given(
    st.fractions(min_value=-10**9, max_value=10**9),
    st.fractions(min_value=-10**9, max_value=10**9),
    st.fractions(min_value=Fraction(1, 10**6), max_value=10**10),
)
def test_tiers_are_monotone_in_the_reduction(r1: Fraction, r2: Fraction, baseline_m: Fraction) -> None:
    lo, hi = sorted((r1, r2))
    assert decide_points(lo, baseline_m, RULES.tiers).points <= decide_points(hi, baseline_m, RULES.tiers).points


@given(st.integers(2022, 2100), distances)
def test_proration_over_the_season_bounds_changes_nothing(year: int, actual: int) -> None:
    s = season_starting(year, SEASON)
    period = Period(s.starts, s.ends)
    assert season_m(actual, period, season_for_period(period, SEASON)) == actual


@given(st.integers(2022, 2100), st.integers(-30, 29), st.integers(-59, 29), distances, distances)
def test_season_driving_more_never_earns_more(year: int, ds: int, de: int, a: int, extra: int) -> None:
    s = season_starting(year, SEASON)
    period = Period(s.starts + timedelta(days=ds), s.ends + timedelta(days=de))
    season = season_for_period(period, SEASON)
    assert special_points(a + extra, period, season, SEASON) <= special_points(a, period, season, SEASON)


@settings(max_examples=300)
@given(st.integers(-(10**12), 10**12), st.integers(0, 6), st.integers(0, 3))
def test_rounding_is_decimal_round_half_up(n: int, scale: int, places: int) -> None:
    exact = Decimal(n).scaleb(-scale)
    expected = exact.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    got = round_half_up(Fraction(n, 10**scale), places)
    assert got == expected
    assert not got.is_signed() or got != 0  # never a negative zero
