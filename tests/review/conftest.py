"""Disputes made directly in SQL (fast enough for hundreds), as the OCR worker would leave them."""

from __future__ import annotations

import hashlib
import itertools
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from storage.db import Conn


@dataclass
class PhotoCase:
    dispute_id: int
    submission_id: int
    participation_id: int
    vehicle_id: int
    owner_id: str
    plate: str
    dashboard_sha256: str
    plate_sha256: str


def _sha(tag: str) -> str:
    return hashlib.sha256(tag.encode()).hexdigest()


_PLATES = itertools.count(uuid.uuid4().int % 5_000_000)


def _plate() -> str:
    """Unique within a run (plates of active cars must be): 100러0000, 100러0001, ..."""
    n = next(_PLATES)
    return f"{100 + (n // 10000) % 600}러{n % 10000:04d}"


async def make_photo_case(
    conn: Conn,
    *,
    claimed_km: int = 50_000,
    ocr_km: int | None = 50_000,
    reasons: tuple[str, ...] = ("plate_not_confirmed",),
    district: str = "강남구",
    stage: str = "start",
    created_at: datetime | None = None,
    photo_shas: tuple[str, str] | None = None,
) -> PhotoCase:
    """A car, its participation, a photo submission in review and its open dispute."""
    tag = uuid.uuid4().hex
    owner = f"citizen-{tag[:10]}"
    n = uuid.uuid4().int
    plate = _plate()
    await conn.execute("insert into owners (id, district) values ($1, $2)", owner, district)
    vin = "KMH" + "".join("ABCDEFGHJKLMNPRSTUVWXYZ0123456789"[(n >> (5 * i)) % 33] for i in range(14))
    vehicle_id = await conn.fetchval(
        """insert into vehicles (owner_id, plate, plate_key, vin, district, registration_region, use,
                                 vehicle_type, seats, fuel, first_registration_date)
           values ($1, $2, $2, $3, $4, '서울', 'non_commercial', 'passenger', 5, 'gasoline', '2018-03-01')
           returning id""",
        owner,
        plate,
        vin,
        district,
    )
    participation_id = await conn.fetchval(
        """insert into participations (vehicle_id, program, rule_set, enrolled_on)
           values ($1, 'annual', 'seoul-2022', current_date) returning id""",
        vehicle_id,
    )
    dash_sha, plate_sha = photo_shas or (_sha("d" + tag), _sha("p" + tag))
    for sha in (dash_sha, plate_sha):
        await conn.execute(
            """insert into photos (sha256, content_type, size_bytes, width, height)
               values ($1, 'image/jpeg', 1000, 960, 640) on conflict do nothing""",
            sha,
        )
    uploaded = datetime.now(UTC) - timedelta(minutes=3)
    decision = {
        "outcome": "in_review",
        "reasons": list(reasons),
        "captured_at": (uploaded - timedelta(minutes=5)).isoformat(),
        "recorded_at": (uploaded - timedelta(minutes=5)).isoformat(),
    }
    submission_id = await conn.fetchval(
        """insert into photo_submissions (participation_id, stage, claimed_km, dashboard_sha256, plate_sha256,
                                          status, reasons, uploaded_by, uploaded_at, decision, decided_at)
           values ($1, $2, $3, $4, $5, 'in_review', $6, $7, $8, $9, now()) returning id""",
        participation_id,
        stage,
        claimed_km,
        dash_sha,
        plate_sha,
        list(reasons),
        owner,
        uploaded,
        decision,
    )
    result: dict[str, Any] = {
        "dashboard": {
            "read": {
                "value_km": ocr_km,
                "confidence": 0.7,
                "auto_accept": False,
                "candidates": [[ocr_km, 0.7], [ocr_km + 1 if ocr_km is not None else 1, 0.2]] if ocr_km is not None else [],
                "box": [300, 400, 360, 110],
                "display": "lcd",
                "reasons": ["low_confidence"],
                "claim_confirmed": False,
            },
            "intake": {"ok": True, "width": 960, "height": 640, "reasons": []},
        },
        "plate": {
            "read": {"text": None, "confidence": 0.1, "candidates": [], "box": None, "reasons": ["no_plate_found"]},
            "intake": {"ok": True, "width": 960, "height": 640, "reasons": []},
        },
    }
    await conn.execute(
        "insert into ocr_jobs (submission_id, status, attempts, result) values ($1, 'done', 1, $2)",
        submission_id,
        result,
    )
    dispute_id = await conn.fetchval(
        """insert into disputes (kind, vehicle_id, submission_id, district, reasons, details, created_at)
           values ('photo', $1, $2, $3, $4, $5, coalesce($6, now())) returning id""",
        vehicle_id,
        submission_id,
        district,
        list(reasons),
        {"stage": stage, "claimed_km": claimed_km, "odometer_value_km": ocr_km, "enrolled_plate": plate},
        created_at,
    )
    return PhotoCase(dispute_id, submission_id, participation_id, vehicle_id, owner, plate, dash_sha, plate_sha)


async def resolve_count(pool: asyncpg.Pool | Conn, dispute_id: int) -> int:
    n: int = await pool.fetchval(
        "select count(*) from audit_log where entity = 'dispute' and entity_id = $1 and action = 'dispute.resolve'",
        str(dispute_id),
    )
    return n


async def make_car(conn: Conn, district: str) -> tuple[int, str]:
    """A car of its own (no participation), for telematics cases; (vehicle_id, owner_id)."""
    owner = f"citizen-{uuid.uuid4().hex[:10]}"
    await conn.execute("insert into owners (id, district) values ($1, $2)", owner, district)
    n = uuid.uuid4().int
    vin = "KMH" + "".join("ABCDEFGHJKLMNPRSTUVWXYZ0123456789"[(n >> (5 * i)) % 33] for i in range(14))
    vehicle_id: int = await conn.fetchval(
        """insert into vehicles (owner_id, plate, plate_key, vin, district, registration_region, use,
                                 vehicle_type, seats, fuel, first_registration_date)
           values ($1, $2, $2, $3, $4, '서울', 'non_commercial', 'passenger', 5, 'gasoline', '2018-03-01')
           returning id""",
        owner,
        _plate(),
        vin,
        district,
    )
    return vehicle_id, owner
