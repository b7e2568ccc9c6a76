"""The reward calculator's contract: the period-result event the outbox sender POSTs to it.

One versioned schema, in code: `PeriodResultEvent`. Its JSON Schema is exported to
`docs/reward-calculator.schema.json` (`python -m prorate.reward_event > docs/reward-calculator.schema.json`;
a test fails while the checked-in file differs) and the contract is described in
`docs/reward-calculator.md`. `schema_version` changes with every change to the document.

The domain owns it (not storage, not the sender): an event is a period result as the period
rules decide and report it (`PeriodFigures.reported()`, `Baseline.evidence()`), pure data that
`period_result_event` builds from `evaluate_participation`'s figures without I/O. Storage renders
the same document in SQL (`cm_result_payload`, from the immutable result row when it is sent, so
a round of a million results writes no JSON) and the sender posts those bytes; the tests hold
what SQL renders equal to what this model serialises, and validate every payload against the
exported schema.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Final, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

from prorate.baseline import BaselineMethod
from prorate.evaluate import ReadingSource
from prorate.figures import PeriodFigures, Program
from prorate.tiers import TierBasis

#: The version of this document; the payload carries it as `schema_version`.
SCHEMA_VERSION: Final = 1
SCHEMA_ID: Final = "urn:carmileage:reward-calculator:period-result:1"


def _json_number(d: Decimal) -> float:
    """A reported figure (already rounded to a few decimals) as a JSON number with exactly its
    digits: the float's shortest representation is the decimal, or it is refused."""
    f = float(d)
    if Decimal(repr(f)) != d:
        raise ValueError(f"{d} has no exact JSON number")
    return f


#: A reported figure: an exact decimal, sent as a JSON number with its digits (never a binary
#: approximation: `_json_number` refuses one).
Figure = Annotated[Decimal, PlainSerializer(_json_number, return_type=float, when_used="json")]


def _present_integer(schema: dict[str, Any]) -> None:
    """An optional field that is left out rather than sent as null: an integer ≥ 1 when present."""
    for key in ("anyOf", "default"):
        schema.pop(key, None)
    schema.update(type="integer", minimum=1)


