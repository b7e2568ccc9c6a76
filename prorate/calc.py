"""The per-period computation behind `carmileage calc` and the evaluation rounds.

`compute()` takes a period's two odometer readings and a baseline and returns every figure of a
period result, exactly. `CalcRequest` is the operator's view of the same inputs (km, dates, and one
way of deriving the baseline) and is what `carmileage calc` parses from flags and JSON lines.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from prorate.baseline import Baseline, BaselineFacts, derive_baseline
from prorate.display import Cut, bands_km, bands_pct, bands_season_km, shown
from prorate.districts import normalise_district
from prorate.errors import ProrateError
from prorate.period import KM_PLACES, PCT_PLACES, Period, add_months, km_to_m, report_km
from prorate.rules import RuleSet, RuleSetError, rule_set_for, rule_set_named
from prorate.season import (
    Season,
    check_period_in_season,
    check_season_rules,
    season_for_period,
    season_m,
    season_starting,
    special_points,
)
from prorate.tiers import TierBasis, decide_points

Program = Literal["annual", "season"]


class PeriodFigures(BaseModel):
    """Every figure of one period, exact where decisions are taken and rounded for reports."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    program: Program
    rules: str
    start_date: date
    end_date: date
    days: int
    #: The days the baseline covers: `days` under day-proration, else the scheduled period's
    #: (an annual period's `annual_months`, a season's days).
    baseline_days: int
    start_odometer_m: int
    end_odometer_m: int
    actual_m: int
    baseline: Baseline | None
    #: Exact values (None without a baseline).
    baseline_m: Fraction | None
    reduction_m: Fraction | None
    #: reduction / baseline; None without a baseline or when the baseline is zero.
    reduction_rate: Fraction | None
    points: int | None
    tier_by: TierBasis | None
    tier: int | None
    season: Season | None
    season_m: Fraction | None
    special_points: int | None
    #: The rule set's bands, so that reported figures stay in their tier (prorate.display).
    bands: Bands

    def report(self) -> dict[str, Any]:
        """The figures as reported (km to 0.1, % to 0.01, half up, kept inside their tier by
        `prorate.display`); JSON-ready, numbers as numbers."""

        def num(d: Decimal | None) -> float | None:
            # Already rounded exactly; the float only carries the printed digits into JSON.
            return None if d is None else float(d)

        b = self.bands
        out: dict[str, Any] = {
            "program": self.program,
            "rules": self.rules,
            "start_date": self.start_date.isoformat(),
            "end_date": self.end_date.isoformat(),
            "days": self.days,
            "baseline_km": num(report_km(self.baseline_m)) if self.baseline_m is not None else None,
            "actual_km": num(report_km(self.actual_m)),
            "reduction_km": (
                num(shown(self.reduction_m / 1000, KM_PLACES, b.km)) if self.reduction_m is not None else None
            ),
            "reduction_rate_pct": (
                num(shown(self.reduction_rate * 100, PCT_PLACES, b.pct)) if self.reduction_rate is not None else None
            ),
            "baseline": self.baseline.evidence() if self.baseline is not None else None,
        }
        if self.baseline_days != self.days:
            out["baseline_days"] = self.baseline_days
        if self.program == "annual":
            out["points"] = self.points
            out["tier_by"] = self.tier_by
        else:
            assert self.season is not None and self.season_m is not None
            out["season"] = self.season.label
            out["season_days"] = self.season.days
            out["season_km"] = num(shown(self.season_m / 1000, KM_PLACES, b.season_km))
            out["special_points"] = self.special_points
        return out


