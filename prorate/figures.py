"""The figures of one period result: baseline × days, distance, reduction, rate, tier and season
points, exact where decisions are taken and rounded (by `prorate.display`) where they are reported.

`compute()` takes a period's two odometer readings and a baseline and returns every figure, or
raises ProrateError for a period the rule set refuses. `prorate.evaluate.evaluate_participation`
is the one entry point that derives the inputs from a participation and its readings; the round's
SQL (storage.evaluation) states the same arithmetic on integers.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from prorate.baseline import Baseline
from prorate.display import Cut, bands_km, bands_pct, bands_season_km, shown
from prorate.errors import ProrateError
from prorate.period import KM_PLACES, PCT_PLACES, Period, add_months, report_km, round_half_up
from prorate.rules import RuleSet
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

#: The daily average as stored and delivered: km/day to 0.0001 (exact: `baseline.daily_m`).
DAILY_KM_PLACES = 4


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

    def reported(self) -> ReportedFigures:
        """The figures as reported: km to 0.1, % to 0.01, half up, the reduction, rate and season
        km kept inside their tier by `prorate.display`; the daily average to 0.0001 km."""
        b = self.bands
        return ReportedFigures(
            baseline_daily_km=(
                round_half_up(self.baseline.daily_m / 1000, DAILY_KM_PLACES) if self.baseline is not None else None
            ),
            baseline_km=report_km(self.baseline_m) if self.baseline_m is not None else None,
            actual_km=report_km(self.actual_m),
            reduction_km=shown(self.reduction_m / 1000, KM_PLACES, b.km) if self.reduction_m is not None else None,
            reduction_rate_pct=(
                shown(self.reduction_rate * 100, PCT_PLACES, b.pct) if self.reduction_rate is not None else None
            ),
            season_km=shown(self.season_m / 1000, KM_PLACES, b.season_km) if self.season_m is not None else None,
        )

    def report(self) -> dict[str, Any]:
        """The reported figures (`reported`) as `carmileage calc` prints them; JSON-ready,
        numbers as numbers."""

        def num(d: Decimal | None) -> float | None:
            # Already rounded exactly; the float only carries the printed digits into JSON.
            return None if d is None else float(d)

        r = self.reported()
        out: dict[str, Any] = {
            "program": self.program,
            "rules": self.rules,
            "start_date": self.start_date.isoformat(),
            "end_date": self.end_date.isoformat(),
            "days": self.days,
            "baseline_km": num(r.baseline_km),
            "actual_km": num(r.actual_km),
            "reduction_km": num(r.reduction_km),
            "reduction_rate_pct": num(r.reduction_rate_pct),
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
            out["season_km"] = num(r.season_km)
            out["special_points"] = self.special_points
        return out


class ReportedFigures(BaseModel):
    """A period result's figures as every report shows them (exact decimals, already rounded):
    `carmileage calc`, the round's stored figures and the reward calculator's payload."""

    model_config = ConfigDict(frozen=True)

    #: km/day to 0.0001, half up (None without a baseline).
    baseline_daily_km: Decimal | None
    #: km to 0.1, half up.
    baseline_km: Decimal | None
    actual_km: Decimal
    #: km to 0.1 and % to 0.01, kept inside the exact value's tier band (prorate.display).
    reduction_km: Decimal | None
    reduction_rate_pct: Decimal | None
    #: A season's km to 0.1, kept on the exact value's side of the limit.
    season_km: Decimal | None


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


def check_participation(
    facts: ParticipationFacts, period: Period, rules: RuleSet, round_first_day: date | None
) -> None:
    """A participation that ended because its member's ownership was refused is never paid; one
    that ended before its end reading measured nothing of its own; one ended by an ownership
    transfer before the round (`round_first_day`; None: no round, a question to `calc`) is not
    paid unless the rule set pays transferred cars."""
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
        and round_first_day is not None
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

