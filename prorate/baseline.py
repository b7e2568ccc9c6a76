"""Baselines (기준주행거리): a car's daily average before the period, and how it was derived.

The daily average is kept as an exact ratio of integers (metres over days), so that the baseline
of a period is exact too and the same decision can be taken in SQL by cross-multiplication.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from fractions import Fraction
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from prorate.districts import district_daily_km, normalise_district
from prorate.errors import ProrateError
from prorate.period import add_months, report_km
from prorate.rules import BaselineRules

#: override: supplied by an operator (e.g. from inspection records), wins over any formula;
#: national: odometer at start / days since first registration (the national formula);
#: used_car: distance since acquisition / days since acquisition;
#: district: the district's published daily average (history shorter than the rule set's minimum).
BaselineMethod = Literal["override", "national", "used_car", "district"]


class BaselineFacts(BaseModel):
    """What is known about a car when its baseline is derived."""

    model_config = ConfigDict(frozen=True)

    start_date: date
    start_odometer_m: int
    first_registration_date: date | None = None
    acquired_date: date | None = None
    acquired_odometer_m: int | None = None
    district: str | None = None
    #: An operator's explicit daily average in km/day; wins over every formula.
    override_daily_km: Decimal | None = None


class Baseline(BaseModel):
    """A daily average `daily_m_num / daily_m_den` metres per day, with its derivation."""

    model_config = ConfigDict(frozen=True)

    method: BaselineMethod
    daily_m_num: int
    daily_m_den: int
    #: Start of the car's own history (first registration or acquisition) for national/used_car.
    history_from: date | None = None
    history_days: int | None = None
    history_m: int | None = None
    district: str | None = None
    district_table: str | None = None

    @property
    def daily_m(self) -> Fraction:
        return Fraction(self.daily_m_num, self.daily_m_den)

    def baseline_m(self, days: int) -> Fraction:
        """The period's baseline distance: daily average × days."""
        return self.daily_m * days

    def explain(self) -> str:
        """One line for people: how the figure was derived."""
        per_day = f"{report_km(self.daily_m)} km/day"
        if self.method == "override":
            return f"operator override: {per_day}"
        if self.method == "district":
            return f"district average of {self.district} ({self.district_table}): {per_day}"
        since = "first registration" if self.method == "national" else "acquisition"
        return (
            f"{report_km(self.history_m or 0)} km over {self.history_days} days since {since} "
            f"{self.history_from}: {per_day}"
        )

    def evidence(self) -> dict[str, Any]:
        """The derivation as data, delivered with every period result."""
        return {
            "method": self.method,
            "daily_km": str(report_km(self.daily_m)),
            "daily_m": {"numerator": self.daily_m_num, "denominator": self.daily_m_den},
            "history_from": self.history_from.isoformat() if self.history_from else None,
            "history_days": self.history_days,
            "history_km": str(report_km(self.history_m)) if self.history_m is not None else None,
            "district": self.district,
            "district_table": self.district_table,
            "explanation": self.explain(),
        }


def _km_per_day_ratio(km: Decimal) -> tuple[int, int]:
    f = Fraction(km) * 1000
    return f.numerator, f.denominator


def derive_baseline(facts: BaselineFacts, rules: BaselineRules) -> Baseline:
    """The baseline under a rule set's baseline rules; raises ProrateError for unusable inputs."""
    start = facts.start_date
    if facts.override_daily_km is not None:
        if not facts.override_daily_km.is_finite() or facts.override_daily_km < 0:
            raise ProrateError("baseline_negative", "the baseline daily average must be a non-negative number")
        num, den = _km_per_day_ratio(facts.override_daily_km)
        return Baseline(method="override", daily_m_num=num, daily_m_den=den)

    if (facts.acquired_date is None) != (facts.acquired_odometer_m is None):
        raise ProrateError(
            "baseline_contradictory",
            "a used car needs both its acquisition date and its odometer at acquisition",
        )
    reg = facts.first_registration_date
    if reg is not None and reg > start:
        raise ProrateError(
            "baseline_contradictory",
            f"first registration {reg.isoformat()} is after the start date {start.isoformat()}",
        )
    if facts.acquired_date is not None and facts.acquired_odometer_m is not None:
        if reg is None:
            raise ProrateError(
                "baseline_missing", "a used car's baseline needs its first registration date as well"
            )
        if facts.acquired_date < reg:
            raise ProrateError(
                "baseline_contradictory",
                f"acquisition {facts.acquired_date.isoformat()} is before first registration {reg.isoformat()}",
            )
        if facts.acquired_date > start:
            raise ProrateError(
                "baseline_contradictory",
                f"acquisition {facts.acquired_date.isoformat()} is after the start date {start.isoformat()}",
            )
        if facts.acquired_odometer_m > facts.start_odometer_m:
            raise ProrateError(
                "baseline_contradictory",
                "the odometer at acquisition is above the odometer at the start",
            )

    history_from = facts.acquired_date or reg
    short = (
        history_from is None
        or history_from >= start
        or history_from > add_months(start, -rules.min_history_months)
    )
    if short:
        if facts.district is None:
            if history_from is None:
                raise ProrateError(
                    "baseline_missing",
                    "no baseline inputs: give a daily average, a first registration date or a district",
                )
            raise ProrateError(
                "baseline_needs_district",
                f"the car's history since {history_from.isoformat()} is shorter than "
                f"{rules.min_history_months} months before the start: its baseline is its district's "
                "daily average, so the district is needed",
            )
        district = normalise_district(facts.district)
        num, den = _km_per_day_ratio(district_daily_km(rules.district_table, district))
        return Baseline(
            method="district",
            daily_m_num=num,
            daily_m_den=den,
            district=district,
            district_table=rules.district_table,
        )

    assert history_from is not None
    history_days = (start - history_from).days
    history_m = facts.start_odometer_m - (facts.acquired_odometer_m or 0)
    return Baseline(
        method="used_car" if facts.acquired_date is not None else "national",
        daily_m_num=history_m,
        daily_m_den=history_days,
        history_from=history_from,
        history_days=history_days,
        history_m=history_m,
    )
