"""When a photo may be registered for a participation: the registration window of the rule table.

The figures live in the rule set's `[photo_windows]` (and, for the winter season, `[season]`)
sections; this module only applies them. Dates are calendar dates in Asia/Seoul:

- a photo captured more than `max_capture_age_days` calendar days before its upload is out of
  window, and so is one captured after its upload (beyond a clock-skew allowance);
- an annual participation's end photos count from `annual_end_opens_after_months` after the start
  (the start reading's date, or the enrolment date while there is none), and, where the rule set
  has an end-data window (`[periods] annual_end_within_days`, 2021: 10 days), until it closes;
- a winter season's end photos count from the season's end (1 April) and may be registered until
  its end-data deadline (30 April);
- a mid or end photo taken before the start reading's date is out of window.

A photo without a capture time cannot be placed in its window: it is reported as such (and the
checks that need a date use the upload date, which is no earlier than any honest capture).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal

from prorate.calendar import SEOUL, seoul_date
from prorate.period import add_months
from prorate.rules import RuleSet
from prorate.season import season_starting

Stage = Literal["start", "mid", "end"]

#: Every reason this module can give; each means "out of window" to a reviewer.
WINDOW_REASONS = (
    "capture_time_missing",
    "captured_in_future",
    "captured_too_long_before_upload",
    "captured_before_start",
    "end_window_not_open",
    "end_window_closed",
    "season_rules_missing",
)


@dataclass(frozen=True)
class ParticipationDates:
    """What the window depends on about a participation."""

    program: Literal["annual", "season"]
    enrolled_on: date
    season_year: int | None = None
    #: The Seoul date of the verified start reading, when there is one.
    start_on: date | None = None


def capture_moment(captured_at: datetime | None, has_offset: bool) -> datetime | None:
    """An EXIF time without an offset is the camera's wall clock: taken as Seoul time."""
    if captured_at is None:
        return None
    if captured_at.tzinfo is None or not has_offset:
        return captured_at.replace(tzinfo=SEOUL)
    return captured_at


def end_window(p: ParticipationDates, rules: RuleSet) -> tuple[date | None, date | None]:
    """(first date, last date) on which an end photo counts; None where the window is open-ended.

    (None, None) with a season participation means the rule set has no season."""
    if p.program == "season":
        if rules.season is None or p.season_year is None:
            return None, None
        season = season_starting(p.season_year, rules.season)
        return season.ends, season.end_data_by
    base = p.start_on or p.enrolled_on
    opens = add_months(base, rules.photo_windows.annual_end_opens_after_months)
    within = rules.periods.annual_end_within_days
    # A rule set with an end-data window (2021: 10 days) closes it; the 2022 plan's does not.
    return opens, (opens + timedelta(days=within) if within is not None else None)


def window_reasons(
    stage: Stage,
    captured_at: datetime | None,
    uploaded_at: datetime,
    participation: ParticipationDates,
    rules: RuleSet,
    clock_skew: timedelta = timedelta(minutes=5),
) -> list[str]:
    """Every way in which the photo falls outside its stage's window; empty when it lies inside."""
    reasons: list[str] = []
    upload_day = seoul_date(uploaded_at)
    if captured_at is None:
        reasons.append("capture_time_missing")
        day = upload_day
    else:
        day = seoul_date(captured_at)
        if captured_at > uploaded_at + clock_skew:
            reasons.append("captured_in_future")
        if (upload_day - day).days > rules.photo_windows.max_capture_age_days:
            reasons.append("captured_too_long_before_upload")
    start = participation.start_on
    if stage in ("mid", "end") and start is not None and day < start:
        reasons.append("captured_before_start")
    if stage == "end":
        if participation.program == "season" and (rules.season is None or participation.season_year is None):
            reasons.append("season_rules_missing")
        else:
            opens, closes = end_window(participation, rules)
            if opens is not None and day < opens:
                reasons.append("end_window_not_open")
            if closes is not None and upload_day > closes:
                reasons.append("end_window_closed")
    return reasons
