"""Owners, vehicles and participations."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import asyncpg

from storage.db import Conn


class DuplicateVehicle(Exception):
    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


class ActiveParticipationExists(Exception):
    pass


@dataclass(frozen=True)
class NewVehicle:
    owner_id: str
    plate: str
    plate_key: str
    vin: str
    district: str
    registration_region: str
    use: str
    vehicle_type: str
    seats: int
    fuel: str
    first_registration_date: date
    acquired_date: date | None
    acquired_odometer_m: int | None
    emission_certificate: str | None
    low_emission_class: int | None
    model: str | None


_VEHICLE_COLUMNS = (
    "owner_id, plate, plate_key, vin, district, registration_region, use, vehicle_type, seats, fuel,"
    " first_registration_date, acquired_date, acquired_odometer_m, emission_certificate,"
    " low_emission_class, model"
)


async def insert_vehicle(conn: Conn, v: NewVehicle) -> asyncpg.Record:
    async with conn.transaction():
        await conn.execute(
            "insert into owners (id, district) values ($1, $2) on conflict (id) do nothing",
            v.owner_id,
            v.district,
        )
        try:
            row = await conn.fetchrow(
                f"""insert into vehicles ({_VEHICLE_COLUMNS})
                    values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
                    returning *""",
                v.owner_id,
                v.plate,
                v.plate_key,
                v.vin,
                v.district,
                v.registration_region,
                v.use,
                v.vehicle_type,
                v.seats,
                v.fuel,
                v.first_registration_date,
                v.acquired_date,
                v.acquired_odometer_m,
                v.emission_certificate,
                v.low_emission_class,
                v.model,
            )
        except asyncpg.UniqueViolationError as e:
            field = "vin" if "vin" in (e.constraint_name or "") else "plate"
            raise DuplicateVehicle(field) from None
    assert row is not None
    return row


async def get_vehicle(conn: Conn | asyncpg.Pool, vehicle_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow("select * from vehicles where id = $1", vehicle_id)


async def list_vehicles(conn: Conn | asyncpg.Pool, owner_id: str) -> list[asyncpg.Record]:
    return await conn.fetch("select * from vehicles where owner_id = $1 order by id", owner_id)


async def participations_of(
    conn: Conn | asyncpg.Pool, vehicle_ids: list[int]
) -> list[asyncpg.Record]:
    return await conn.fetch(
        "select * from participations where vehicle_id = any($1::bigint[]) order by id", vehicle_ids
    )


async def insert_participation(
    conn: Conn,
    *,
    vehicle_id: int,
    program: str,
    season_year: int | None,
    rule_set: str,
    enrolled_on: date,
    baseline_daily_km: Decimal | None,
    baseline_note: str | None,
) -> asyncpg.Record:
    try:
        row = await conn.fetchrow(
            """insert into participations
                   (vehicle_id, program, season_year, rule_set, enrolled_on, baseline_daily_km, baseline_note)
               values ($1, $2, $3, $4, $5, $6, $7) returning *""",
            vehicle_id,
            program,
            season_year,
            rule_set,
            enrolled_on,
            baseline_daily_km,
            baseline_note,
        )
    except asyncpg.UniqueViolationError:
        raise ActiveParticipationExists() from None
    assert row is not None
    return row


async def get_participation(
    conn: Conn | asyncpg.Pool, participation_id: int
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """select p.*, v.owner_id, v.district, v.plate, v.vin
           from participations p join vehicles v on v.id = p.vehicle_id where p.id = $1""",
        participation_id,
    )


#: End reasons after which the car itself leaves the programme under this owner.
RETIRING_REASONS = frozenset({"ownership_transfer", "moved_out_of_seoul", "scrapped"})


async def end_participation(
    conn: Conn, participation_id: int, reason: str, ended_on: date
) -> asyncpg.Record | None:
    """End an active participation; retire the car when it changed hands, moved or was scrapped.

    Returns None when the participation was not active (already ended)."""
    async with conn.transaction():
        row = await conn.fetchrow(
            """update participations
               set status = 'ended', end_reason = $2, ended_on = $3, ended_at = now()
               where id = $1 and status = 'active' returning *""",
            participation_id,
            reason,
            ended_on,
        )
        if row is None:
            return None
        if reason in RETIRING_REASONS:
            await conn.execute(
                """update participations set status = 'ended', end_reason = $2, ended_on = $3,
                          ended_at = now()
                   where vehicle_id = $1 and status = 'active'""",
                row["vehicle_id"],
                reason,
                ended_on,
            )
            await conn.execute(
                "update vehicles set status = 'retired', retired_at = now() where id = $1",
                row["vehicle_id"],
            )
    return row
