"""The programme rules of issue 15, case by case as `carmileage calc` and a round see them:
partial winter seasons, the 2021 rule set, the minimum annual period, ended and transferred
participations, and the validation of the new rule-table settings."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from prorate.baseline import Baseline
from prorate.calc import calculate, parse_request
from prorate.errors import ProrateError
from prorate.figures import ParticipationFacts, compute
from prorate.period import Period
from prorate.photo_window import ParticipationDates, end_window
from prorate.rounds import parse_round
from prorate.rules import RuleSet, RuleSetError, rule_set_for_season, rule_set_named
from prorate.season import season_enrolment, season_starting

R2021, R2022 = rule_set_named("seoul-2021"), rule_set_named("seoul-2022")
BASE = {"start_km": "40000", "baseline_daily_km": "30"}


def calc(**q: Any) -> dict[str, Any]:
    return calculate(parse_request({**BASE, **q})).report()


def refused(**q: Any) -> str:
    with pytest.raises(ProrateError) as e:
        calculate(parse_request({**BASE, **q}))
    return e.value.code


# -- 1. partial winter seasons ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "km", "code"),
    [
        # The cases: each earned 10,000 points before.
        ("2023-03-31", "2023-04-01", "40010", "season_start_outside_window"),
        ("2023-03-30", "2023-04-30", "40100", "season_start_outside_window"),
        ("2022-04-02", "2023-04-30", "45000", "season_start_outside_window"),
        # The start window's edges (1 November – 7 December of the season's year).
        ("2022-10-31", "2023-04-01", "41000", "season_start_outside_window"),
        ("2022-12-08", "2023-04-01", "41000", "season_start_outside_window"),
        # Started in the window but ended early: 103 and 108 of 121 days are under 90 %.
        ("2022-12-07", "2023-03-20", "41000", "season_coverage_too_low"),
        ("2022-12-07", "2023-03-25", "41000", "season_coverage_too_low"),
    ],
)
def test_partial_seasons_are_refused(start: str, end: str, km: str, code: str) -> None:
    assert refused(program="season", start_date=start, end_date=end, end_km=km) == code


@pytest.mark.parametrize(
    ("start", "end"),
    [("2022-11-01", "2023-04-01"), ("2022-12-07", "2023-04-01"), ("2022-12-07", "2023-03-26"), ("2022-11-30", "2023-04-30")],
)
def test_seasons_started_in_the_window_and_covered_enough_are_computed(start: str, end: str) -> None:
    # 109 of 121 days is 90.08 %: enough.
    assert calc(program="season", start_date=start, end_date=end, end_km="41000")["special_points"] == 10_000


def test_the_enrolment_deadline_is_the_rule_sets() -> None:
    season = season_starting(2022, R2022.season)  # type: ignore[arg-type]
    assert season.enrol_by == date(2022, 11, 30)
    assert season_enrolment(2022, R2022.season, date(2022, 11, 30)) == season
    with pytest.raises(ProrateError) as e:
        season_enrolment(2022, R2022.season, date(2022, 12, 1))
    assert e.value.code == "season_enrolment_closed" and "2022-11-30" in e.value.message
    late = R2022.model_copy(update={"season": R2022.season.model_copy(update={"enrol_by": R2022.season.enrol_by.model_validate("12-03")})})  # type: ignore[union-attr]
    assert season_enrolment(2022, late.season, date(2022, 12, 2)).starts == date(2022, 12, 1)
    # A round refuses a participation enrolled after the deadline (created by other means).
    with pytest.raises(ProrateError) as e:
        _season_compute(enrolled_on=date(2022, 12, 1))
    assert e.value.code == "season_enrolled_late"
    assert _season_compute(enrolled_on=date(2022, 11, 30)).special_points == 10_000


def _season_compute(enrolled_on: date) -> Any:
    return compute(
        program="season", rules=R2022, period=Period(date(2022, 11, 30), date(2023, 4, 1)),
        start_odometer_m=0, end_odometer_m=1_000_000, baseline=None, season_year=2022,
        participation=ParticipationFacts(enrolled_on=enrolled_on), round_first_day=date(2023, 5, 1),
    )


def test_the_season_rule_set_is_the_one_in_force_when_the_season_starts() -> None:
    assert rule_set_for_season(2021).name == "seoul-2021"
    assert rule_set_for_season(2022).name == "seoul-2022"
    assert rule_set_for_season(2025).name == "seoul-2025-07"
    assert rule_set_for_season(2026).name == "seoul-2026"
    with pytest.raises(RuleSetError):
        rule_set_for_season(2020)


@given(st.integers(0, 45), st.integers(-20, 29), st.integers(0, 5_000_000))
def test_a_computed_season_covers_at_least_the_minimum_share(ds: int, de: int, actual_m: int) -> None:
    start, end = date(2023, 10, 20) + timedelta(days=ds), date(2024, 4, 1) + timedelta(days=de)
    try:
        f = compute(program="season", rules=R2022, period=Period(start, end), start_odometer_m=0,
                    end_odometer_m=actual_m, baseline=None, season_year=2023)
    except ProrateError as e:
        assert e.code in ("season_start_outside_window", "season_coverage_too_low")
        return
    assert f.season is not None
    assert Period(start, end).overlap_days(f.season.starts, f.season.ends) * 100 >= 90 * f.season.days
    assert date(2023, 11, 1) <= start <= date(2023, 12, 7)


# -- 3. the 2021 rule set: no day-proration, end data within 10 days, six rounds ------------


def test_a_2021_annual_period_compares_with_the_scheduled_year() -> None:
    # 375 days between the readings (the end photo 10 days late): the baseline is still the year's.
    r = calc(program="annual", start_date="2021-03-01", end_date="2022-03-11", end_km="49000")
    assert (r["rules"], r["days"], r["baseline_days"]) == ("seoul-2021", 375, 365)
    assert (r["baseline_km"], r["actual_km"], r["reduction_km"]) == (10950.0, 9000.0, 1950.0)
    assert (r["reduction_rate_pct"], r["points"], r["tier_by"]) == (17.81, 30_000, "rate_and_amount")
    # The same readings under day-proration (2022 plan): 375 days of baseline.
    r22 = calc(program="annual", start_date="2021-03-01", end_date="2022-03-11", end_km="49000", rules="seoul-2022")
    assert (r22["baseline_km"], r22["reduction_km"], "baseline_days" in r22) == (11250.0, 2250.0, False)


@pytest.mark.parametrize(
    ("end", "code"),
    [
        ("2022-03-01", None),  # the scheduled end
        ("2022-03-11", None),  # the 10th day after it
        ("2022-03-12", "period_end_outside_window"),
        ("2022-02-28", "period_too_short"),  # 364 days: before the scheduled end
    ],
)
def test_2021_end_data_within_10_days(end: str, code: str | None) -> None:
    q = {"program": "annual", "start_date": "2021-03-01", "end_date": end, "end_km": "49000"}
    if code is None:
        r = calc(**q)
        assert r.get("baseline_days", r["days"]) == 365  # (named only where it differs from days)
    else:
        assert refused(**q) == code


def test_the_2021_22_season_is_not_prorated_and_ends_on_10_april() -> None:
    # 127 days measured, 1,800 km: earns (unprorated); 1,800.001 km does not.
    r = calc(program="season", start_date="2021-11-25", end_date="2022-04-01", end_km="41800")
    assert (r["rules"], r["season_km"], r["special_points"], r["days"]) == ("seoul-2021", 1800.0, 10_000, 127)
    assert r["baseline_days"] == 121  # the baseline (for the record) covers the season's days
    assert calc(program="season", start_date="2021-11-25", end_date="2022-04-01", end_km="41800.001")["special_points"] == 0
    assert calc(program="season", start_date="2021-11-25", end_date="2022-04-10", end_km="41000")["special_points"] == 10_000
    assert refused(program="season", start_date="2021-11-25", end_date="2022-04-11", end_km="41000") == "season_end_too_late"


def test_2021_rounds_and_photo_windows() -> None:
    assert parse_round("2021-07").rules().name == "seoul-2021"
    with pytest.raises(ProrateError):
        parse_round("2021-06")
    assert parse_round("2022-06").rules().name == "seoul-2022"
    p = ParticipationDates(program="annual", enrolled_on=date(2021, 3, 1), start_on=date(2021, 3, 1))
    assert end_window(p, R2021) == (date(2022, 3, 1), date(2022, 3, 11))
    assert end_window(p, R2022) == (date(2022, 3, 1), None)


# -- 4. the minimum annual period -------------------------------------------------------------


@pytest.mark.parametrize(("days", "ok"), [(1, False), (30, False), (334, False), (335, True), (400, True)])
def test_annual_periods_have_a_minimum_length(days: int, ok: bool) -> None:
    q = {"program": "annual", "start_date": "2022-03-01",
         "end_date": (date(2022, 3, 1) + timedelta(days=days)).isoformat(), "end_km": "40001"}
    if ok:
        assert calc(**q)["points"] == 70_000
    else:
        # The case: 1 day and 1 km gave 70,000 points.
        assert refused(**q) == "period_too_short"


# -- 5. ended and transferred participations --------------------------------------------------

PERIOD = Period(date(2022, 3, 1), date(2023, 3, 1))
ROUND_DAY = date(2023, 5, 1)


def _annual(facts: ParticipationFacts, rules: RuleSet = R2022) -> int | None:
    f = compute(program="annual", rules=rules, period=PERIOD, start_odometer_m=0, end_odometer_m=5_000_000,
                baseline=Baseline(method="override", daily_m_num=30_000, daily_m_den=1),
                participation=facts, round_first_day=ROUND_DAY)
    return f.points


@pytest.mark.parametrize(
    ("reason", "ended_on", "code"),
    [
        ("ownership_transfer", date(2023, 4, 30), "participation_transferred"),  # sold before the round
        ("ownership_transfer", date(2023, 5, 1), None),  # sold on the round's cutoff day: paid
        ("ownership_transfer", date(2023, 2, 1), "participation_ended_early"),  # sold before the end reading
        ("moved_out_of_seoul", date(2023, 2, 1), "participation_ended_early"),
        ("moved_out_of_seoul", date(2023, 4, 1), None),  # moved after the period: paid
        ("scrapped", date(2023, 3, 1), None),  # on the end reading's day
        ("withdrawn", date(2023, 2, 28), "participation_ended_early"),
        ("ownership_refused", date(2023, 4, 1), "participation_ownership_refused"),
    ],
)
def test_ended_participations(reason: str, ended_on: date, code: str | None) -> None:
    facts = ParticipationFacts(enrolled_on=date(2022, 3, 1), status="ended", ended_on=ended_on, end_reason=reason)
    if code is None:
        assert _annual(facts) == 70_000
    else:
        with pytest.raises(ProrateError) as e:
            _annual(facts)
        assert e.value.code == code


def test_paying_transferred_cars_is_a_rule_table_switch() -> None:
    facts = ParticipationFacts(status="ended", ended_on=date(2023, 4, 30), end_reason="ownership_transfer")
    paying = R2022.model_copy(update={"participations": R2022.participations.model_copy(update={"pay_transferred": True})})
    assert _annual(facts, paying) == 70_000
    assert _annual(ParticipationFacts()) == 70_000  # active


# -- rule-table validation --------------------------------------------------------------------


def _with(section: str, **changes: Any) -> dict[str, Any]:
    data = R2022.model_dump(mode="json")
    data[section] = {**data[section], **changes}
    return data


@pytest.mark.parametrize(
    ("section", "changes", "needle"),
    [
        ("season", {"start_window_opens": "12-08", "start_window_closes": "12-07"}, "start window"),
        ("season", {"start_window_closes": "01-05"}, "start window"),
        ("season", {"min_coverage_pct": 0}, "greater than 0"),
        ("season", {"max_km": "1800.05"}, "max_km"),
        ("periods", {"proration": "none"}, "annual_end_within_days"),
        ("periods", {"proration": "weeks"}, "proration"),
        ("periods", {"min_annual_days": 0}, "min_annual_days"),
    ],
)
def test_malformed_new_settings_are_refused(section: str, changes: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValidationError, match=needle):
        RuleSet(**_with(section, **changes))


def test_tier_bounds_must_be_reported_figures() -> None:
    data = R2022.model_dump(mode="json")
    data["tiers"][1]["km_from"] = "1000.05"
    with pytest.raises(ValidationError, match="multiples"):
        RuleSet(**data)
    data = R2022.model_dump(mode="json")
    data["tiers"][1]["rate_from_pct"] = "0.01"
    with pytest.raises(ValidationError, match="two reported steps"):
        RuleSet(**data)
    assert RuleSet(**R2022.model_dump(mode="json")) == R2022
    assert Decimal(R2022.tiers[1].rate_from_pct) == 10
