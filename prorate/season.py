"""Winter fine-dust season special points (겨울철 미세먼지 계절관리제).

The season is the half-open range [1 Dec, 1 Apr): 121 days, 122 when February has 29. Members
enrol by `enrol_by`, their start reading lies in the start window, their readings cover at least
`min_coverage_pct` of the season's days (a few days are never extrapolated to the season), and
the end reading is registered by `end_data_by`. Under day-proration (the 2022 plan) the distance
between the readings is prorated to the season's own length,
`season_km = actual_km × season_days / days`; without it (before 2022) it counts as it is. It
earns the special points when it is within the limit. Decisions are taken on the exact fraction.
"""

from __future__ import annotations

from datetime import date, timedelta
from fractions import Fraction

from pydantic import BaseModel, ConfigDict

from prorate.errors import ProrateError
from prorate.period import Period
from prorate.rules import SeasonRules


class Season(BaseModel):
    """One winter season: [starts, ends), with its enrolment and end-data deadlines."""

    model_config = ConfigDict(frozen=True)

    label: str
    starts: date
    ends: date
    enrol_by: date
    end_data_by: date
    #: End of the season before (a period starting before it measures two seasons).
    previous_ends: date
    #: The start reading's date lies in [start_opens, start_closes].
    start_opens: date
    start_closes: date

    @property
    def days(self) -> int:
        return (self.ends - self.starts).days

    @property
    def evaluable_from(self) -> date:
        """First day on which the season may be evaluated: the day after the end-data deadline."""
        return self.end_data_by + timedelta(days=1)


def season_starting(year: int, rules: SeasonRules) -> Season:
    """The season that starts in `year` (e.g. 2022 -> [2022-12-01, 2023-04-01))."""
    return Season(
        label=f"{year}-{(year + 1) % 100:02d}",
        starts=rules.starts.in_year(year),
        ends=rules.ends.in_year(year + 1),
        enrol_by=rules.enrol_by.in_year(year),
        end_data_by=rules.end_data_by.in_year(year + 1),
        previous_ends=rules.ends.in_year(year),
        start_opens=rules.start_window_opens.in_year(year),
        start_closes=rules.start_window_closes.in_year(year),
    )


def season_enrolment(year: int, rules: SeasonRules | None, today: date) -> Season:
    """The season starting in `year`, when enrolment for it is still open on `today`."""
    if rules is None:
        raise ProrateError("season_not_in_rules", f"the rules have no winter season in {year}")
    season = season_starting(year, rules)
    if today > season.enrol_by:
        raise ProrateError(
            "season_enrolment_closed",
            f"Enrolment for the {year}/{year + 1} winter season closed on {season.enrol_by.isoformat()}.",
        )
    return season


def season_for_period(period: Period, rules: SeasonRules) -> Season:
    """The one season a period's readings measure; refused when it overlaps none or several."""
    candidates = [
        season_starting(y, rules)
        for y in range(period.start.year - 1, period.end.year + 1)
    ]
    overlapping = [s for s in candidates if period.overlap_days(s.starts, s.ends) > 0]
    if not overlapping:
        raise ProrateError(
            "season_no_overlap",
            f"the period {period.start.isoformat()} – {period.end.isoformat()} does not overlap a winter season "
            f"([{rules.starts}, {rules.ends}))",
        )
    if len(overlapping) > 1:
        raise ProrateError(
            "season_several",
            f"the period {period.start.isoformat()} – {period.end.isoformat()} spans more than one winter season",
        )
    return check_period_in_season(period, overlapping[0])


def check_period_in_season(period: Period, season: Season) -> Season:
    """A season's result needs readings that measure that season and were registered in time."""
    if period.overlap_days(season.starts, season.ends) == 0:
        raise ProrateError(
            "season_no_overlap",
            f"the period {period.start.isoformat()} – {period.end.isoformat()} does not overlap the "
            f"{season.label} season [{season.starts.isoformat()}, {season.ends.isoformat()})",
        )
    if period.start < season.previous_ends:
        raise ProrateError(
            "season_several",
            f"the period {period.start.isoformat()} – {period.end.isoformat()} spans more than one winter season",
        )
    if period.end > season.end_data_by:
        raise ProrateError(
            "season_end_too_late",
            f"the end reading ({period.end.isoformat()}) is after the season's end-data deadline "
            f"{season.end_data_by.isoformat()}",
        )
    return season


def check_season_rules(
    period: Period, season: Season, rules: SeasonRules, enrolled_on: date | None = None
) -> None:
    """The season's own conditions on a period that measures it (after `check_period_in_season`):
    enrolment by its deadline, the start reading in its window, enough of the season covered."""
    if enrolled_on is not None and enrolled_on > season.enrol_by:
        raise ProrateError(
            "season_enrolled_late",
            f"enrolled on {enrolled_on.isoformat()}, after the season's enrolment deadline {season.enrol_by.isoformat()}",
        )
    if not season.start_opens <= period.start <= season.start_closes:
        raise ProrateError(
            "season_start_outside_window",
            f"the start reading ({period.start.isoformat()}) is outside the season's start window "
            f"{season.start_opens.isoformat()} – {season.start_closes.isoformat()}",
        )
    covered = period.overlap_days(season.starts, season.ends)
    # covered / season_days ≥ min_pct / 100, exactly
    if covered * 100 < Fraction(rules.min_coverage_pct) * season.days:
        raise ProrateError(
            "season_coverage_too_low",
            f"the readings cover {covered} of the season's {season.days} days, less than "
            f"{rules.min_coverage_pct} %",
        )


def season_factor(period: Period, season: Season, prorate: bool = True) -> Fraction:
    """What the readings' distance is multiplied by to give the season's: season_days / days under
    day-proration, 1 without."""
    return Fraction(season.days, period.days) if prorate else Fraction(1)


def season_m(actual_m: int, period: Period, season: Season, prorate: bool = True) -> Fraction:
    """The readings' distance for the season: actual × season_days / days (metres), or as it is."""
    return actual_m * season_factor(period, season, prorate)


def special_points(
    actual_m: int, period: Period, season: Season, rules: SeasonRules, prorate: bool = True
) -> int:
    """The special points earned: `season_km ≤ max_km`, decided exactly by cross-multiplication."""
    # actual_m × season_days / days ≤ max_km × 1000  ⇔  actual_m × season_days ≤ max_m × days
    f = season_factor(period, season, prorate)
    max_m = Fraction(rules.max_km) * 1000
    earned = actual_m * f.numerator <= max_m * f.denominator
    return rules.special_points if earned else 0
