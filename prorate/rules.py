"""Dated rule tables: the programme's rules are data files under `prorate/rules/`, chosen by date.

A new rule set is a new TOML file plus tests, never an edit of code. Each file names the date it
takes effect; a set holds until the next one begins. Every section is a typed model, so a typo in
a rule file fails loudly when the rules load (and in the tests), not silently at evaluation time.
"""

from __future__ import annotations

import itertools
import tomllib
from datetime import date, timedelta
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from prorate.eligibility_rules import EligibilityRules
from prorate.period import KM_PLACES, PCT_PLACES

RULES_DIR = Path(__file__).parent / "rules"


class RuleSetError(LookupError):
    """No rule set applies, or a named one does not exist, or a rule file is malformed."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _no_float(v: object) -> object:
    """Rule figures decide money: a TOML float (binary) is refused; write an integer or a string."""
    if isinstance(v, float):
        raise ValueError("write exact figures as integers or strings (e.g. \"12.5\"), not TOML floats")
    return v


ExactDecimal = Annotated[Decimal, BeforeValidator(_no_float)]


def _multiple_of(x: Decimal, places: int) -> bool:
    """Whether `x` is a whole number of reported steps (10^-places)."""
    scaled = x.scaleb(places)
    return scaled == scaled.to_integral_value()


class MonthDay(BaseModel):
    """A day of the year without the year ("12-01"), for recurring windows such as the season."""

    model_config = ConfigDict(frozen=True)

    month: int = Field(ge=1, le=12)
    day: int = Field(ge=1, le=31)

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, v: object) -> object:
        if isinstance(v, str):
            m, sep, d = v.partition("-")
            if not sep or not m.isdigit() or not d.isdigit():
                raise ValueError(f"expected MM-DD, got {v!r}")
            return {"month": int(m), "day": int(d)}
        return v

    @model_validator(mode="after")
    def _valid_day(self) -> MonthDay:
        # 2000 is a leap year, so 02-29 is accepted as a day that exists in some years.
        date(2000, self.month, self.day)
        return self

    def in_year(self, year: int) -> date:
        """The date in `year`; 29 February falls back to the 28th in common years."""
        if self.month == 2 and self.day == 29:
            try:
                return date(year, 2, 29)
            except ValueError:
                return date(year, 2, 28)
        return date(year, self.month, self.day)

    def __str__(self) -> str:
        return f"{self.month:02d}-{self.day:02d}"


class BaselineRules(BaseModel):
    """How a car's daily-average baseline (기준주행거리) is derived."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: A car whose own history before the start (since first registration, or since acquisition
    #: for a used car) is shorter than this uses its district's published daily average instead.
    min_history_months: int = Field(ge=0, le=120)
    #: Name of the district daily-average table in `prorate/data/district_daily_km.toml`.
    district_table: str


class ReadingRules(BaseModel):
    """Which calendar date a reading counts on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    timezone: Literal["Asia/Seoul"] = "Asia/Seoul"
    #: For photo readings: the capture time (EXIF), the upload time or the reviewer's approval.
    #: Telematics readings always count on the date the car recorded them.
    photo_date_basis: Literal["capture", "upload", "approval"]


class PhotoWindowRules(BaseModel):
    """When a photo may be registered for a participation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: A photo captured more than this many days before its upload is refused.
    max_capture_age_days: int = Field(ge=0, le=366)
    #: An annual participation's end photos are accepted from this many months after its start.
    annual_end_opens_after_months: int = Field(ge=0, le=36)


