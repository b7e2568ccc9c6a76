"""An operator's check of a car's registration certificate (자동차등록증), shared by the API and
the `carmileage ownership` command: the check and every change it causes are written to the
append-only audit log in the same transaction.

Why: a member's enrolment only declares ownership. Until an operator has seen the certificate,
the car takes no part, no provider may send its readings and its member sees no readings or
results, so whoever enrols someone else's VIN first gains nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import asyncpg

from prorate.calendar import seoul_today
from storage.audit import write_audit
from storage.db import Conn
from storage.vehicles import (
    OwnershipVerified,
    get_vehicle,
    refuse_ownership,
    verify_ownership,
)

#: A certificate's document number as printed (digits, Latin or Hangul letters, hyphens); spaces
#: and the "제 … 호" wrapping are dropped.
_CERTIFICATE = re.compile(r"^[0-9A-Z가-힣][0-9A-Z가-힣-]{2,38}[0-9A-Z가-힣]$")


class CertificateNumberInvalid(ValueError):
    pass


def normalize_certificate_no(text: str) -> str:
    """`제 2021-012345 호` -> `2021-012345`; refuses anything that is not a document number."""
    compact = re.sub(r"\s+", "", text).upper()
    if compact.startswith("제") and compact.endswith("호") and len(compact) > 2:
        compact = compact[1:-1]
    if not _CERTIFICATE.match(compact):
        raise CertificateNumberInvalid(
            "registration_certificate_no must be the certificate's document number: 4-40 digits, "
            "letters or hyphens"
        )
    return compact


@dataclass(frozen=True)
class Actor:
    role: str
    id: str
    request_id: str | None = None


def _state(row: asyncpg.Record) -> dict[str, Any]:
    return {"status": row["status"], "owner_id": row["owner_id"]}


async def record_verification(
    conn: Conn,
    vehicle_id: int,
    *,
    certificate_no: str,
    vin: str,
    transfer: bool,
    actor: Actor,
) -> OwnershipVerified:
    """Verify a claim against a certificate; audit the check, each car retired by a transfer and
    each competing claim refused."""
    async with conn.transaction():
        before = await get_vehicle(conn, vehicle_id)
        done = await verify_ownership(
            conn,
            vehicle_id,
            certificate_no=certificate_no,
            vin=vin,
            checked_by=actor.id,
            transfer=transfer,
            today=seoul_today(),
        )
        assert before is not None
        await write_audit(
            conn,
            actor_role=actor.role,
            actor_id=actor.id,
            action="vehicle.ownership_verify",
            entity="vehicle",
            entity_id=str(vehicle_id),
            before=_state(before),
            after={
                **_state(done.vehicle),
                "registration_certificate_no": certificate_no,
                "vin": vin,
                "checked_at": done.vehicle["ownership_checked_at"].isoformat(),
                "transfer": transfer,
                "retired_vehicle_ids": [r["id"] for r in done.retired],
                "refused_claim_ids": [r["id"] for r in done.refused],
            },
            request_id=actor.request_id,
        )
        for r in done.retired:
            await write_audit(
                conn,
                actor_role=actor.role,
                actor_id=actor.id,
                action="vehicle.ownership_transfer",
                entity="vehicle",
                entity_id=str(r["id"]),
                before={"status": "active", "owner_id": r["owner_id"]},
                after={"status": "retired", "new_owner_vehicle_id": vehicle_id},
                request_id=actor.request_id,
            )
        for r in done.refused:
            await write_audit(
                conn,
                actor_role=actor.role,
                actor_id=actor.id,
                action="vehicle.ownership_refuse",
                entity="vehicle",
                entity_id=str(r["id"]),
                before={"status": "pending", "owner_id": r["owner_id"]},
                after={"status": "refused", "reason": "not_registered_owner", "verified_vehicle_id": vehicle_id},
                request_id=actor.request_id,
            )
    return done


async def record_refusal(
    conn: Conn, vehicle_id: int, *, reason: str, note: str | None, actor: Actor
) -> asyncpg.Record:
    """Refuse a claim (or withdraw a verification) and audit it."""
    async with conn.transaction():
        before, after = await refuse_ownership(
            conn, vehicle_id, reason=reason, note=note, checked_by=actor.id, today=seoul_today()
        )
        await write_audit(
            conn,
            actor_role=actor.role,
            actor_id=actor.id,
            action="vehicle.ownership_refuse",
            entity="vehicle",
            entity_id=str(vehicle_id),
            before=_state(before),
            after={**_state(after), "reason": reason, "note": note,
                   "checked_at": after["ownership_checked_at"].isoformat()},
            request_id=actor.request_id,
        )
    return after
