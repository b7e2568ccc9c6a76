"""One participation's period result, or why it is refused: the period rules in one pure function.

`evaluate_participation` takes what is known of a participation (its car's registration facts,
its own conditions, its rule set), its start and end readings and, for a round, the round's first
day, and returns the period result's figures (`PeriodFigures`) or the reason it cannot or must
not be paid (`Refusal`), checking in the order the round does. `carmileage calc`, the benchmark's
per-participation baseline and the SQL-parity tests call it; the round's SQL (storage.evaluation)
states the same rules for a million participations at once (Python per participation would be
far slower), and the parity tests hold the two equal participation by participation.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from prorate.baseline import Baseline, BaselineFacts, derive_baseline
from prorate.errors import ProrateError
from prorate.figures import ParticipationFacts, PeriodFigures, Program, compute
from prorate.period import Period, report_km, seoul_date
from prorate.rules import RuleSet, RuleSetError, rule_set_for, rule_set_named

ReadingSource = Literal["telematics", "photo", "reviewer"]
PhotoDateBasis = Literal["capture", "upload", "approval"]

#: Every reason a round refuses a participation, with the sentence it records for it (in the
#: order the checks run). `evaluate_participation` gives the same codes with a specific message.
REFUSALS: dict[str, str] = {
    # the inputs cannot be computed
    "rules_unknown": "the participation's rule set is unknown",
    "reading_of_another_car": "the start or end reading belongs to another car",
    "start_reading_superseded": "the start reading was superseded; the participation must point at its correction",
    "end_reading_superseded": "the end reading was superseded; the participation must point at its correction",
    "end_before_start": "the end reading's date is before the start reading's",
    "empty_period": "the start and end readings fall on the same date",
    "odometer_decreased": "the end odometer is below the start odometer",
    "baseline_contradictory": "the car's registration facts contradict each other (registration, acquisition, odometer)",
    "district_unknown": "the car has less than a year of history and its district has no published average",
    "season_not_in_rules": "the rule set has no winter season special points",
    "season_no_overlap": "the readings do not overlap the participation's season",
    "season_several": "the readings span more than one winter season",
    "season_end_too_late": "the end reading is after the season's end-data deadline",
    # the rule set refuses to pay
    "period_too_short": "the period is shorter than the rule set's minimum for an annual result",
    "period_end_outside_window": "the end reading is not within the rule set's window after the scheduled end",
    "season_enrolled_late": "enrolled after the season's enrolment deadline",
    "season_start_outside_window": "the start reading is outside the season's start window",
    "season_coverage_too_low": "the readings cover too little of the season (never extrapolated from a few days)",
    "participation_ownership_refused": "the member's ownership of the car was refused: never paid",
    "participation_ended_early": "the participation ended before its end reading",
    "participation_transferred": "the car's ownership was transferred before the round: a transferred car is not paid",
}


def reading_day(
    *,
    source: ReadingSource,
    recorded_at: datetime,
    basis: PhotoDateBasis,
    captured_at: datetime | None = None,
    uploaded_at: datetime | None = None,
    approved_at: datetime | None = None,
) -> date:
    """The Seoul date a reading counts on: a connected car's, the day it recorded it; a photo's (or
    a reviewer's), the day of the rule set's `photo_date_basis`, its recording when that is unknown."""
    if source == "telematics":
        return seoul_date(recorded_at)
    chosen = {"capture": captured_at, "upload": uploaded_at, "approval": approved_at}[basis]
    return seoul_date(chosen if chosen is not None else recorded_at)


class PeriodReading(BaseModel):
    """A start or end reading as the period rules see it: its odometer and the day it counts on
    (`reading_day`), and for a round its identity (whose car, still verified)."""

    model_config = ConfigDict(frozen=True)

    odometer_m: int = Field(ge=0)
    on: date
    id: int | None = None
    vehicle_id: int | None = None
    #: A reading a correction replaced (`readings.status = 'superseded'`).
    superseded: bool = False


class CarHistory(BaseModel):
    """The car's registration facts its baseline is derived from; all unknown for a question to
    `calc` that gives the baseline another way."""

    model_config = ConfigDict(frozen=True)

    vehicle_id: int | None = None
    first_registration_date: date | None = None
    acquired_date: date | None = None
    acquired_odometer_m: int | None = None
    district: str | None = None


class Participation(ParticipationFacts):
    """A participation as its period result is decided: program, rule set (None: the one in force
    on the start reading's day), season, an operator's baseline and the car."""

    program: Program
    rule_set: str | None = None
    season_year: int | None = None
    #: An operator's daily average (km/day), overriding every formula.
    baseline_daily_km: Decimal | None = None
    car: CarHistory = CarHistory()


class Refusal(BaseModel):
    """Why a participation's period is not paid: a code (`REFUSALS`) and a sentence for people."""

    model_config = ConfigDict(frozen=True)

    code: str
    message: str


def evaluate_participation(
    participation: Participation,
    start: PeriodReading,
    end: PeriodReading,
    *,
    round_first_day: date | None = None,
    rules: RuleSet | None = None,
) -> PeriodFigures | Refusal:
    """The period result of `participation` between `start` and `end`, or its refusal.

    `rules` forces a rule set (`calc --rules`); otherwise the participation's, else the one in
    force on the start reading's day. `round_first_day` is the evaluating round's (a transfer
    before it is not paid); without it (a question to `calc`) no transfer is judged.
    """
    try:
        return _evaluate(participation, start, end, round_first_day, rules)
    except ProrateError as e:
        return Refusal(code=e.code, message=e.message)


def _evaluate(
    p: Participation, start: PeriodReading, end: PeriodReading, round_first_day: date | None, rules: RuleSet | None
) -> PeriodFigures:
    if rules is None:
        try:
            rules = rule_set_named(p.rule_set) if p.rule_set is not None else rule_set_for(start.on)
        except RuleSetError as e:
            raise ProrateError(e.code, e.message) from e
    car = p.car.vehicle_id
    if car is not None and any(r.vehicle_id is not None and r.vehicle_id != car for r in (start, end)):
        raise ProrateError("reading_of_another_car", "the start or end reading belongs to another car")
    for stage, r in (("start", start), ("end", end)):
        if r.superseded:
            raise ProrateError(
                f"{stage}_reading_superseded",
                f"the {stage} reading{f' {r.id}' if r.id is not None else ''} was superseded; "
                "the participation must point at its correction",
            )
    period = Period(start.on, end.on)
    if end.odometer_m < start.odometer_m:
        raise ProrateError(
            "odometer_decreased",
            f"the end odometer ({report_km(end.odometer_m)} km) is below the start odometer "
            f"({report_km(start.odometer_m)} km)",
        )
    return compute(
        program=p.program,
        rules=rules,
        period=period,
        start_odometer_m=start.odometer_m,
        end_odometer_m=end.odometer_m,
        baseline=_baseline(p, period, start.odometer_m, rules),
        season_year=p.season_year,
        participation=p,
        round_first_day=round_first_day,
    )


def _baseline(p: Participation, period: Period, start_odometer_m: int, rules: RuleSet) -> Baseline | None:
    """The baseline from the participation's override or its car's facts; None when nothing is
    known (a season question may omit it; an annual period is then refused by `compute`)."""
    c = p.car
    known = (c.first_registration_date, c.acquired_date, c.acquired_odometer_m, c.district, p.baseline_daily_km)
    if all(x is None for x in known):
        return None
    return derive_baseline(
        BaselineFacts(
            start_date=period.start,
            start_odometer_m=start_odometer_m,
            first_registration_date=c.first_registration_date,
            acquired_date=c.acquired_date,
            acquired_odometer_m=c.acquired_odometer_m,
            district=c.district,
            override_daily_km=p.baseline_daily_km,
        ),
        rules.baseline,
    )
