"""`carmileage ownership list|verify|refuse`: the operator's check of registration certificates.

A member's enrolment is a claim until an operator has compared the registration certificate
(자동차등록증) with it: `verify` records who checked, against which document number and when, and
makes the car active; `refuse` refuses the claim (or withdraws an earlier verification). Both are
audited, exactly like the same check made over the API (`POST /v1/vehicles/{id}/ownership-checks`).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
from typing import Any

import asyncpg

from ingest.ownership import (
    Actor,
    CertificateNumberInvalid,
    normalize_certificate_no,
    record_refusal,
    record_verification,
)
from ingest.settings import load_settings
from prorate.identifiers import IdentifierError, parse_vin
from storage.db import create_pool
from storage.vehicles import REFUSAL_REASONS, OwnershipCheckRefused, pending_claims

EXIT_REFUSED = 1


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    p = sub.add_parser("ownership", help="check registration certificates: verify or refuse members' car claims")
    osub = p.add_subparsers(dest="ownership_command", required=True)

    ls = osub.add_parser("list", help="claims waiting for a check, oldest first")
    ls.add_argument("--unchecked", action="store_true", help="active cars enrolled before checks existed")
    ls.add_argument("--limit", type=int, default=200)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=run_list)

    v = osub.add_parser("verify", help="the certificate names this claim's member as the owner")
    v.add_argument("vehicle_id", type=int)
    v.add_argument("--certificate", required=True, help="the certificate's document number, as printed")
    v.add_argument("--vin", required=True, help="the VIN (차대번호) as printed on the certificate")
    v.add_argument(
        "--transfer",
        action="store_true",
        help="another member's active car with this VIN or plate changed hands: retire it",
    )
    v.add_argument("--operator", help="who checked (default: cli:<login name>)")
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=run_verify)

    r = osub.add_parser("refuse", help="refuse a claim, or withdraw an earlier verification")
    r.add_argument("vehicle_id", type=int)
    r.add_argument("--reason", required=True, choices=REFUSAL_REASONS)
    r.add_argument("--note", help="a sentence the member sees")
    r.add_argument("--operator", help="who checked (default: cli:<login name>)")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=run_refuse)


def _actor(args: argparse.Namespace) -> Actor:
    return Actor("operator", args.operator or f"cli:{getpass.getuser()}")


async def _with_conn(fn: Any) -> Any:
    pool = await create_pool(load_settings().database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            return await fn(conn)
    finally:
        await pool.close()


def _vehicle(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "owner_id": row["owner_id"],
        "plate": row["plate"],
        "vin": row["vin"],
        "status": row["status"],
        "enrolled_at": row["created_at"].isoformat(),
        "ownership_checked_by": row["ownership_checked_by"],
        "ownership_checked_at": row["ownership_checked_at"].isoformat() if row["ownership_checked_at"] else None,
        "registration_certificate_no": row["registration_certificate_no"],
        "ownership_refusal": row["ownership_refusal"],
    }


def run_list(args: argparse.Namespace) -> int:
    rows = asyncio.run(_with_conn(lambda c: pending_claims(c, unchecked=args.unchecked, limit=args.limit)))
    out = [
        {**_vehicle(r), "competing_claims": r["competing_claims"], "held_by_vehicle": r["held_by_vehicle"]}
        for r in rows
    ]
    if args.json:
        print(json.dumps(out, ensure_ascii=False))
        return 0
    for c in out:
        flags = []
        if c["competing_claims"]:
            flags.append(f"{c['competing_claims']} other claim(s) of this VIN")
        if c["held_by_vehicle"]:
            flags.append(f"held by vehicle {c['held_by_vehicle']}")
        print(
            f"{c['id']:>8}  {c['vin']}  {c['plate']:<12} {c['owner_id']:<24} {c['enrolled_at'][:16]}  "
            + "; ".join(flags)
        )
    return 0


def _fail(e: OwnershipCheckRefused) -> int:
    held = f" (vehicles {', '.join(map(str, e.holders))})" if e.holders else ""
    print(f"carmileage: {e.code}: {e.message}{held}")
    return EXIT_REFUSED


def run_verify(args: argparse.Namespace) -> int:
    try:
        certificate = normalize_certificate_no(args.certificate)
        vin = parse_vin(args.vin).text
    except (CertificateNumberInvalid, IdentifierError) as e:
        raise SystemExit(f"carmileage: {e}") from None
    actor = _actor(args)

    async def go(conn: asyncpg.Connection) -> Any:
        return await record_verification(
            conn, args.vehicle_id, certificate_no=certificate, vin=vin, transfer=args.transfer, actor=actor
        )

    try:
        done = asyncio.run(_with_conn(go))
    except OwnershipCheckRefused as e:
        return _fail(e)
    out = {
        "vehicle": _vehicle(done.vehicle),
        "retired_vehicle_ids": [r["id"] for r in done.retired],
        "refused_claim_ids": [r["id"] for r in done.refused],
    }
    if args.json:
        print(json.dumps(out, ensure_ascii=False))
    else:
        print(f"vehicle {args.vehicle_id} verified against certificate {certificate} by {actor.id}")
        if out["retired_vehicle_ids"]:
            print(f"  retired (ownership transfer): {', '.join(map(str, out['retired_vehicle_ids']))}")
        if out["refused_claim_ids"]:
            print(f"  other claims of this VIN refused: {', '.join(map(str, out['refused_claim_ids']))}")
    return 0


def run_refuse(args: argparse.Namespace) -> int:
    actor = _actor(args)

    async def go(conn: asyncpg.Connection) -> Any:
        return await record_refusal(conn, args.vehicle_id, reason=args.reason, note=args.note, actor=actor)

    try:
        row = asyncio.run(_with_conn(go))
    except OwnershipCheckRefused as e:
        return _fail(e)
    if args.json:
        print(json.dumps(_vehicle(row), ensure_ascii=False))
    else:
        print(f"vehicle {args.vehicle_id} refused ({args.reason}) by {actor.id}")
    return 0