class PeriodRules(BaseModel):
    """How long a period runs and how its readings' distance is compared with the baseline.

    `annual_months` and `end_settle_days` also bound connected cars' periods, whose start and end
    readings are designated from the readings their provider streams (`prorate.period_bounds`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: An annual period's last day is this many months after its start reading's date.
    annual_months: int = Field(ge=1, le=36)
    #: The end reading is designated once this many whole days have passed after the period's last
    #: day, so that readings a car buffered while offline have arrived; a reading that arrives
    #: later never moves it.
    end_settle_days: int = Field(ge=0, le=60)
    #: "days" (일할계산, the 2022 plan): the baseline is the daily average × the days between the
    #: readings, and a season's distance is prorated to the season's days. "none" (before 2022): the
    #: baseline covers the scheduled period (`annual_months` after the start; a season's days) and
    #: the readings' distance is taken as it is.
    proration: Literal["days", "none"]
    #: An annual period (e − s) shorter than this is not computed (`period_too_short`).
    min_annual_days: int = Field(ge=1, le=1200)
    #: When set, an annual period's end reading must lie within this many days after its
    #: scheduled end (start + `annual_months`), and not before it (`period_end_outside_window`);
    #: connected cars' end readings are then looked for from that scheduled end.
    annual_end_within_days: int | None = Field(default=None, ge=0, le=366)

    @model_validator(mode="after")
    def _scheduled_end_without_proration(self) -> PeriodRules:
        # Without proration the baseline is the scheduled period's: a reading far from its end would
        # compare a distance over one length with a baseline over another.
        if self.proration == "none" and self.annual_end_within_days is None:
            raise ValueError("proration = \"none\" needs annual_end_within_days (the end reading's window)")
        return self


class Tier(BaseModel):
    """One reward tier: earned from `rate_from_pct` (or `km_from`) up to the next tier's bounds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rate_from_pct: ExactDecimal = Field(ge=0)
    km_from: ExactDecimal = Field(ge=0)
    points: int = Field(gt=0)


class SeasonRules(BaseModel):
    """The winter fine-dust season's special points: the season is the half-open [starts, ends)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    starts: MonthDay
    ends: MonthDay
    #: Last day of enrolment (in the year the season starts).
    enrol_by: MonthDay
    #: Last day on which the season's end reading may be registered; evaluated after it.
    end_data_by: MonthDay
    #: The start reading's date must lie in [start_window_opens, start_window_closes], both in the
    #: year the season starts: a period begun later measures only part of the season.
    start_window_opens: MonthDay
    start_window_closes: MonthDay
    #: The readings must cover at least this share (percent) of the season's days; a shorter
    #: period is refused, never extrapolated to the season.
    min_coverage_pct: ExactDecimal = Field(gt=0, le=100)
    max_km: ExactDecimal = Field(gt=0)
    special_points: int = Field(gt=0)

    @model_validator(mode="after")
    def _crosses_new_year(self) -> SeasonRules:
        if (self.ends.month, self.ends.day) >= (self.starts.month, self.starts.day):
            raise ValueError("the season must cross the new year (ends before starts in the calendar)")
        # Month-days on or after `ends` lie in the year the season starts (its December's year).
        ends = (self.ends.month, self.ends.day)
        opens = (self.start_window_opens.month, self.start_window_opens.day)
        closes = (self.start_window_closes.month, self.start_window_closes.day)
        if not ends <= opens <= closes:
            raise ValueError(
                "the start window must lie in the year the season starts, start_window_opens first"
            )
        if (self.enrol_by.month, self.enrol_by.day) < ends:
            raise ValueError("enrol_by must lie in the year the season starts")
        if not _multiple_of(self.max_km, KM_PLACES):
            raise ValueError(f"max_km must be a multiple of the reported 0.{'0' * (KM_PLACES - 1)}1 km")
        return self


class ParticipationRules(BaseModel):
    """What becomes of a participation's result when the participation ended."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: False (the national programme's rule): a participation ended by an ownership transfer
    #: (소유권 이전) before a round's cutoff is not paid by that round (`participation_transferred`).
    pay_transferred: bool


