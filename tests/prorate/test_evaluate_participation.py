"""`evaluate_participation`: the one function behind `carmileage calc`, the benchmark's baseline
and the rounds' parity tests. The day a reading counts on, the order of the refusals, and that a
round's participation is refused only with a code the round knows (REFUSALS)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prorate.calc import calculate, parse_request
from prorate.calendar import SEOUL
from prorate.evaluate import (
    REFUSALS,
    CarHistory,
    Participation,
    PeriodReading,
    Refusal,
    evaluate_participation,
    reading_day,
)
from prorate.figures import PeriodFigures
from prorate.rules import all_rule_sets

NOON = datetime(2022, 3, 6, 12, tzinfo=SEOUL)
CAR = CarHistory(vehicle_id=7, first_registration_date=date(2015, 1, 1), district="강남구")


@pytest.mark.parametrize(
    ("basis", "day"), [("capture", date(2022, 3, 1)), ("upload", date(2022, 3, 3)), ("approval", date(2022, 3, 5))]
)
def test_a_photo_counts_on_the_rule_sets_day(basis: str, day: date) -> None:
    # 15:30 UTC on 28 February is 1 March in Seoul (as tests/evaluation/test_evaluation_rounds.py).
    kw = {"captured_at": datetime(2022, 2, 28, 15, 30, tzinfo=UTC), "uploaded_at": datetime(2022, 3, 3, 9, tzinfo=SEOUL),
          "approved_at": datetime(2022, 3, 5, 23, 59, tzinfo=SEOUL)}
    assert reading_day(source="photo", recorded_at=NOON, basis=basis, **kw) == day  # type: ignore[arg-type]
    assert reading_day(source="reviewer", recorded_at=NOON, basis=basis, **kw) == day  # type: ignore[arg-type]
    # A connected car's reading counts on the day it recorded it, whatever the basis.
    assert reading_day(source="telematics", recorded_at=NOON, basis=basis, **kw) == NOON.date()  # type: ignore[arg-type]
    # Without the basis's time (no EXIF), a photo counts on its recording.
    assert reading_day(source="photo", recorded_at=NOON, basis=basis) == NOON.date()  # type: ignore[arg-type]


def reading(on: date, km: int, **kw: object) -> PeriodReading:
    return PeriodReading.model_validate({"odometer_m": km * 1000, "on": on, "vehicle_id": 7, **kw})


def refusal(start: PeriodReading, end: PeriodReading, **kw: object) -> str:
    p = Participation.model_validate({"program": "annual", "rule_set": "seoul-2022", "enrolled_on": start.on, "car": CAR, **kw})
    result = evaluate_participation(p, start, end, round_first_day=date(2024, 5, 1))
    assert isinstance(result, Refusal), result
    assert result.code in REFUSALS and result.message
    return result.code


def test_refusals_come_in_the_rounds_order() -> None:
    s, e = date(2023, 1, 1), date(2024, 1, 1)
    assert refusal(reading(s, 10), reading(e, 5, vehicle_id=8, superseded=True), rule_set="seoul-1999") == "rules_unknown"
    assert refusal(reading(s, 10, superseded=True), reading(e, 5, vehicle_id=8)) == "reading_of_another_car"
    assert refusal(reading(s, 10, superseded=True), reading(s, 5, superseded=True)) == "start_reading_superseded"
    assert refusal(reading(s, 10), reading(s, 5, superseded=True)) == "end_reading_superseded"
    assert refusal(reading(e, 10), reading(s, 5)) == "end_before_start"
    assert refusal(reading(s, 10), reading(s, 5)) == "empty_period"
    assert refusal(reading(s, 10), reading(e, 5)) == "odometer_decreased"
    assert refusal(reading(s, 10), reading(s + timedelta(days=30), 11)) == "period_too_short"
    assert refusal(reading(s, 10), reading(e, 11), status="ended", ended_on=date(2023, 12, 1),
                   end_reason="moved_out_of_seoul") == "participation_ended_early"
    assert refusal(reading(s, 10), reading(e, 11), status="ended", ended_on=date(2024, 2, 1),
                   end_reason="ownership_transfer") == "participation_transferred"


def test_calc_answers_with_the_same_function() -> None:
    """A question to `calc` is a participation of a car without identity, outside any round."""
    figures = calculate(parse_request({
        "program": "annual", "start_date": "2022-03-01", "start_km": "45000", "end_date": "2023-03-05",
        "end_km": "53000.5", "first_registration_date": "2018-03-01",
    }))
    direct = evaluate_participation(
        Participation(program="annual", car=CarHistory(first_registration_date=date(2018, 3, 1))),
        PeriodReading(odometer_m=45_000_000, on=date(2022, 3, 1)),
        PeriodReading(odometer_m=53_000_500, on=date(2023, 3, 5)),
    )
    assert direct == figures and figures.rules == "seoul-2022"
    assert (figures.points, figures.reported().reduction_km) == (70_000, Decimal("3365.0"))


RULE_SETS = all_rule_sets()


@st.composite
def round_inputs(draw: st.DrawFn) -> tuple[Participation, PeriodReading, PeriodReading]:
    """Anything a round may hold: every rule set, either program, readings anywhere around a year
    or a season apart, the car's facts as the database allows them (a registration, a district)."""
    rules = draw(st.sampled_from(RULE_SETS))
    season = rules.season is not None and draw(st.booleans())
    year = rules.effective_from.year
    s = draw(st.dates(date(year, 1, 1), date(year + 1, 12, 31)))
    e = s + timedelta(days=draw(st.one_of(st.integers(-3, 40), st.integers(100, 140), st.integers(330, 380))))
    start_m = draw(st.integers(0, 300_000_000))
    end_m = max(0, start_m + draw(st.integers(-1_000, 30_000_000)))
    reg = s - timedelta(days=draw(st.integers(0, 6000)))
    used = draw(st.booleans())
    acq = reg + timedelta(days=draw(st.integers(-3, 400))) if used else None
    ended = draw(st.sampled_from([None, "ownership_transfer", "moved_out_of_seoul", "ownership_refused"]))
    participation = Participation(
        program="season" if season else "annual",
        rule_set=rules.name,
        season_year=draw(st.sampled_from([s.year - 1, s.year])) if season else None,
        enrolled_on=s - timedelta(days=draw(st.integers(0, 30))),
        status="ended" if ended else "active",
        ended_on=e + timedelta(days=draw(st.integers(-5, 40))) if ended else None,
        end_reason=ended,
        baseline_daily_km=draw(st.one_of(st.none(), st.decimals(0, 80, places=4))),
        car=CarHistory(
            vehicle_id=1, first_registration_date=reg, acquired_date=acq,
            acquired_odometer_m=draw(st.integers(0, start_m + 1000)) if used else None,
            district=draw(st.sampled_from(["강남구", "노원구", "해운대구"])),
        ),
    )
    return participation, PeriodReading(odometer_m=start_m, on=s, vehicle_id=1), PeriodReading(odometer_m=end_m, on=e, vehicle_id=1)


@settings(max_examples=300, deadline=None)
@given(round_inputs(), st.dates(date(2021, 1, 1), date(2028, 12, 1)))
def test_a_round_refuses_only_with_a_code_it_knows(inputs: tuple[Participation, PeriodReading, PeriodReading], day: date) -> None:
    result = evaluate_participation(*inputs, round_first_day=day.replace(day=1))
    assert isinstance(result, PeriodFigures) or result.code in REFUSALS, result
