"""A car's readings, and the correction of a verified one by a reviewer or operator."""

from __future__ import annotations

from datetime import datetime

import asyncpg
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from ingest.api import ApiError, Reason, path_id, respond
from ingest.auth import Principal, check_owner
from ingest.ingestion import limits_from
from ingest.routes import api
from ingest.routes.vehicles import require_checked_ownership
from ingest.state import POOL, REQUEST_ID, SETTINGS
from storage.audit import write_audit
from storage.corrections import CorrectionRefused, correct_reading, find_reading, readings_of
from storage.db import database_now
from storage.vehicles import get_vehicle


class ReadingOut(BaseModel):
    id: int
    odometer_km: float = Field(description="Kilometres (the stored value is integer metres).")
    odometer_m: int
    recorded_at: datetime
    received_at: datetime
    source: str
    status: str
    captured_at: datetime | None
    uploaded_at: datetime | None
    approved_at: datetime | None
    submission_id: int | None


class ReadingList(BaseModel):
    readings: list[ReadingOut]


class CorrectionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    odometer_km: int = Field(ge=0, le=10_000_000, description="The true odometer value, whole km.")
    reason: str = Field(min_length=3, max_length=500, description="Why, for the audit log.")


class CorrectionOut(BaseModel):
    superseded_reading_id: int
    reading: ReadingOut


def _out(r: asyncpg.Record) -> ReadingOut:
    return ReadingOut(
        id=r["id"],
        odometer_km=r["odometer_m"] / 1000,
        odometer_m=r["odometer_m"],
        recorded_at=r["recorded_at"],
        received_at=r["received_at"],
        source=r["source"],
        status=r["status"],
        captured_at=r["captured_at"],
        uploaded_at=r["uploaded_at"],
        approved_at=r["approved_at"],
        submission_id=r["submission_id"],
    )


@api.operation(
    "GET",
    "/v1/vehicles/{id}/readings",
    summary="A car's verified (and superseded) readings, newest first",
    responses={200: ReadingList, 404: None, 409: None},
    roles={"citizen", "operator", "reviewer"},
    tags=["readings"],
)
async def list_readings(request: web.Request, principal: Principal, body: None) -> web.Response:
    pool = request.app[POOL]
    v = await get_vehicle(pool, path_id(request))
    if v is None:
        raise ApiError(404, "vehicle_not_found", "No car is enrolled under this id.")
    check_owner(principal, v["owner_id"])
    require_checked_ownership(v["status"], principal)
    return respond(ReadingList(readings=[_out(r) for r in await readings_of(pool, v["id"])]))


@api.operation(
    "POST",
    "/v1/readings/{id}/corrections",
    summary="Correct a verified reading (the old one is kept, superseded)",
    body=CorrectionIn,
    responses={201: CorrectionOut, 404: None, 409: None},
    roles={"reviewer", "operator"},
    tags=["readings"],
)
async def create_correction(request: web.Request, principal: Principal, body: CorrectionIn) -> web.Response:
    """The true value at the same instant is checked against the car's other verified readings;
    the next evaluation round then writes a new result version that supersedes the old event."""
    reading_id = path_id(request)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        try:
            done = await correct_reading(
                conn,
                reading_id,
                body.odometer_km * 1000,
                approved_at=await database_now(conn),
                limits=limits_from(request.app[SETTINGS]),
            )
        except CorrectionRefused as e:
            status = 404 if e.code == "reading_not_found" else 409
            raise ApiError(
                status, e.code, e.message, [Reason(code=r, message=r.replace("_", " ")) for r in e.reasons]
            ) from None
        await write_audit(
            conn,
            actor_role=principal.role,
            actor_id=principal.subject,
            action="reading.correct",
            entity="reading",
            entity_id=str(reading_id),
            before={"odometer_m": done.superseded["odometer_m"], "status": "verified"},
            after={"status": "superseded", "corrected_by": done.reading_id,
                   "odometer_m": body.odometer_km * 1000, "reason": body.reason},
            request_id=request.get(REQUEST_ID),
        )
        new = await find_reading(conn, done.reading_id)
    assert new is not None
    return respond(CorrectionOut(superseded_reading_id=reading_id, reading=_out(new)), 201)