class RoundRules(BaseModel):
    """Evaluation rounds: the months in which a round runs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    months: tuple[int, ...]

    @field_validator("months")
    @classmethod
    def _months(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or list(v) != sorted(set(v)) or not all(1 <= m <= 12 for m in v):
            raise ValueError("months must be distinct, ascending and within 1-12")
        return v


class RuleSet(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    title: str
    effective_from: date
    eligibility: EligibilityRules
    baseline: BaselineRules
    readings: ReadingRules
    photo_windows: PhotoWindowRules
    periods: PeriodRules
    #: Ascending; the first tier starts at 0 (only a positive reduction earns, see `prorate.tiers`).
    tiers: tuple[Tier, ...]
    #: None when the rule set has no winter season special points.
    season: SeasonRules | None = None
    rounds: RoundRules
    participations: ParticipationRules

    @field_validator("tiers")
    @classmethod
    def _tiers_ascending(cls, v: tuple[Tier, ...]) -> tuple[Tier, ...]:
        if not v:
            raise ValueError("at least one tier is needed")
        if v[0].rate_from_pct != 0 or v[0].km_from != 0:
            raise ValueError("the first tier must start at 0 % and 0 km")
        for lo, hi in itertools.pairwise(v):
            if not (hi.rate_from_pct > lo.rate_from_pct and hi.km_from > lo.km_from):
                raise ValueError("tier bounds must strictly increase")
            if hi.points < lo.points:
                raise ValueError("a higher tier must not earn fewer points")
        # Reported figures are kept inside their tier (prorate.display): every bound must be a
        # reported figure, and the first tier (above 0) must hold one.
        for t in v:
            if not (_multiple_of(t.rate_from_pct, PCT_PLACES) and _multiple_of(t.km_from, KM_PLACES)):
                raise ValueError("tier bounds must be multiples of the reported 0.01 % and 0.1 km")
        if len(v) > 1 and (
            v[1].rate_from_pct < 2 * Decimal(1).scaleb(-PCT_PLACES) or v[1].km_from < 2 * Decimal(1).scaleb(-KM_PLACES)
        ):
            raise ValueError("the second tier must start at least two reported steps above 0")
        return v

    @model_validator(mode="after")
    def _season_end_designated_in_time(self) -> RuleSet:
        # A connected car's season end reading must be designated by the day the season may first
        # be evaluated (the day after its end-data deadline), or the first evaluating round misses it.
        s = self.season
        if s is not None:
            for year in (2023, 2024):  # a common and a leap year
                designated = s.ends.in_year(year) + timedelta(days=self.periods.end_settle_days)
                if designated > s.end_data_by.in_year(year) + timedelta(days=1):
                    raise ValueError(
                        "periods.end_settle_days is too long: a season's end reading must be designated "
                        "by the day after season.end_data_by"
                    )
        return self


def _load(path: Path) -> RuleSet:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        return RuleSet(**raw)
    except (tomllib.TOMLDecodeError, ValidationError, TypeError) as e:
        raise RuleSetError("rules_malformed", f"rule file {path.name} is malformed: {e}") from e


@lru_cache(maxsize=1)
def all_rule_sets() -> tuple[RuleSet, ...]:
    """Every rule set, oldest first."""
    sets = sorted((_load(p) for p in RULES_DIR.glob("*.toml")), key=lambda r: r.effective_from)
    names = [r.name for r in sets]
    if len(set(names)) != len(names):
        raise RuleSetError("rules_duplicate_name", f"duplicate rule-set names in {RULES_DIR}")
    dates = [r.effective_from for r in sets]
    if len(set(dates)) != len(dates):
        raise RuleSetError("rules_duplicate_date", f"two rule sets take effect on the same day in {RULES_DIR}")
    return tuple(sets)


def rule_set_named(name: str) -> RuleSet:
    for r in all_rule_sets():
        if r.name == name:
            return r
    known = ", ".join(r.name for r in all_rule_sets())
    raise RuleSetError("rules_unknown", f"no rule set named {name!r} (known: {known})")


def rule_set_for(on: date) -> RuleSet:
    """The rule set in force on a calendar date (Asia/Seoul)."""
    chosen: RuleSet | None = None
    for r in all_rule_sets():
        if r.effective_from <= on:
            chosen = r
    if chosen is None:
        first = all_rule_sets()[0].effective_from
        raise RuleSetError("rules_no_rule_set", f"no rule set covers {on.isoformat()} (the first begins {first})")
    return chosen


def rule_set_for_season(season_year: int) -> RuleSet:
    """The rule set of the winter season that starts in `season_year`: the one in force on the
    season's first day (as that set defines the season)."""
    for r in reversed(all_rule_sets()):
        if r.season is not None and r.effective_from <= r.season.starts.in_year(season_year):
            return r
        if r.season is None and r.effective_from.year <= season_year:
            raise RuleSetError("season_not_in_rules", f"rule set {r.name} has no winter season special points")
    first = all_rule_sets()[0].effective_from
    raise RuleSetError(
        "rules_no_rule_set", f"no rule set covers the {season_year} winter season (the first begins {first})"
    )
