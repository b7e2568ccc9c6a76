"""Baselines: the national formula, used cars, new cars by district, operator overrides."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from fractions import Fraction

import pytest

from prorate.baseline import BaselineFacts, derive_baseline
from prorate.districts import district_tables
from prorate.errors import ProrateError
from prorate.rules import rule_set_named
from prorate.vehicle import SEOUL_DISTRICTS

RULES = rule_set_named("seoul-2022").baseline
START = date(2022, 3, 1)


def facts(**kw: object) -> BaselineFacts:
    base: dict[str, object] = {"start_date": START, "start_odometer_m": 45_000_000}
    base.update(kw)
    return BaselineFacts.model_validate(base)


def test_national_formula_is_odometer_over_days_since_registration() -> None:
    b = derive_baseline(facts(first_registration_date=date(2018, 3, 1)), RULES)
    assert b.method == "national"
    assert b.history_days == 1461
    assert b.daily_m == Fraction(45_000_000, 1461)
    assert b.baseline_m(365) == Fraction(45_000_000 * 365, 1461)


def test_used_car_counts_from_acquisition() -> None:
    b = derive_baseline(
        facts(
            first_registration_date=date(2015, 1, 1),
            acquired_date=date(2020, 3, 1),
            acquired_odometer_m=30_000_000,
        ),
        RULES,
    )
    assert b.method == "used_car"
    assert (b.history_from, b.history_days, b.history_m) == (date(2020, 3, 1), 730, 15_000_000)
    assert b.daily_m == Fraction(15_000_000, 730)


@pytest.mark.parametrize(
    ("registered", "method"),
    [
        (date(2021, 3, 1), "national"),  # exactly a year before the start: its own history
        (date(2021, 3, 2), "district"),  # a day short of a year: the district's average
        (date(2022, 3, 1), "district"),  # registered on the start day
    ],
)
def test_a_car_under_a_year_old_uses_its_district(registered: date, method: str) -> None:
    b = derive_baseline(facts(first_registration_date=registered, district="강남구"), RULES)
    assert b.method == method


def test_district_average_from_the_table() -> None:
    b = derive_baseline(facts(district="서울특별시 강남구"), RULES)
    assert (b.method, b.district, b.district_table) == ("district", "강남구", "seoul-2021")
    assert b.daily_m == Fraction(district_tables()["seoul-2021"]["강남구"]) * 1000


def test_every_district_has_a_figure() -> None:
    for table in district_tables().values():
        assert set(table) == set(SEOUL_DISTRICTS)


def test_override_wins() -> None:
    b = derive_baseline(
        facts(first_registration_date=date(2018, 3, 1), district="중구", override_daily_km=Decimal("12.345")),
        RULES,
    )
    assert (b.method, b.daily_m) == ("override", Fraction(12345))
    assert "operator override" in b.evidence()["explanation"]


@pytest.mark.parametrize(
    ("kw", "code"),
    [
        ({}, "baseline_missing"),
        ({"first_registration_date": date(2021, 6, 1)}, "baseline_needs_district"),
        ({"first_registration_date": date(2022, 3, 2)}, "baseline_contradictory"),
        ({"first_registration_date": date(2015, 1, 1), "acquired_date": date(2020, 1, 1)}, "baseline_contradictory"),
        (
            {"first_registration_date": date(2015, 1, 1), "acquired_date": date(2014, 1, 1), "acquired_odometer_m": 0},
            "baseline_contradictory",
        ),
        (
            {"first_registration_date": date(2015, 1, 1), "acquired_date": date(2020, 1, 1), "acquired_odometer_m": 46_000_000},
            "baseline_contradictory",
        ),
        ({"district": "해운대구"}, "district_unknown"),
        ({"override_daily_km": Decimal("-1")}, "baseline_negative"),
    ],
)
def test_unusable_inputs_are_refused(kw: dict[str, object], code: str) -> None:
    with pytest.raises(ProrateError) as e:
        derive_baseline(facts(**kw), RULES)
    assert e.value.code == code
    assert e.value.message
