"""The operator's question behind `carmileage calc`: a period's readings and one way of deriving
its baseline, answered by the period rules (`prorate.evaluate.evaluate_participation`).

`CalcRequest` is what `carmileage calc` parses from flags and JSON lines (km, dates, and exactly
one way of deriving the baseline); `calculate` checks the question itself and answers it with
the same function a round's results are held to.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from fractions import Fraction
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from prorate.districts import normalise_district
from prorate.errors import ProrateError
from prorate.evaluate import CarHistory, Participation, PeriodReading, evaluate_participation
from prorate.figures import PeriodFigures, Program
from prorate.period import Period, km_to_m
from prorate.rules import RuleSet, RuleSetError, rule_set_for, rule_set_named

# ---------------------------------------------------------------------------------------------
# The operator's request: `carmileage calc` flags or one JSON line of `--batch`.
# ---------------------------------------------------------------------------------------------


def _iso_date(v: object) -> object:
    """Only YYYY-MM-DD: a bare number must not be read as a Unix timestamp."""
    if isinstance(v, date):
        return v
    if not isinstance(v, str):
        raise ValueError("must be a date written YYYY-MM-DD")
    try:
        return date.fromisoformat(v.strip())
    except ValueError:
        raise ValueError(f"must be a date written YYYY-MM-DD, not {v!r}") from None


def _exact_number(v: object) -> object:
    if isinstance(v, bool) or isinstance(v, float):
        raise ValueError("must be an exact number (JSON number parsed exactly, or a string)")
    if isinstance(v, str):
        try:
            d = Decimal(v.strip())
        except ArithmeticError:
            raise ValueError(f"must be a number, not {v!r}") from None
        if not d.is_finite():
            raise ValueError(f"must be a finite number, not {v!r}")
        return d
    if isinstance(v, int | Decimal):
        if isinstance(v, Decimal) and not v.is_finite():
            raise ValueError("must be a finite number")
        return Decimal(v)
    raise ValueError("must be a number")


IsoDate = Annotated[date, BeforeValidator(_iso_date)]
Km = Annotated[Decimal, BeforeValidator(_exact_number)]


class CalcRequest(BaseModel):
    """One question: a period's readings and exactly one way of deriving the baseline.

    The baseline comes from `baseline_daily_km` (an operator's figure), or from
    `first_registration_date` (with `acquired_date` and `acquired_km` for a used car; `district`
    may accompany it and is then used only when the car's history is shorter than a year), or
    from `district` alone (a new car). A season question may omit the baseline.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    program: Program
    start_date: IsoDate
    start_km: Km
    end_date: IsoDate
    end_km: Km
    baseline_daily_km: Km | None = None
    first_registration_date: IsoDate | None = None
    acquired_date: IsoDate | None = None
    acquired_km: Km | None = None
    district: str | None = None
    rules: str | None = None


def parse_request(data: object) -> CalcRequest:
    """A request from a dict (a JSON line); ProrateError names every bad field in one message."""
    if not isinstance(data, dict):
        raise ProrateError("bad_request", "each line must be a JSON object")
    try:
        return CalcRequest.model_validate(data)
    except ValidationError as e:
        parts = []
        for err in e.errors():
            field = ".".join(str(x) for x in err["loc"]) or "input"
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown field"
            parts.append(f"{field}: {msg}")
        raise ProrateError("bad_request", "; ".join(parts)) from None


def _choose_rules(req: CalcRequest) -> RuleSet:
    try:
        return rule_set_named(req.rules) if req.rules else rule_set_for(req.start_date)
    except RuleSetError as e:
        raise ProrateError(e.code, e.message) from e


def calculate(req: CalcRequest, forced_rules: str | None = None) -> PeriodFigures:
    """Answer one request; raises ProrateError (with a clear message) for bad inputs."""
    if forced_rules and not req.rules:
        req = req.model_copy(update={"rules": forced_rules})
    rules = _choose_rules(req)
    period = Period(req.start_date, req.end_date)
    start_m = km_to_m(req.start_km, "start_km")
    end_m = km_to_m(req.end_km, "end_km")
    if end_m < start_m:
        raise ProrateError(
            "odometer_decreased", f"end_km ({req.end_km}) is below start_km ({req.start_km})"
        )
    has_override = req.baseline_daily_km is not None
    has_history = req.first_registration_date is not None
    has_acquisition = req.acquired_date is not None or req.acquired_km is not None
    if has_override and (has_history or has_acquisition or req.district is not None):
        raise ProrateError(
            "baseline_contradictory",
            "give either baseline_daily_km or the car's registration facts (first_registration_date "
            "/ acquired_date / acquired_km / district), not both",
        )
    if has_acquisition and not has_history:
        raise ProrateError(
            "baseline_contradictory",
            "acquired_date and acquired_km describe a used car: give first_registration_date too",
        )
    if req.district is not None:
        normalise_district(req.district)  # a misspelt district is an error even when unused
    if not (has_override or has_history or req.district is not None) and req.program == "annual":
        raise ProrateError(
            "baseline_missing",
            "no baseline inputs: give one of baseline_daily_km, first_registration_date or district",
        )
    participation = Participation(
        program=req.program,
        rule_set=rules.name,
        baseline_daily_km=req.baseline_daily_km,
        car=CarHistory(
            first_registration_date=req.first_registration_date,
            acquired_date=req.acquired_date,
            acquired_odometer_m=km_to_m(req.acquired_km, "acquired_km") if req.acquired_km is not None else None,
            district=req.district,
        ),
    )
    result = evaluate_participation(
        participation,
        PeriodReading(odometer_m=start_m, on=period.start),
        PeriodReading(odometer_m=end_m, on=period.end),
        rules=rules,
    )
    if not isinstance(result, PeriodFigures):
        raise ProrateError(result.code, result.message)
    return result


def fraction_str(x: Fraction | None) -> str | None:
    """An exact value as 'p/q' (or 'p'), for evidence that must be recomputable."""
    return None if x is None else str(x)
