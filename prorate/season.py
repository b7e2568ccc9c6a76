"""Winter fine-dust season special points (겨울철 미세먼지 계절관리제).

The season is the half-open range [1 Dec, 1 Apr): 121 days, 122 when February has 29. The
distance between the readings is prorated to the season's own length,
`season_km = actual_km × season_days / days`, and earns the special points when it is within the
limit. Decisions are taken on the exact fraction.
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
    )


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


def season_m(actual_m: int, period: Period, season: Season) -> Fraction:
    """The readings' distance prorated to the season: actual × season_days / days (metres)."""
    return Fraction(actual_m * season.days, period.days)


def special_points(actual_m: int, period: Period, season: Season, rules: SeasonRules) -> int:
    """The special points earned: `season_km ≤ max_km`, decided exactly by cross-multiplication."""
    # actual_m × season_days / days ≤ max_km × 1000  ⇔  actual_m × season_days ≤ max_m × days
    max_m = Fraction(rules.max_km) * 1000
    earned = actual_m * season.days <= max_m * period.days
    return rules.special_points if earned else 0
