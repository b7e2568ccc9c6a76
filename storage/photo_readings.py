"""Photo and reviewer readings, stored through the telematics path (`storage.readings`).

The order-free checks (never decreasing by recorded_at, plausible speed and daily distance, not in
the future, unit jumps) and the per-vehicle lock are those of `storage.readings` and
`telematics.checks`; this module only adapts a photo reading to them and points the participation
at its start or end reading.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime

from prorate.calendar import seoul_date
from storage.db import Conn
from storage.readings import NewReading, Source, check_reasons, store_verified_reading
from telematics.checks import DEFAULT_LIMITS, Limits


@dataclass(frozen=True)
class StoredReading:
    """Either the verified reading's id, or the reasons the checks refused it."""

    reading_id: int | None
    reasons: tuple[str, ...] = ()


async def reading_date(conn: Conn, reading_id: int) -> date | None:
    recorded_at = await conn.fetchval("select recorded_at from readings where id = $1", reading_id)
    return seoul_date(recorded_at) if recorded_at is not None else None


async def check_reasons_for(
    conn: Conn, vehicle_id: int, odometer_m: int, recorded_at: datetime, limits: Limits = DEFAULT_LIMITS
) -> list[str]:
    """What the telematics order-free checks say about a reading against the car's verified
    readings (a preview: `store_photo_reading` checks again under the vehicle's lock)."""
    return list(await check_reasons(conn, vehicle_id, odometer_m, recorded_at, limits=limits))


async def store_photo_reading(
    conn: Conn,
    *,
    vehicle_id: int,
    odometer_m: int,
    recorded_at: datetime,
    source: Source,
    captured_at: datetime | None,
    uploaded_at: datetime | None,
    approved_at: datetime | None,
    submission_id: int | None,
    stage: str | None,
    participation_id: int | None,
    ignore: Collection[str] = (),
    limits: Limits = DEFAULT_LIMITS,
) -> StoredReading:
    """Store a verified reading in the caller's transaction and link it to its participation.

    Refused readings are not quarantined: the photo flow keeps them as a photo dispute instead."""
    stored = await store_verified_reading(
        conn,
        NewReading(
            vehicle_id=vehicle_id,
            odometer_m=odometer_m,
            recorded_at=recorded_at,
            source=source,
            captured_at=captured_at,
            uploaded_at=uploaded_at,
            approved_at=approved_at,
            submission_id=submission_id,
        ),
        quarantine=False,
        ignore=ignore,
        limits=limits,
    )
    if stored.reading_id is None:
        return StoredReading(reading_id=None, reasons=stored.reasons)
    if participation_id is not None and stage in ("start", "end"):
        await conn.execute(
            f"update participations set {stage}_reading_id = $2 where id = $1",
            participation_id,
            stored.reading_id,
        )
    return StoredReading(reading_id=stored.reading_id)
