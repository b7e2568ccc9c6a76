"""The bounds of a connected car's period, from which its start and end readings are designated.

Members whose car streams readings through a provider upload no photos, so nothing marks the
start and end of their period: the service designates them from the car's verified readings (any
source), by the participation's rule set (`[periods]`, and `[season]` for the winter season).
Dates are calendar dates in Asia/Seoul; a reading lies on the date of its `recorded_at`.

Only *connected* participations are designated: their car has a provider's consent during the
period (for the start: in force at some time within it; for the end: in force when it ends).
The others are photo participations, whose readings the photo and review flows set.

- The period runs from its first day to its last day, both included: an annual participation
  from its enrolment date to the same date `annual_months` later (the 31st becomes the month's
  last day; with an end-data window, to the day before, the end being read from that date on);
  a season participation from the season's first day (1 December) to the day before
  it ends (31 March).
- Start: the earliest verified reading recorded within the period, designated as soon as it
  exists.
- End, where the period ends at an instant (`end_from`: a season's end, 1 April 00:00 KST, so
  that the car is measured over all of the season's days; an annual period of a rule set whose
  end data has a window, from its scheduled end): the earliest verified reading recorded in
  [end_from, end_until); only when there is none, as elsewhere:
- End: the latest verified reading recorded within the period on a later date than the start
  reading.
- Ends are designated only from `end_settle_days` after the last day (after `end_until`), so that
  readings a car buffered while offline have arrived and the choice is final; a participation
  that ended meanwhile is measured only by readings up to the day it ended.
- A designation is never moved by a reading that arrives later. Only an ended participation
  whose period was complete before it ended (ended after the last day) is designated.

`storage.period_readings` states the same rule in SQL for every participation at once, with the
bounds computed here; `choose_start` and `choose_end` are its reference, used by the tests.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Literal

from prorate.calendar import SEOUL, seoul_date
from prorate.errors import ProrateError
from prorate.period import add_months
from prorate.rules import RuleSet
from prorate.season import season_starting

Program = Literal["annual", "season"]


@dataclass(frozen=True, slots=True)
class PeriodBounds:
    """A participation's period as designation sees it (Seoul calendar dates)."""

    #: Readings recorded on or after this day may start the period.
    first_day: date
    #: Readings recorded on or before this day may start or end it.
    last_day: date
    #: The end reading is designated on this day or later.
    end_designated_from: date
    #: When set, the period ends at this instant: its end reading is the earliest reading recorded
    #: in [end_from, end_until), the latest within the period only when there is none.
    end_from: datetime | None = None
    end_until: datetime | None = None

    @property
    def starts_at(self) -> datetime:
        """The first instant of the period (00:00 Seoul on its first day)."""
        return seoul_midnight(self.first_day)

    @property
    def ends_at(self) -> datetime:
        """The first instant after the period (00:00 Seoul on the day after its last day)."""
        return seoul_midnight(self.last_day + timedelta(days=1))

    @property
    def end_designated_at(self) -> datetime:
        return seoul_midnight(self.end_designated_from)

    def complete_before(self, ended_on: date | None) -> bool:
        """Whether a participation that ended on `ended_on` had completed its period (None: not ended)."""
        return ended_on is None or ended_on > self.last_day


def seoul_midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=SEOUL)


def period_bounds(program: Program, enrolled_on: date, season_year: int | None, rules: RuleSet) -> PeriodBounds:
    """The period of a participation under its rule set; refused for a season the rules lack."""
    settle = timedelta(days=rules.periods.end_settle_days)
    day = timedelta(days=1)
    if program == "season":
        if rules.season is None or season_year is None:
            raise ProrateError(
                "season_not_in_rules", f"rule set {rules.name} has no winter season for this participation"
            )
        season = season_starting(season_year, rules.season)
        # Measured up to the season's end instant: the first reading from 1 April 00:00 KST,
        # looked for while the end settles.
        return PeriodBounds(
            first_day=season.starts,
            last_day=season.ends - day,
            end_designated_from=season.ends + settle,
            end_from=seoul_midnight(season.ends),
            end_until=seoul_midnight(season.ends + settle),
        )
    scheduled = add_months(enrolled_on, rules.periods.annual_months)
    within = rules.periods.annual_end_within_days
    if within is not None:
        # End data within `within` days of the scheduled end: the first reading from it.
        until = scheduled + timedelta(days=within) + day
        return PeriodBounds(
            first_day=enrolled_on,
            last_day=scheduled - day,
            end_designated_from=until + settle,
            end_from=seoul_midnight(scheduled),
            end_until=seoul_midnight(until),
        )
    return PeriodBounds(first_day=enrolled_on, last_day=scheduled, end_designated_from=scheduled + day + settle)


@dataclass(frozen=True, slots=True)
class Consent:
    """A provider's consent for the car: in force from `granted_at` until `withdrawn_at`."""

    granted_at: datetime
    withdrawn_at: datetime | None = None


def connected_for_start(consents: Iterable[Consent], bounds: PeriodBounds, at: datetime) -> bool:
    """A consent in force at some instant of the period, granted by `at`."""
    return any(
        c.granted_at < bounds.ends_at
        and c.granted_at <= at
        and (c.withdrawn_at is None or (c.withdrawn_at > c.granted_at and c.withdrawn_at > bounds.starts_at))
        for c in consents
    )


def connected_for_end(consents: Iterable[Consent], bounds: PeriodBounds) -> bool:
    """A consent in force when the period ended: a member who withdrew it before marks the end
    with photos instead."""
    return any(
        c.granted_at < bounds.ends_at and (c.withdrawn_at is None or c.withdrawn_at >= bounds.ends_at)
        for c in consents
    )


@dataclass(frozen=True, slots=True)
class Candidate:
    """A verified reading of the car, as designation sees it."""

    id: int
    recorded_at: datetime
    verified_at: datetime


def _known(readings: Iterable[Candidate], bounds: PeriodBounds, at: datetime) -> list[Candidate]:
    """The readings verified by `at` that lie within the period."""
    return [r for r in readings if r.verified_at <= at and bounds.starts_at <= r.recorded_at < bounds.ends_at]


def choose_start(readings: Iterable[Candidate], bounds: PeriodBounds, at: datetime) -> Candidate | None:
    """The earliest reading within the period known at `at` (ties: the lowest id)."""
    known = _known(readings, bounds, at)
    return min(known, key=lambda r: (r.recorded_at, r.id)) if known else None


def choose_end(
    readings: Iterable[Candidate],
    start: Candidate,
    bounds: PeriodBounds,
    at: datetime,
    ended_on: date | None = None,
) -> Candidate | None:
    """The end reading once the period has settled at `at`: the earliest reading from the period's
    end instant (ties: the lowest id), else the latest within the period (ties: the highest id),
    on a later date than the start and not after the day the participation ended; None before
    then or when there is none."""
    if at < bounds.end_designated_at:
        return None
    after_start = seoul_midnight(seoul_date(start.recorded_at) + timedelta(days=1))
    rs = [r for r in readings if r.verified_at <= at and r.recorded_at >= after_start]
    if bounds.end_from is not None and bounds.end_until is not None:
        until = bounds.end_until
        if ended_on is not None:
            until = min(until, seoul_midnight(ended_on + timedelta(days=1)))
        after = [r for r in rs if bounds.end_from <= r.recorded_at < until]
        if after:
            return min(after, key=lambda r: (r.recorded_at, r.id))
    known = [r for r in _known(rs, bounds, at)]
    return max(known, key=lambda r: (r.recorded_at, r.id)) if known else None
