"""Reported figures never read as another tier (issue 15, item 6): one rule, property-tested."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prorate.calc import calculate, parse_request
from prorate.display import (
    Cut,
    band,
    bands_km,
    bands_pct,
    bands_season_km,
    shown,
    shown_rate_pct,
    shown_reduction_km,
    shown_season_km,
)
from prorate.period import round_half_up
from prorate.rules import SeasonRules, rule_set_named

RULES = rule_set_named("seoul-2022")


def _season() -> SeasonRules:
    assert RULES.season is not None
    return RULES.season


SEASON = _season()
KM_BANDS, PCT_BANDS, SEASON_BANDS = bands_km(RULES.tiers), bands_pct(RULES.tiers), bands_season_km(SEASON)


@pytest.mark.parametrize(
    ("figure", "exact", "reads"),
    [
        # The cases: the rate a hair under 10 % (pays 20,000), a reduction of one metre.
        ("pct", Fraction(999997, 100_000), "9.99"),
        ("km", Fraction(1, 1000), "0.1"),
        ("km", Fraction(999_96, 100), "999.9"),  # 999.96 km: tier 1, not "1000.0"
        ("km", Fraction(1000), "1000.0"),  # on the bound: the bound
        ("km", Fraction(1000_04, 100), "1000.0"),  # 1,000.04 km: rounds down within tier 2
        ("km", Fraction(-4, 100), "0.0"),  # no reduction reads 0.0 (or below)
        ("km", Fraction(0), "0.0"),
        ("pct", Fraction(29_996, 1000), "29.99"),
        ("pct", Fraction(1, 10**6), "0.01"),
        ("season", Fraction(1800_04, 100), "1800.1"),  # over the limit (earns nothing), not "1800.0"
        ("season", Fraction(1799_96, 100), "1800.0"),  # within the limit: 1,800.0 earns
        ("season", Fraction(1800), "1800.0"),
        ("pct", Fraction(12_345, 1000), "12.35"),  # far from a bound: plain half up
    ],
)
def test_figures_next_to_a_bound(figure: str, exact: Fraction, reads: str) -> None:
    cuts = {"km": KM_BANDS, "pct": PCT_BANDS, "season": SEASON_BANDS}[figure]
    places = 2 if figure == "pct" else 1
    assert str(shown(exact, places, cuts)) == reads


values = st.fractions(min_value=-5000, max_value=10_000, max_denominator=10**7)
near_bounds = st.builds(
    lambda b, eps: Fraction(b) + eps,
    st.sampled_from([0, 10, 20, 30, 1000, 2000, 3000, 1800]),
    st.fractions(min_value=Fraction(-1, 10), max_value=Fraction(1, 10), max_denominator=10**6),
)


@settings(max_examples=500)
@given(st.one_of(values, near_bounds))
def test_a_shown_figure_lies_in_its_values_band_within_one_step(x: Fraction) -> None:
    for cuts, places in ((KM_BANDS, 1), (PCT_BANDS, 2), (SEASON_BANDS, 1)):
        d = shown(x, places, cuts)
        assert band(Fraction(d), cuts) == band(x, cuts)
        assert abs(Fraction(d) - x) < Fraction(1, 10**places)
        assert d == d.quantize(Decimal(1).scaleb(-places))
        # Away from a bound it is plain half-up rounding.
        if band(Fraction(round_half_up(x, places)), cuts) == band(x, cuts):
            assert d == round_half_up(x, places)


@st.composite
def any_bands(draw: st.DrawFn) -> tuple[tuple[Cut, ...], int]:
    """Cuts at reported figures at least two steps apart, each owned by either side."""
    places = draw(st.integers(0, 3))
    gaps = draw(st.lists(st.integers(2, 50), min_size=1, max_size=6))
    at = draw(st.integers(-100, 100))
    cuts = []
    for g in gaps:
        at += g
        cuts.append(Cut(Fraction(at, 10**places), draw(st.booleans())))
    return tuple(cuts), places


@settings(max_examples=500)
@given(any_bands(), st.fractions(min_value=-200, max_value=200, max_denominator=10**5))
def test_any_rule_tables_bands_hold_their_figures(b: tuple[tuple[Cut, ...], int], x: Fraction) -> None:
    cuts, places = b
    d = shown(x, places, cuts)
    assert band(Fraction(d), cuts) == band(x, cuts)
    assert abs(Fraction(d) - x) < Fraction(1, 10**places)


@settings(max_examples=300)
@given(
    st.integers(1, 80_000),  # daily baseline, whole metres
    st.integers(335, 420),  # days
    st.integers(-3000, 3000),  # metres from a bound
    st.sampled_from(["rate10", "rate20", "rate30", "km1000", "km2000", "km3000", "zero"]),
)
def test_the_reported_figures_read_as_the_tier_that_pays(daily_m: int, days: int, delta: int, aim: str) -> None:
    """Whatever the exact values, the shown rate and reduction never belong to a higher tier than
    the one paid, and at least one of them belongs to it (better of rate and amount)."""
    baseline_m = daily_m * days
    bound = {
        "rate10": baseline_m * Fraction(9, 10), "rate20": baseline_m * Fraction(8, 10),
        "rate30": baseline_m * Fraction(7, 10), "km1000": Fraction(baseline_m - 1_000_000),
        "km2000": Fraction(baseline_m - 2_000_000), "km3000": Fraction(baseline_m - 3_000_000),
        "zero": Fraction(baseline_m),
    }[aim]
    actual = max(0, int(bound) + delta)
    f = calculate(parse_request({
        "program": "annual", "start_date": "2023-01-01", "start_km": "1000",
        "end_date": (date(2023, 1, 1) + timedelta(days=days)).isoformat(),
        "end_km": str(Decimal(1000) + Decimal(actual) / 1000), "baseline_daily_km": str(Decimal(daily_m) / 1000),
    }))
    assert f.reduction_m is not None and f.reduction_rate is not None
    km = shown_reduction_km(f.reduction_m, RULES)
    pct = shown_rate_pct(f.reduction_rate, RULES)
    tier_of_km = band(Fraction(km), KM_BANDS)  # 0: nothing, 1..4: tiers
    tier_of_pct = band(Fraction(pct), PCT_BANDS)
    paid = 0 if f.tier is None else f.tier + 1
    assert max(tier_of_km, tier_of_pct) == paid
    assert f.report()["reduction_km"] == float(km) and f.report()["reduction_rate_pct"] == float(pct)


@given(st.integers(0, 4_000_000), st.integers(100, 140))
def test_the_season_distance_reads_on_its_side_of_the_limit(actual_m: int, days: int) -> None:
    m = Fraction(actual_m * 121, days)
    earned = m <= 1_800_000
    assert (Fraction(shown_season_km(m, SEASON)) <= SEASON.max_km) == earned
