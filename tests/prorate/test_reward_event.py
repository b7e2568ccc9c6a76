"""The reward calculator's contract (`prorate.reward_event`): the checked-in JSON Schema is the
model's, and every event built from the period rules' results serialises to a document that
validates against it, with its figures as exact JSON numbers. (What a real round sends is held
to the same model in tests/evaluation/parity.py.)"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from uuid import UUID

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prorate.evaluate import CarHistory, Participation, PeriodReading, evaluate_participation
from prorate.figures import PeriodFigures
from prorate.period import add_months
from prorate.reward_event import (
    SCHEMA_VERSION,
    PeriodResultEvent,
    ReadingEvidence,
    json_schema,
    json_schema_text,
    period_result_event,
)
from prorate.rules import all_rule_sets
from prorate.season import season_starting

RULE_SETS = all_rule_sets()
SCHEMA_FILE = Path(__file__).resolve().parents[2] / "docs" / "reward-calculator.schema.json"
VALIDATOR = jsonschema.Draft202012Validator(json_schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def test_the_checked_in_schema_is_the_models() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == json_schema_text(), (
        "regenerate it: .venv/bin/python -m prorate.reward_event > docs/reward-calculator.schema.json"
    )
    jsonschema.Draft202012Validator.check_schema(json_schema())


instants = st.datetimes(datetime(2020, 1, 1), datetime(2030, 1, 1), timezones=st.just(UTC))


@st.composite
def evidence(draw: st.DrawFn, reading: PeriodReading) -> ReadingEvidence:
    photo = draw(st.booleans())
    return ReadingEvidence(
        id=draw(st.integers(1, 2**62)), source="photo" if photo else "telematics", odometer_m=reading.odometer_m,
        status=draw(st.sampled_from(["verified", "superseded"])), recorded_at=draw(instants),
        captured_at=draw(st.one_of(st.none(), instants)) if photo else None,
        uploaded_at=draw(instants) if photo else None, approved_at=draw(st.one_of(st.none(), instants)),
        verified_at=draw(instants), provider_id=None if photo else draw(st.integers(1, 1000)),
        provider_event_id=None if photo else draw(st.text(min_size=1, max_size=40)),
        submission_id=draw(st.integers(1, 10**9)) if photo else None,
    )


@st.composite
def paid_inputs(draw: st.DrawFn) -> tuple[Participation, PeriodReading, PeriodReading]:
    """Participations the rules pay under every rule set: annual periods of an acceptable length
    (in the end window where there is one), seasons started in their window and covering them,
    every way of deriving the baseline, distances anywhere from none to far beyond it."""
    rules = draw(st.sampled_from(RULE_SETS))
    year = rules.effective_from.year + draw(st.integers(0, 1))
    if rules.season is not None and draw(st.booleans()):
        season = season_starting(year, rules.season)
        s = draw(st.dates(season.start_opens, season.start_closes))
        e = draw(st.dates(season.ends - timedelta(days=5), season.end_data_by))
        program, season_year, enrolled = "season", year, season.enrol_by
    else:
        s = draw(st.dates(date(year, 1, 1), date(year, 12, 31)))
        scheduled = add_months(s, rules.periods.annual_months)
        within = rules.periods.annual_end_within_days
        e = draw(st.dates(scheduled, scheduled + timedelta(days=within)) if within is not None
                 else st.dates(s + timedelta(days=rules.periods.min_annual_days), scheduled + timedelta(days=30)))
        program, season_year, enrolled = "annual", None, s
    start_m = draw(st.integers(0, 300_000_000))
    reg = s - timedelta(days=draw(st.integers(0, 6000)))
    used = draw(st.booleans()) and (s - reg).days > 10
    acq = reg + timedelta(days=draw(st.integers(0, (s - reg).days))) if used else None
    participation = Participation(
        program=program, rule_set=rules.name, season_year=season_year, enrolled_on=enrolled,
        baseline_daily_km=draw(st.one_of(st.none(), st.decimals(0, 80, places=4))),
        car=CarHistory(vehicle_id=1, first_registration_date=reg, acquired_date=acq,
                       acquired_odometer_m=draw(st.integers(0, start_m)) if used else None,
                       district=draw(st.sampled_from(["강남구", "노원구", "종로구"]))),
    )
    end_m = start_m + draw(st.one_of(st.integers(0, 3_000_000), st.integers(0, 40_000_000)))
    return participation, PeriodReading(odometer_m=start_m, on=s, vehicle_id=1), PeriodReading(odometer_m=end_m, on=e, vehicle_id=1)


@settings(max_examples=300, deadline=None)
@given(paid_inputs(), st.data())
def test_every_result_serialises_to_a_valid_exact_document(
    inputs: tuple[Participation, PeriodReading, PeriodReading], data: st.DataObject
) -> None:
    participation, start, end = inputs
    figures = evaluate_participation(*inputs, round_first_day=date(end.on.year + 1, 1, 1))
    assert isinstance(figures, PeriodFigures), figures
    event = period_result_event(
        figures,
        event_id=data.draw(st.uuids()), supersedes=data.draw(st.one_of(st.none(), st.uuids())),
        participation_id=data.draw(st.integers(1, 2**62)), version=data.draw(st.integers(1, 9)),
        round_name="2024-05", vehicle_id=1, owner_id=data.draw(st.text(min_size=1, max_size=30)),
        district="강남구", start_reading=data.draw(evidence(start)), end_reading=data.draw(evidence(end)),
    )
    body = event.model_dump_json()
    VALIDATOR.validate(json.loads(body))
    assert PeriodResultEvent.model_validate_json(body) == event
    doc = json.loads(body, parse_float=Decimal)
    r = figures.reported()
    # The figures travel as JSON numbers with exactly their reported digits.
    assert (doc["baseline_daily_km"], doc["baseline_km"], doc["actual_km"], doc["reduction_km"], doc["reduction_rate_pct"]) == (
        r.baseline_daily_km, r.baseline_km, r.actual_km, r.reduction_km, r.reduction_rate_pct)
    assert doc["schema_version"] == SCHEMA_VERSION
    assert ("baseline_days" in doc) == (figures.baseline_days != figures.days)
    assert (doc["season"] is None) == (participation.program == "annual")
    if doc["season"] is not None:
        assert doc["season"]["km"] == r.season_km and doc["points"] == 0 and doc["tier_by"] is None
    else:
        assert doc["special_points"] == 0 and doc["tier_by"] is not None


def test_the_schema_refuses_what_the_contract_does_not_say() -> None:
    good = json.loads(period_result_event(
        _figures(), event_id=UUID(int=1), supersedes=None, participation_id=1, version=1, round_name="2024-05",
        vehicle_id=1, owner_id="o", district="강남구", start_reading=_reading(1, 0), end_reading=_reading(2, 9_000_000),
    ).model_dump_json())
    VALIDATOR.validate(good)
    for bad in (
        {k: v for k, v in good.items() if k != "schema_version"},
        {**good, "schema_version": 2},
        {**good, "points": "70000"},
        {**good, "baseline_days": None},
        {**good, "surprise": 1},
        {**good, "evidence": {**good["evidence"], "baseline": {**good["evidence"]["baseline"], "daily_m": {"numerator": 1.5, "denominator": 1}}}},
    ):
        with pytest.raises(jsonschema.ValidationError):
            VALIDATOR.validate(bad)


def test_a_figure_is_never_sent_as_a_binary_approximation() -> None:
    event = period_result_event(
        _figures(), event_id=UUID(int=1), supersedes=None, participation_id=1, version=1, round_name="2024-05",
        vehicle_id=1, owner_id="o", district="강남구", start_reading=_reading(1, 0), end_reading=_reading(2, 9_000_000),
    )
    with pytest.raises(ValueError, match="no exact JSON number"):
        event.model_copy(update={"actual_km": Decimal("0.12345678901234567890")}).model_dump_json()


def _figures() -> PeriodFigures:
    f = evaluate_participation(
        Participation(program="annual", car=CarHistory(first_registration_date=date(2015, 1, 1), district="강남구")),
        PeriodReading(odometer_m=0, on=date(2023, 1, 1)), PeriodReading(odometer_m=9_000_000, on=date(2024, 1, 1)),
    )
    assert isinstance(f, PeriodFigures)
    return f


def _reading(rid: int, odometer_m: int) -> ReadingEvidence:
    at = datetime(2023, 1, 1, 3, tzinfo=UTC)
    return ReadingEvidence(id=rid, source="telematics", odometer_m=odometer_m, status="verified", recorded_at=at,
                           captured_at=None, uploaded_at=None, approved_at=None, verified_at=at, provider_id=1,
                           provider_event_id="e", submission_id=None)
