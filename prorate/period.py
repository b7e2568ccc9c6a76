"""Day-proration (일할계산): calendar dates in Asia/Seoul, exact arithmetic, report rounding.

Odometers are integer metres. Every distance derived from them is an exact `Fraction` of metres;
decisions (tiers, special points) are taken on those exact values, and only reports round.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from fractions import Fraction

from prorate.calendar import SEOUL
from prorate.errors import ProrateError

__all__ = ["SEOUL", "Period", "add_months", "km_to_m", "report_km", "report_pct", "round_half_up", "seoul_date"]

#: Report rounding: distances to 0.1 km, percentages to 0.01. The mode is "half up" in Python's
#: `decimal.ROUND_HALF_UP` sense: ties round away from zero (12.25 -> 12.3, -12.25 -> -12.3).
KM_PLACES = 1
PCT_PLACES = 2


def seoul_date(ts: datetime) -> date:
    """The calendar date in Seoul of an instant; naive datetimes are refused (no guessing of zones)."""
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ProrateError("naive_timestamp", f"timestamp {ts.isoformat()} has no time zone")
    return ts.astimezone(SEOUL).date()


def add_months(d: date, months: int) -> date:
    """`d` moved by whole calendar months; the 31st becomes the month's last day where needed."""
    y, m = divmod(d.year * 12 + (d.month - 1) + months, 12)
    m += 1
    for day in (d.day, 30, 29, 28):
        try:
            return date(y, m, min(d.day, day))
        except ValueError:
            continue
    raise AssertionError("unreachable")


@dataclass(frozen=True, slots=True)
class Period:
    """A participation period from the start reading's date `s` to the end reading's date `e`."""

    start: date
    end: date

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ProrateError(
                "end_before_start",
                f"the end date {self.end.isoformat()} is before the start date {self.start.isoformat()}",
            )
        if self.end == self.start:
            raise ProrateError(
                "empty_period",
                f"the end date equals the start date ({self.start.isoformat()}): a period needs at least one day",
            )

    @property
    def days(self) -> int:
        """`days = e − s`: the start day counts, the end day does not (half-open [s, e))."""
        return (self.end - self.start).days

    def overlap_days(self, start: date, end: date) -> int:
        """Days shared with the half-open range [start, end)."""
        return max(0, (min(self.end, end) - max(self.start, start)).days)


def km_to_m(km: Decimal | int, field: str) -> int:
    """Kilometres as given by people (at most 3 decimals) to the integer metres we store."""
    if isinstance(km, bool) or not isinstance(km, Decimal | int):
        raise ProrateError("bad_number", f"{field} must be a number of kilometres")
    m = Decimal(km) * 1000
    if not m.is_finite() or m != m.to_integral_value():
        raise ProrateError("bad_number", f"{field} must be kilometres with at most 3 decimals (whole metres)")
    if m < 0:
        raise ProrateError("negative_number", f"{field} must not be negative")
    return int(m)


def round_half_up(x: Fraction, places: int) -> Decimal:
    """`x` rounded to `places` decimals, ties away from zero (exact: no binary float involved)."""
    scaled = abs(x) * 10**places
    n = int(scaled)  # floor for non-negative values
    if scaled - n >= Fraction(1, 2):
        n += 1
    if x < 0:
        n = -n
    result = Decimal(n).scaleb(-places)
    return result if n != 0 else Decimal(0).quantize(Decimal(1).scaleb(-places))


def report_km(metres: Fraction | int) -> Decimal:
    """A distance in metres as reported: km to 0.1, half up."""
    return round_half_up(Fraction(metres) / 1000, KM_PLACES)


def report_pct(ratio: Fraction) -> Decimal:
    """A ratio as a reported percentage to 0.01, half up."""
    return round_half_up(ratio * 100, PCT_PLACES)
