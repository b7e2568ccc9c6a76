"""Owners, vehicles and participations, and the operator's check of who owns a car.

A member's enrolment is a claim (`pending`) until an operator has checked the registration
certificate: then the car becomes `active` (it takes part, gets consents, is matched to providers'
readings) or `refused`. Several members may claim one VIN; none learns of the others.
"""

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


class OwnershipCheckRefused(Exception):
    """The check cannot be recorded in the car's present state (code says why)."""

    def __init__(self, code: str, message: str, holders: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        #: Active cars of other members with the same VIN or plate (a conflict).
        self.holders = holders


#: Why an operator refuses a claim, or withdraws an earlier verification.
REFUSAL_REASONS = ("not_registered_owner", "document_invalid", "vehicle_mismatch", "other")


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


async def own_claim_of(conn: Conn, owner_id: str, vin: str, plate_key: str) -> str | None:
    """'vin' or 'plate' when this member already has this car enrolled or claimed (their own
    data: saying so reveals nothing about other members)."""
    row = await conn.fetchrow(
        """select vin = $2 as same_vin from vehicles
           where owner_id = $1 and status in ('pending', 'active') and (vin = $2 or plate_key = $3)
           order by (vin = $2) desc limit 1""",
        owner_id,
        vin,
        plate_key,
    )
    if row is None:
        return None
    return "vin" if row["same_vin"] else "plate"


async def insert_vehicle(conn: Conn, v: NewVehicle) -> asyncpg.Record:
    """A new claim (status `pending`), whatever other members enrolled."""
    async with conn.transaction():
        await conn.execute(
            "insert into owners (id, district) values ($1, $2) on conflict (id) do nothing",
            v.owner_id,
            v.district,
        )
        try:
            row = await conn.fetchrow(
                f"""insert into vehicles ({_VEHICLE_COLUMNS}, status)
                    values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                            'pending')
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
        except asyncpg.UniqueViolationError:
            # only the member's own pending claim of this VIN can collide (vehicles_pending_claim)
            raise DuplicateVehicle("vin") from None
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
        """select p.*, v.owner_id, v.district, v.plate, v.vin, v.status as vehicle_status
           from participations p join vehicles v on v.id = p.vehicle_id where p.id = $1""",
        participation_id,
    )


async def lock_participation(conn: Conn, participation_id: int) -> None:
    """Serialise the decisions about one participation (its start and end pointers, its stage
    checks) until the caller's transaction ends."""
    await conn.execute("select 1 from participations where id = $1 for update", participation_id)


async def active_vehicles_by_vin(conn: Conn | asyncpg.Pool, vins: list[str]) -> list[asyncpg.Record]:
    """The enrolled (active) cars among these VINs: id and vin."""
    return await conn.fetch("select id, vin from vehicles where vin = any($1::text[]) and status = 'active'", vins)


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


# -- ownership checks ---------------------------------------------------------------------------


@dataclass(frozen=True)
class OwnershipVerified:
    vehicle: asyncpg.Record
    #: Other members' active cars retired because the certificate names this member (transfer).
    retired: list[asyncpg.Record]
    #: Other members' pending claims of the same VIN, refused as not the registered owner.
    refused: list[asyncpg.Record]


async def pending_claims(conn: Conn | asyncpg.Pool, *, unchecked: bool = False, limit: int = 200) -> list[asyncpg.Record]:
    """Claims waiting for a check, oldest first, each with how many other members claim the same
    VIN and which active car (if any) holds its VIN or plate. `unchecked`: active cars enrolled
    before checks existed, never checked."""
    where = "v.status = 'active' and v.ownership_checked_at is null" if unchecked else "v.status = 'pending'"
    return await conn.fetch(
        f"""select v.*,
                   (select count(*) from vehicles o
                    where o.vin = v.vin and o.status = 'pending' and o.id <> v.id) as competing_claims,
                   (select h.id from vehicles h
                    where h.status = 'active' and h.id <> v.id and (h.vin = v.vin or h.plate_key = v.plate_key)
                    order by h.id limit 1) as held_by_vehicle
            from vehicles v where {where} order by v.created_at, v.id limit $1""",
        limit,
    )


async def _end_participations(conn: Conn, vehicle_id: int, reason: str, ended_on: date) -> None:
    await conn.execute(
        """update participations set status = 'ended', end_reason = $2, ended_on = greatest($3, enrolled_on),
                  ended_at = now()
           where vehicle_id = $1 and status = 'active'""",
        vehicle_id,
        reason,
        ended_on,
    )


async def _withdraw_all_consents(conn: Conn, vehicle_id: int) -> None:
    await conn.execute(
        "update vehicle_consents set withdrawn_at = now() where vehicle_id = $1 and withdrawn_at is null",
        vehicle_id,
    )


async def verify_ownership(
    conn: Conn,
    vehicle_id: int,
    *,
    certificate_no: str,
    vin: str,
    checked_by: str,
    transfer: bool,
    today: date,
) -> OwnershipVerified:
    """Record that the registration certificate `certificate_no` names this claim's member as the
    owner of the car with this VIN: the claim becomes active (an active car never checked gets the
    check recorded). Other members' pending claims of the VIN are refused. An active car of another
    member with the same VIN or plate is a conflict unless `transfer` (the car changed hands): it is
    then retired and its participations end as an ownership transfer."""
    async with conn.transaction():
        v = await conn.fetchrow("select * from vehicles where id = $1 for update", vehicle_id)
        if v is None:
            raise OwnershipCheckRefused("vehicle_not_found", "No car is enrolled under this id.")
        if v["vin"] != vin:
            raise OwnershipCheckRefused(
                "vin_mismatch", "The VIN on the certificate is not the VIN of this claim; refuse it instead."
            )
        if v["status"] not in ("pending", "active"):
            raise OwnershipCheckRefused(
                "not_checkable", f"This car is {v['status']}; the member enrols it again to be checked."
            )
        holders = await conn.fetch(
            """select * from vehicles
               where status = 'active' and id <> $1 and (vin = $2 or plate_key = $3)
               order by id for update""",
            vehicle_id,
            v["vin"],
            v["plate_key"],
        )
        if holders and not transfer:
            raise OwnershipCheckRefused(
                "held_by_another_member",
                "Another member's active car has this VIN or plate. If the certificate shows the car "
                "changed hands, verify with transfer; if that member is not the owner, refuse theirs.",
                tuple(h["id"] for h in holders),
            )
        retired: list[asyncpg.Record] = []
        for h in holders:
            await _end_participations(conn, h["id"], "ownership_transfer", today)
            await _withdraw_all_consents(conn, h["id"])
            row = await conn.fetchrow(
                "update vehicles set status = 'retired', retired_at = now() where id = $1 returning *", h["id"]
            )
            assert row is not None
            retired.append(row)
        try:
            row = await conn.fetchrow(
                """update vehicles set status = 'active', ownership_checked_by = $2, ownership_checked_at = now(),
                          registration_certificate_no = $3, ownership_refusal = null, ownership_note = null
                   where id = $1 returning *""",
                vehicle_id,
                checked_by,
                certificate_no,
            )
        except asyncpg.UniqueViolationError:
            # another operator verified a competing claim at the same moment
            raise OwnershipCheckRefused(
                "held_by_another_member", "Another claim of this car was verified just now."
            ) from None
        refused = await conn.fetch(
            """update vehicles set status = 'refused', ownership_refusal = 'not_registered_owner',
                      ownership_checked_by = $3, ownership_checked_at = now(),
                      ownership_note = 'the registration certificate names another owner'
               where status = 'pending' and vin = $2 and id <> $1 returning *""",
            vehicle_id,
            v["vin"],
            checked_by,
        )
    assert row is not None
    return OwnershipVerified(row, retired, list(refused))


async def refuse_ownership(
    conn: Conn, vehicle_id: int, *, reason: str, note: str | None, checked_by: str, today: date
) -> tuple[asyncpg.Record, asyncpg.Record]:
    """Refuse a claim, or withdraw the verification of an active car (its owner was not the
    registered owner after all): its participations end, its consents are withdrawn, and its
    member no longer sees its readings or results. Returns (before, after)."""
    if reason not in REFUSAL_REASONS:
        raise OwnershipCheckRefused("unknown_reason", f"reason must be one of {', '.join(REFUSAL_REASONS)}")
    async with conn.transaction():
        v = await conn.fetchrow("select * from vehicles where id = $1 for update", vehicle_id)
        if v is None:
            raise OwnershipCheckRefused("vehicle_not_found", "No car is enrolled under this id.")
        if v["status"] not in ("pending", "active"):
            raise OwnershipCheckRefused("not_checkable", f"This car is {v['status']}.")
        if v["status"] == "active":
            await _end_participations(conn, vehicle_id, "ownership_refused", today)
            await _withdraw_all_consents(conn, vehicle_id)
        row = await conn.fetchrow(
            """update vehicles set status = 'refused', ownership_refusal = $2, ownership_note = $3,
                      ownership_checked_by = $4, ownership_checked_at = now(),
                      retired_at = case when status = 'active' then now() else retired_at end
               where id = $1 returning *""",
            vehicle_id,
            reason,
            note,
            checked_by,
        )
    assert row is not None
    return v, row
