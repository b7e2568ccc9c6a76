"""The bounds of a connected car's period and the choice of its start and end readings."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from prorate.calendar import seoul_date
from prorate.errors import ProrateError
from prorate.period import add_months
from prorate.period_bounds import (
    Candidate,
    Consent,
    PeriodBounds,
    choose_end,
    choose_start,
    connected_for_end,
    connected_for_start,
    period_bounds,
    seoul_midnight,
)
from prorate.rules import RuleSet, all_rule_sets, rule_set_named

RULES = rule_set_named("seoul-2022")


@pytest.mark.parametrize(
    ("enrolled_on", "last_day", "end_from"),
    [
        (date(2022, 3, 15), date(2023, 3, 15), date(2023, 3, 23)),
        # 29 February: the same date a year later does not exist, so the month's last day.
        (date(2024, 2, 29), date(2025, 2, 28), date(2025, 3, 8)),
        (date(2022, 12, 31), date(2023, 12, 31), date(2024, 1, 8)),
    ],
)
def test_annual_bounds(enrolled_on: date, last_day: date, end_from: date) -> None:
    b = period_bounds("annual", enrolled_on, None, RULES)
    assert (b.first_day, b.last_day, b.end_designated_from) == (enrolled_on, last_day, end_from)


@pytest.mark.parametrize(
    ("season_year", "last_day"),
    [(2022, date(2023, 3, 31)), (2023, date(2024, 3, 31))],
)
def test_season_bounds(season_year: int, last_day: date) -> None:
    # The enrolment date does not matter: the season is the same for everybody.
    b = period_bounds("season", date(2022, 10, 3), season_year, RULES)
    assert (b.first_day, b.last_day) == (date(season_year, 12, 1), last_day)
    assert b.end_designated_from == date(season_year + 1, 4, 8)  # before the May round
    assert b.ends_at == seoul_midnight(date(season_year + 1, 4, 1))


def test_a_season_the_rules_lack_is_refused() -> None:
    with pytest.raises(ProrateError) as e:
        period_bounds("season", date(2022, 11, 1), None, RULES)
    assert e.value.code == "season_not_in_rules"
    without = RULES.model_copy(update={"season": None})
    with pytest.raises(ProrateError):
        period_bounds("season", date(2022, 11, 1), 2022, without)


def test_every_rule_set_has_twelve_month_periods() -> None:
    for r in all_rule_sets():
        assert r.periods.annual_months == r.photo_windows.annual_end_opens_after_months == 12


def test_a_settling_time_past_the_season_deadline_is_refused() -> None:
    data = RULES.model_dump()
    data["periods"]["end_settle_days"] = 31  # 1 April + 31 days is after 1 May
    with pytest.raises(ValidationError, match="end_settle_days"):
        RuleSet(**data)
    data["periods"]["end_settle_days"] = 30
    assert RuleSet(**data).periods.end_settle_days == 30


def test_an_ended_participation_had_its_period_only_when_it_ended_after_the_last_day() -> None:
    b = period_bounds("annual", date(2022, 3, 15), None, RULES)
    assert b.complete_before(None) and b.complete_before(date(2023, 3, 16))
    assert not b.complete_before(date(2023, 3, 15))


def test_consents() -> None:
    b = period_bounds("annual", date(2022, 3, 15), None, RULES)
    at = datetime(2023, 4, 1, tzinfo=UTC)

    def c(g: tuple[int, int, int], w: tuple[int, int, int] | None = None) -> list[Consent]:
        return [Consent(datetime(*g, tzinfo=UTC), datetime(*w, tzinfo=UTC) if w else None)]

    assert connected_for_start(c((2020, 1, 1)), b, at) and connected_for_end(c((2020, 1, 1)), b)
    assert connected_for_start(c((2020, 1, 1), (2022, 9, 1)), b, at)
    assert not connected_for_end(c((2020, 1, 1), (2022, 9, 1)), b)
    assert not connected_for_start(c((2020, 1, 1), (2022, 3, 1)), b, at)
    assert not connected_for_start(c((2023, 3, 20)), b, at) and not connected_for_end(c((2023, 3, 20)), b)
    assert not connected_for_start(c((2022, 6, 1), (2022, 6, 1)), b, at)  # never in force
    assert not connected_for_start([], b, at)


# -- properties of the choice --------------------------------------------------------------

BOUNDS = period_bounds("annual", date(2022, 3, 15), None, RULES)
T0 = datetime(2022, 2, 1, tzinfo=UTC)
HORIZON_H = 24 * 480


@st.composite
def readings(draw: st.DrawFn) -> list[Candidate]:
    hours = draw(st.lists(st.integers(0, HORIZON_H), max_size=25, unique=True))
    lags = draw(st.lists(st.integers(0, 24 * 60), min_size=len(hours), max_size=len(hours)))
    return [
        Candidate(i + 1, T0 + timedelta(hours=h), T0 + timedelta(hours=h + lag))
        for i, (h, lag) in enumerate(zip(hours, lags, strict=True))
    ]


moments = st.integers(0, HORIZON_H + 24 * 90).map(lambda h: T0 + timedelta(hours=h))


def in_period(r: Candidate, b: PeriodBounds) -> bool:
    return b.starts_at <= r.recorded_at < b.ends_at


@settings(max_examples=300, deadline=None)
@given(readings(), moments)
def test_the_start_is_the_earliest_known_reading_of_the_period(rs: list[Candidate], at: datetime) -> None:
    s = choose_start(rs, BOUNDS, at)
    known = [r for r in rs if r.verified_at <= at and in_period(r, BOUNDS)]
    assert (s is None) == (not known)
    if s is not None:
        assert in_period(s, BOUNDS) and s.verified_at <= at
        assert all(s.recorded_at <= r.recorded_at for r in known)


@settings(max_examples=300, deadline=None)
@given(readings(), moments)
def test_the_end_is_the_latest_reading_of_the_period_after_the_start_day(rs: list[Candidate], at: datetime) -> None:
    s = choose_start(rs, BOUNDS, at)
    if s is None:
        return
    e = choose_end(rs, s, BOUNDS, at)
    if at < BOUNDS.end_designated_at:
        assert e is None
        return
    if e is not None:
        assert in_period(e, BOUNDS) and e.verified_at <= at
        # A period needs a day: the end lies on a later date than the start.
        assert seoul_date(e.recorded_at) > seoul_date(s.recorded_at)
        assert all(r.recorded_at <= e.recorded_at for r in rs if r.verified_at <= at and in_period(r, BOUNDS))


@settings(max_examples=300, deadline=None)
@given(readings(), moments, st.integers(1, 24 * 90))
def test_readings_outside_the_period_or_not_yet_known_change_nothing(
    rs: list[Candidate], at: datetime, late_h: int
) -> None:
    s = choose_start(rs, BOUNDS, at)
    e = choose_end(rs, s, BOUNDS, at) if s else None
    extra = [
        Candidate(1000, BOUNDS.ends_at + timedelta(hours=late_h % 48), BOUNDS.ends_at),  # after the last day
        Candidate(1001, BOUNDS.starts_at - timedelta(hours=1 + late_h), T0),  # before the first day
        Candidate(1002, BOUNDS.starts_at + timedelta(hours=late_h), at + timedelta(seconds=1)),  # unknown at `at`
    ]
    s2 = choose_start(rs + extra, BOUNDS, at)
    assert s2 == s
    assert (choose_end(rs + extra, s2, BOUNDS, at) if s2 else None) == e


@settings(max_examples=200, deadline=None)
@given(readings(), st.integers(0, 24 * 200))
def test_once_settled_the_end_does_not_depend_on_when_it_is_designated(rs: list[Candidate], wait_h: int) -> None:
    """With every reading known, designating later picks the same end: the choice is final."""
    first = max([BOUNDS.end_designated_at, *(r.verified_at for r in rs)])
    later = first + timedelta(hours=wait_h)
    s = choose_start(rs, BOUNDS, first)
    if s is None:
        return
    assert choose_end(rs, s, BOUNDS, first) == choose_end(rs, s, BOUNDS, later)


@settings(max_examples=200, deadline=None)
@given(st.dates(date(2022, 1, 1), date(2030, 12, 31)), st.integers(1, 36), st.integers(0, 30))
def test_annual_bounds_follow_the_rule_table(enrolled_on: date, months: int, settle: int) -> None:
    rules = RULES.model_copy(
        update={"periods": RULES.periods.model_copy(update={"annual_months": months, "end_settle_days": settle})}
    )
    b = period_bounds("annual", enrolled_on, None, rules)
    assert b.last_day == add_months(enrolled_on, months)
    assert 28 * months <= (b.last_day - b.first_day).days <= 31 * months
    assert (b.end_designated_from - b.last_day).days == 1 + settle
    assert b.starts_at < b.ends_at <= b.end_designated_at
