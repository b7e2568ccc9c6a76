"""Programme dates are calendar dates in Asia/Seoul."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

SEOUL = ZoneInfo("Asia/Seoul")


def seoul_date(moment: datetime) -> date:
    """The Seoul calendar date of an aware moment."""
    if moment.tzinfo is None:
        raise ValueError("a moment needs a time zone to have a Seoul date")
    return moment.astimezone(SEOUL).date()


def seoul_today(now: datetime | None = None) -> date:
    return (now or datetime.now(SEOUL)).astimezone(SEOUL).date()