class _Document(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DailyMetres(_Document):
    """The baseline's daily average, exactly: numerator / denominator metres per day."""

    numerator: int = Field(ge=0)
    denominator: int = Field(gt=0)


class BaselineEvidence(_Document):
    """How the baseline was derived (`prorate.baseline.Baseline.evidence`)."""

    method: BaselineMethod
    daily_km: str = Field(description="the daily average, km/day to 0.1, as text")
    daily_m: DailyMetres
    history_from: date | None = Field(description="national / used_car: first registration or acquisition")
    history_days: int | None
    history_km: str | None = Field(description="national / used_car: km driven since history_from, to 0.1, as text")
    district: str | None = Field(description="district method: the 자치구 whose average was used")
    district_table: str | None
    explanation: str = Field(description="one line for people")


class ReadingEvidence(_Document):
    """A start or end reading as stored, rendered when the event is sent (its `status` then)."""

    id: int
    source: ReadingSource
    odometer_m: int = Field(ge=0)
    status: Literal["verified", "superseded"]
    recorded_at: datetime
    captured_at: datetime | None
    uploaded_at: datetime | None
    approved_at: datetime | None
    verified_at: datetime
    provider_id: int | None
    provider_event_id: str | None
    submission_id: int | None


class Evidence(_Document):
    start_reading: ReadingEvidence
    end_reading: ReadingEvidence
    baseline: BaselineEvidence


class SeasonFigures(_Document):
    """A winter season's result (program `season`)."""

    year: int = Field(description="the year the season starts in (its December)")
    days: int = Field(description="the season's days: 121, or 122 when February has 29")
    km: Figure = Field(description="the readings' distance for the season, km to 0.1, on the limit's side of its exact value")


class PeriodResultEvent(_Document):
    """One period result, delivered at least once (idempotent by `event_id`). A corrected input
    yields a new `version` whose event names the one it `supersedes`."""

    schema_version: Literal[1] = Field(description="this document's version (SCHEMA_VERSION)")
    event_id: UUID = Field(description="the idempotency key (also the Idempotency-Key header)")
    type: Literal["period_result"]
    supersedes: UUID | None = Field(description="the event of the result version this one replaces")
    participation_id: int
    version: int = Field(ge=1, description="the result's version for its participation")
    round: str = Field(pattern=r"^\d{4}-\d{2}$", description="the evaluation round, YYYY-MM")
    vehicle_id: int
    owner_id: str
    district: str = Field(description="the car's 자치구")
    program: Program
    rule_set: str
    start_date: date
    end_date: date
    days: int = Field(ge=1, description="end_date - start_date")
    baseline_days: int | None = Field(
        default=None,
        ge=1,
        exclude_if=lambda v: v is None,
        json_schema_extra=_present_integer,
        description="present only when the baseline covers other days than `days` (no day-proration)",
    )
    baseline_daily_km: Figure = Field(description="km/day to 0.0001, half up")
    baseline_km: Figure = Field(description="km to 0.1, half up")
    actual_km: Figure = Field(description="km to 0.1, half up")
    reduction_km: Figure = Field(description="km to 0.1, kept inside the exact value's tier band")
    reduction_rate_pct: Figure | None = Field(
        description="percent to 0.01, kept inside the exact value's tier band; null when the baseline is zero"
    )
    points: int = Field(ge=0, description="tier points (annual; 0 for a season)")
    tier_by: TierBasis | None = Field(description="annual: which measure reached the paying tier; null for a season")
    season: SeasonFigures | None = Field(description="season program only")
    special_points: int = Field(ge=0, description="season special points (0 for an annual period)")
    evidence: Evidence


def period_result_event(
    figures: PeriodFigures,
    *,
    event_id: UUID,
    supersedes: UUID | None,
    participation_id: int,
    version: int,
    round_name: str,
    vehicle_id: int,
    owner_id: str,
    district: str,
    start_reading: ReadingEvidence,
    end_reading: ReadingEvidence,
) -> PeriodResultEvent:
    """The event of a period result the rules computed (`evaluate_participation`), with the
    identity a round gives it and its readings as stored."""
    if figures.baseline is None or figures.reduction_m is None:
        raise ValueError("a delivered period result has a baseline")
    r = figures.reported()
    assert r.baseline_daily_km is not None and r.baseline_km is not None and r.reduction_km is not None
    season = None
    if figures.program == "season":
        assert figures.season is not None and r.season_km is not None
        season = SeasonFigures(year=figures.season.starts.year, days=figures.season.days, km=r.season_km)
    return PeriodResultEvent(
        schema_version=SCHEMA_VERSION,
        event_id=event_id,
        type="period_result",
        supersedes=supersedes,
        participation_id=participation_id,
        version=version,
        round=round_name,
        vehicle_id=vehicle_id,
        owner_id=owner_id,
        district=district,
        program=figures.program,
        rule_set=figures.rules,
        start_date=figures.start_date,
        end_date=figures.end_date,
        days=figures.days,
        baseline_days=figures.baseline_days if figures.baseline_days != figures.days else None,
        baseline_daily_km=r.baseline_daily_km,
        baseline_km=r.baseline_km,
        actual_km=r.actual_km,
        reduction_km=r.reduction_km,
        reduction_rate_pct=r.reduction_rate_pct,
        points=figures.points or 0,
        tier_by=figures.tier_by,
        season=season,
        special_points=figures.special_points or 0,
        evidence=Evidence(
            start_reading=start_reading,
            end_reading=end_reading,
            baseline=BaselineEvidence.model_validate(figures.baseline.evidence()),
        ),
    )


def json_schema() -> dict[str, Any]:
    """The JSON Schema (2020-12) of what is sent: the model's serialisation schema."""
    schema = PeriodResultEvent.model_json_schema(mode="serialization")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def json_schema_text() -> str:
    """The checked-in file's exact text."""
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    print(json_schema_text(), end="")
