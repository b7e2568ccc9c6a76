"""Correcting a verified reading: the wrong one is kept, marked superseded, and the true value at
the same instant is stored as a reviewer reading, checked like any other.

Period designation follows the convention (`storage.period_readings`): a pointer at a superseded
reading moves to the verified reading of the same car at the same instant, so the next round
writes a new result version whose event supersedes the old one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from storage.db import Conn
from storage.readings import NewReading, lock_vehicles, store_verified_reading
from telematics.checks import DEFAULT_LIMITS, Limits


class CorrectionRefused(Exception):
    def __init__(self, code: str, message: str, reasons: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reasons = reasons


@dataclass(frozen=True)
class Correction:
    superseded: asyncpg.Record
    reading_id: int


async def find_reading(conn: Conn | asyncpg.Pool, reading_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow("select * from readings where id = $1", reading_id)


async def correct_reading(
    conn: Conn,
    reading_id: int,
    odometer_m: int,
    *,
    approved_at: datetime,
    limits: Limits = DEFAULT_LIMITS,
) -> Correction:
    """Supersede `reading_id` with `odometer_m` at the same instant, in the caller's transaction.

    Refused (nothing changes) when the reading is unknown or no longer verified, when the value is
    the same, or when the corrected value fails the order-free checks against the car's other
    verified readings."""
    async with conn.transaction():
        old = await find_reading(conn, reading_id)
        if old is None:
            raise CorrectionRefused("reading_not_found", "No reading has this id.")
        await lock_vehicles(conn, [old["vehicle_id"]])
        old = await conn.fetchrow(
            "select * from readings where id = $1 and recorded_at = $2 for update", reading_id, old["recorded_at"]
        )
        assert old is not None
        if old["status"] != "verified":
            raise CorrectionRefused("reading_not_verified", "Only a verified reading can be corrected.")
        if old["odometer_m"] == odometer_m:
            raise CorrectionRefused("correction_unchanged", "The corrected value equals the reading.")
        await conn.execute(
            "update readings set status = 'superseded' where id = $1 and recorded_at = $2",
            reading_id,
            old["recorded_at"],
        )
        stored = await store_verified_reading(
            conn,
            NewReading(
                vehicle_id=old["vehicle_id"],
                odometer_m=odometer_m,
                recorded_at=old["recorded_at"],
                source="reviewer",
                captured_at=old["captured_at"],
                uploaded_at=old["uploaded_at"],
                approved_at=approved_at,
                submission_id=old["submission_id"],
            ),
            quarantine=False,
            limits=limits,
        )
        if stored.reading_id is None:
            raise CorrectionRefused(
                "reading_conflicts",
                "The corrected value conflicts with the car's other verified readings.",
                tuple(stored.reasons),
            )
        return Correction(superseded=old, reading_id=stored.reading_id)


async def verified_readings_of(conn: Conn | asyncpg.Pool, vehicle_id: int, limit: int = 200) -> list[asyncpg.Record]:
    """The car's most recent verified readings, oldest first (what the dispute page charts)."""
    rows = await conn.fetch(
        """select id, odometer_m, recorded_at, source from readings
           where vehicle_id = $1 and status = 'verified' order by recorded_at desc limit $2""",
        vehicle_id,
        limit,
    )
    return list(reversed(rows))


async def readings_of(conn: Conn | asyncpg.Pool, vehicle_id: int, limit: int = 500) -> list[asyncpg.Record]:
    """The car's verified and superseded readings, newest first."""
    return await conn.fetch(
        """select id, odometer_m, recorded_at, received_at, source, status, provider_id, captured_at,
                  uploaded_at, approved_at, submission_id
           from readings where vehicle_id = $1 order by recorded_at desc, id desc limit $2""",
        vehicle_id,
        limit,
    )