class Bands(BaseModel):
    """The cuts between reported bands of a rule set (see `prorate.display`)."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    km: tuple[Cut, ...]
    pct: tuple[Cut, ...]
    season_km: tuple[Cut, ...]

    @classmethod
    def of(cls, rules: RuleSet) -> Bands:
        return cls(
            km=bands_km(rules.tiers),
            pct=bands_pct(rules.tiers),
            season_km=bands_season_km(rules.season) if rules.season is not None else (),
        )


PeriodFigures.model_rebuild()


class ParticipationFacts(BaseModel):
    """What a round knows about the participation itself, beyond its readings."""

    model_config = ConfigDict(frozen=True)

    enrolled_on: date | None = None
    status: Literal["active", "ended"] = "active"
    ended_on: date | None = None
    end_reason: str | None = None


def check_annual_period(period: Period, rules: RuleSet) -> None:
    """An annual period long enough to be a year's result, and ended in its window when the rule
    set has one."""
    if period.days < rules.periods.min_annual_days:
        raise ProrateError(
            "period_too_short",
            f"the period runs {period.days} day{'s' if period.days != 1 else ''}, less than the "
            f"{rules.periods.min_annual_days} an annual result needs",
        )
    within = rules.periods.annual_end_within_days
    if within is not None:
        scheduled = add_months(period.start, rules.periods.annual_months)
        if not scheduled <= period.end <= scheduled + timedelta(days=within):
            raise ProrateError(
                "period_end_outside_window",
                f"the end reading ({period.end.isoformat()}) must lie within {within} days after the "
                f"scheduled end {scheduled.isoformat()}",
            )


def check_participation(facts: ParticipationFacts, period: Period, rules: RuleSet, round_first_day: date) -> None:
    """A participation that ended because its member's ownership was refused is never paid; one
    that ended before its end reading measured nothing of its own; one ended by an ownership
    transfer before the round is not paid unless the rule set pays transferred cars."""
    if facts.end_reason == "ownership_refused":
        raise ProrateError(
            "participation_ownership_refused",
            "the member's ownership of the car was refused: the participation is never paid",
        )
    if facts.status == "ended" and facts.ended_on is not None and facts.ended_on < period.end:
        raise ProrateError(
            "participation_ended_early",
            f"the participation ended on {facts.ended_on.isoformat()}, before its end reading ({period.end.isoformat()})",
        )
    if (
        facts.end_reason == "ownership_transfer"
        and not rules.participations.pay_transferred
        and facts.ended_on is not None
        and facts.ended_on < round_first_day
    ):
        raise ProrateError(
            "participation_transferred",
            f"the car's ownership was transferred on {facts.ended_on.isoformat()}, before the round: "
            f"{rules.name} does not pay a transferred car",
        )


def compute(
    *,
    program: Program,
    rules: RuleSet,
    period: Period,
    start_odometer_m: int,
    end_odometer_m: int,
    baseline: Baseline | None,
    season_year: int | None = None,
    participation: ParticipationFacts | None = None,
    round_first_day: date | None = None,
) -> PeriodFigures:
    """Baseline × days, actual distance, reduction, rate, tier points or season special points.

    A season period measures the season starting in `season_year` (its December's year) when
    given (a participation knows it), else the one season the period overlaps. With
    `participation` (and the round's first day, `round_first_day`) the participation's own
    conditions are checked too, as a round does. Refusals raise ProrateError, in the order the
    round's SQL (storage.evaluation) checks them.
    """
    if end_odometer_m < start_odometer_m:
        raise ProrateError(
            "odometer_decreased",
            f"the end odometer ({report_km(end_odometer_m)} km) is below the start odometer "
            f"({report_km(start_odometer_m)} km)",
        )
    if program == "annual" and baseline is None:
        raise ProrateError("baseline_missing", "an annual period needs a baseline")
    prorated = rules.periods.proration == "days"
    season = None
    if program == "season":
        if rules.season is None:
            raise ProrateError("season_not_in_rules", f"rule set {rules.name} has no winter season special points")
        season = (
            season_for_period(period, rules.season)
            if season_year is None
            else check_period_in_season(period, season_starting(season_year, rules.season))
        )
        check_season_rules(
            period, season, rules.season, participation.enrolled_on if participation is not None else None
        )
        baseline_days = period.days if prorated else season.days
    else:
        check_annual_period(period, rules)
        baseline_days = (
            period.days if prorated else (add_months(period.start, rules.periods.annual_months) - period.start).days
        )
    if participation is not None:
        if round_first_day is None:
            raise ValueError("a participation is checked against a round: give round_first_day")
        check_participation(participation, period, rules, round_first_day)
    actual_m = end_odometer_m - start_odometer_m
    baseline_m = reduction_m = rate = None
    if baseline is not None:
        baseline_m = baseline.baseline_m(baseline_days)
        reduction_m = baseline_m - actual_m
        rate = reduction_m / baseline_m if baseline_m != 0 else None
    points = tier = None
    tier_by: TierBasis | None = None
    s_m = special = None
    if program == "annual":
        assert baseline_m is not None and reduction_m is not None
        decision = decide_points(reduction_m, baseline_m, rules.tiers)
        points, tier_by, tier = decision.points, decision.by, decision.tier
    else:
        assert season is not None and rules.season is not None
        s_m = season_m(actual_m, period, season, prorated)
        special = special_points(actual_m, period, season, rules.season, prorated)
    return PeriodFigures(
        program=program,
        rules=rules.name,
        start_date=period.start,
        end_date=period.end,
        days=period.days,
        baseline_days=baseline_days,
        start_odometer_m=start_odometer_m,
        end_odometer_m=end_odometer_m,
        actual_m=actual_m,
        baseline=baseline,
        baseline_m=baseline_m,
        reduction_m=reduction_m,
        reduction_rate=rate,
        points=points,
        tier_by=tier_by,
        tier=tier,
        season=season,
        season_m=s_m,
        special_points=special,
        bands=Bands.of(rules),
    )


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
    baseline: Baseline | None = None
    if has_override or has_history or req.district is not None:
        facts = BaselineFacts(
            start_date=period.start,
            start_odometer_m=start_m,
            first_registration_date=req.first_registration_date,
            acquired_date=req.acquired_date,
            acquired_odometer_m=(
                km_to_m(req.acquired_km, "acquired_km") if req.acquired_km is not None else None
            ),
            district=req.district,
            override_daily_km=req.baseline_daily_km,
        )
        baseline = derive_baseline(facts, rules.baseline)
    elif req.program == "annual":
        raise ProrateError(
            "baseline_missing",
            "no baseline inputs: give one of baseline_daily_km, first_registration_date or district",
        )
    return compute(
        program=req.program,
        rules=rules,
        period=period,
        start_odometer_m=start_m,
        end_odometer_m=end_m,
        baseline=baseline,
    )


def fraction_str(x: Fraction | None) -> str | None:
    """An exact value as 'p/q' (or 'p'), for evidence that must be recomputable."""
    return None if x is None else str(x)
