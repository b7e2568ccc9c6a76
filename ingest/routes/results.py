"""A participation's period results, as its owner sees them: every version a round wrote, the
current one first, with how the baseline was derived and whether the reward calculator has it."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

import asyncpg
from aiohttp import web
from pydantic import BaseModel, Field

from ingest.api import ApiError, path_id, respond
from ingest.auth import Principal, check_owner
from ingest.routes import api
from ingest.routes.vehicles import require_checked_ownership
from ingest.state import POOL
from storage.evaluation import results_with_delivery
from storage.vehicles import get_participation


class SeasonOut(BaseModel):
    year: int | None
    days: int | None = Field(description="Days of the season [1 Dec, 1 Apr).")
    km: Decimal | None = Field(
        description="The distance for the season, km to 0.1 (prorated to the season's days where the rules "
        "prorate), never reading as the other side of the limit."
    )


class PeriodResultOut(BaseModel):
    version: int
    current: bool = Field(description="False once a later version (a corrected reading) replaced it.")
    round: str
    computed_at: datetime
    event_id: UUID | None = Field(description="The event the reward calculator receives (Idempotency-Key).")
    supersedes_event_id: UUID | None
    delivery: Literal["pending", "delivered", "dead"] | None = Field(
        description="Where the event is on its way to the reward calculator."
    )
    delivered_at: datetime | None
    program: str
    rule_set: str
    start_reading_id: int
    end_reading_id: int
    start_date: date
    end_date: date
    days: int
    baseline_days: int | None = Field(
        description="Days the baseline covers: `days` under day-proration, the scheduled period's days "
        "without it (rule sets before 2022); null for results computed before it was recorded."
    )
    baseline_daily_km: Decimal
    baseline_km: Decimal
    actual_km: Decimal
    reduction_km: Decimal = Field(
        description="km to 0.1, half up, but never across a tier bound: it reads as the tier it pays."
    )
    reduction_rate_pct: Decimal | None = Field(
        description="% to 0.01, half up, but never across a tier bound; null when the baseline is zero."
    )
    points: int
    tier_by: str | None = Field(description="Which measure decided the tier: rate, amount or both.")
    special_points: int
    season: SeasonOut | None
    baseline: dict[str, Any] = Field(description="How the baseline was derived, in words and numbers.")


class PeriodResultList(BaseModel):
    participation_id: int
    results: list[PeriodResultOut]


def _out(r: asyncpg.Record) -> PeriodResultOut:
    return PeriodResultOut(
        version=r["version"],
        current=r["superseded_by"] is None,
        round=r["round"],
        computed_at=r["created_at"],
        event_id=r["event_id"],
        supersedes_event_id=r["supersedes_event_id"],
        delivery=r["delivery"],
        delivered_at=r["delivered_at"],
        program=r["program"],
        rule_set=r["rule_set"],
        start_reading_id=r["start_reading_id"],
        end_reading_id=r["end_reading_id"],
        start_date=r["start_date"],
        end_date=r["end_date"],
        days=r["days"],
        baseline_days=r["baseline_days"],
        baseline_daily_km=r["baseline_daily_km"],
        baseline_km=r["baseline_km"],
        actual_km=r["actual_km"],
        reduction_km=r["reduction_km"],
        reduction_rate_pct=r["reduction_rate_pct"],
        points=r["points"],
        tier_by=r["tier_by"],
        special_points=r["special_points"],
        season=(
            SeasonOut(year=r["season_year"], days=r["season_days"], km=r["season_km"])
            if r["program"] == "season"
            else None
        ),
        baseline=r["derivation"] or {},
    )


@api.operation(
    "GET",
    "/v1/participations/{id}/results",
    summary="A participation's period results, newest version first",
    responses={200: PeriodResultList, 404: None, 409: None},
    roles={"citizen", "operator", "reviewer"},
    tags=["results"],
)
async def list_results(request: web.Request, principal: Principal, body: None) -> web.Response:
    pool = request.app[POOL]
    pid = path_id(request)
    p = await get_participation(pool, pid)
    if p is None:
        raise ApiError(404, "participation_not_found", "No participation has this id.")
    check_owner(principal, p["owner_id"])
    require_checked_ownership(p["vehicle_status"], principal)
    rows = await results_with_delivery(pool, pid)
    return respond(PeriodResultList(participation_id=pid, results=[_out(r) for r in rows]))
