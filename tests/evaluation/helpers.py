"""Direct SQL factories for evaluation tests: cars, readings and participations in any state."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import asyncpg

from storage.tokens import create_token

SEOUL = ZoneInfo("Asia/Seoul")


def seoul(d: date, hour: int = 12) -> datetime:
    return datetime.combine(d, time(hour), tzinfo=SEOUL)


@dataclass
class Car:
    vehicle_id: int
    owner_id: str


async def make_car(
    conn: asyncpg.Connection,
    *,
    district: str = "강남구",
    first_registration: date = date(2018, 3, 1),
    acquired: date | None = None,
    acquired_m: int | None = None,
) -> Car:
    owner = f"owner-{uuid.uuid4().hex[:10]}"
    await conn.execute("insert into owners (id, district) values ($1, $2)", owner, district)
    vid = await conn.fetchval(
        """insert into vehicles (owner_id, plate, plate_key, vin, district, registration_region, use,
                                 vehicle_type, seats, fuel, first_registration_date, acquired_date,
                                 acquired_odometer_m)
           values ($1, $2, $2, $3, $4, '서울', 'non_commercial', 'passenger', 5, 'gasoline', $5, $6, $7)
           returning id""",
        owner,
        f"12가{uuid.uuid4().int % 10000:04d}-{uuid.uuid4().hex[:6]}",
        "KMH" + uuid.uuid4().hex[:14].upper().replace("I", "A").replace("O", "B").replace("Q", "C"),
        district,
        first_registration,
        acquired,
        acquired_m,
    )
    return Car(vid, owner)


async def add_reading(
    conn: asyncpg.Connection,
    car: Car,
    odometer_m: int,
    on: date,
    *,
    verified_at: datetime | None = None,
    source: str = "telematics",
    captured_at: datetime | None = None,
    uploaded_at: datetime | None = None,
    approved_at: datetime | None = None,
) -> int:
    rid: int = await conn.fetchval(
        """insert into readings (vehicle_id, odometer_m, recorded_at, source, captured_at, uploaded_at,
                                 approved_at, verified_at)
           values ($1, $2, $3, $4, $5, $6, $7, $8) returning id""",
        car.vehicle_id,
        odometer_m,
        seoul(on),
        source,
        captured_at,
        uploaded_at,
        approved_at,
        verified_at or seoul(on) + timedelta(hours=1),
    )
    return rid


async def make_participation(
    conn: asyncpg.Connection,
    car: Car,
    *,
    start: tuple[date, int],
    end: tuple[date, int] | None,
    program: str = "annual",
    season_year: int | None = None,
    rule_set: str = "seoul-2022",
    override_km: Decimal | None = None,
    end_verified_at: datetime | None = None,
) -> int:
    sid = await add_reading(conn, car, start[1], start[0])
    eid = (
        await add_reading(conn, car, end[1], end[0], verified_at=end_verified_at) if end is not None else None
    )
    pid: int = await conn.fetchval(
        """insert into participations (vehicle_id, program, season_year, rule_set, enrolled_on,
                                       baseline_daily_km, start_reading_id, end_reading_id)
           values ($1, $2, $3, $4, $5, $6, $7, $8) returning id""",
        car.vehicle_id,
        program,
        season_year,
        rule_set,
        start[0],
        override_km,
        sid,
        eid,
    )
    return pid


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# -- connected cars (storage/period_readings.py) ----------------------------------------------


async def connect_car(
    conn: asyncpg.Connection,
    car: Car,
    *,
    granted_at: datetime | None = None,
    withdrawn_at: datetime | None = None,
) -> int:
    """A provider's consent for the car (a provider of its own); returns the provider id."""
    provider_id: int = await conn.fetchval(
        "insert into providers (name) values ($1) returning id", f"maker-{uuid.uuid4().hex[:10]}"
    )
    await conn.execute(
        "insert into vehicle_consents (provider_id, vehicle_id, granted_at, withdrawn_at) values ($1, $2, $3, $4)",
        provider_id,
        car.vehicle_id,
        granted_at or utc(2020, 1, 1),
        withdrawn_at,
    )
    return provider_id


async def enrol(
    conn: asyncpg.Connection,
    car: Car,
    enrolled_on: date,
    *,
    program: str = "annual",
    season_year: int | None = None,
    rule_set: str = "seoul-2022",
) -> int:
    """A participation without readings, as enrolment leaves it."""
    pid: int = await conn.fetchval(
        """insert into participations (vehicle_id, program, season_year, rule_set, enrolled_on)
           values ($1, $2, $3, $4, $5) returning id""",
        car.vehicle_id,
        program,
        season_year,
        rule_set,
        enrolled_on,
    )
    return pid


async def stream(
    conn: asyncpg.Connection,
    car: Car,
    first: date,
    last: date,
    *,
    every_days: int = 1,
    start_m: int = 40_000_000,
    m_per_day: int = 30_000,
) -> dict[date, int]:
    """A provider's readings of the car, one at noon every `every_days` from `first` to `last`,
    each verified an hour after it was recorded; returns reading ids by date."""
    ids: dict[date, int] = {}
    day = first
    while day <= last:
        ids[day] = await add_reading(conn, car, start_m + (day - first).days * m_per_day, day)
        day += timedelta(days=every_days)
    return ids


async def pointers(conn: asyncpg.Connection, pid: int) -> tuple[int | None, int | None]:
    row = await conn.fetchrow(
        "select start_reading_id, end_reading_id from participations where id = $1", pid
    )
    assert row is not None
    return row[0], row[1]


async def bearer(pool: asyncpg.Pool, role: str, subject: str) -> dict[str, str]:
    """An Authorization header for a new token of `role` for `subject`."""
    async with pool.acquire() as c:
        return {"Authorization": f"Bearer {(await create_token(c, role, subject))[1]}"}
