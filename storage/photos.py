"""Photo metadata and citizens' photo submissions (the bytes live in the blob store)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from storage.db import Conn

#: Listened to by the OCR workers: a new job is picked up at once rather than at the next poll.
JOBS_CHANNEL = "carmileage_ocr_jobs"


def phash_bits(phash_hex: str | None) -> int | None:
    """A 64-bit perceptual hash (hex) as the signed integer PostgreSQL's bigint holds."""
    if not phash_hex or len(phash_hex) != 16:
        return None
    try:
        v = int(phash_hex, 16)
    except ValueError:
        return None
    return v - (1 << 64) if v >= (1 << 63) else v


#: The widest search radius per band looked up through the band indexes (697 values a band);
#: a wider one (a distance setting over 15 bits) reads every hash instead.
MAX_BAND_RADIUS = 3


def band_neighbours(bits: int, max_distance: int) -> list[list[int]] | None:
    """For each of the hash's four 16-bit bands (high to low), every band value within
    max_distance // 4 bits of it: a hash within `max_distance` bits matches one of them in at
    least one band. None when that radius is too wide for an index lookup to pay."""
    radius = max_distance // 4
    if radius > MAX_BAND_RADIUS:
        return None
    flips = [0]
    for _ in range(radius):
        flips = sorted({f | (1 << b) for f in flips for b in range(16)} | set(flips))
    u = bits & 0xFFFF_FFFF_FFFF_FFFF
    return [[((u >> shift) & 0xFFFF) ^ f for f in flips] for shift in (48, 32, 16, 0)]


async def record_photo(
    conn: Conn,
    *,
    sha256: str,
    content_type: str,
    size_bytes: int,
    width: int | None,
    height: int | None,
) -> None:
    """Content-addressed: the same bytes uploaded twice are one photo."""
    await conn.execute(
        """insert into photos (sha256, content_type, size_bytes, width, height)
           values ($1, $2, $3, $4, $5) on conflict (sha256) do nothing""",
        sha256,
        content_type,
        size_bytes,
        width,
        height,
    )


async def get_photo(conn: Conn | asyncpg.Pool, sha256: str) -> asyncpg.Record | None:
    """A stored photo's facts (type, size, capture time); the bytes are in the blob store."""
    return await conn.fetchrow("select * from photos where sha256 = $1", sha256)


async def update_photo_facts(
    conn: Conn,
    sha256: str,
    *,
    phash: str | None,
    width: int | None,
    height: int | None,
    captured_at: datetime | None,
) -> None:
    await conn.execute(
        """update photos set phash = coalesce($2, phash), phash_bits = coalesce($3, phash_bits),
                  width = coalesce($4, width), height = coalesce($5, height),
                  captured_at = coalesce($6, captured_at)
           where sha256 = $1""",
        sha256,
        phash,
        phash_bits(phash),
        width,
        height,
        captured_at,
    )


@dataclass(frozen=True)
class NewSubmission:
    participation_id: int
    stage: str
    claimed_km: int
    dashboard_sha256: str
    plate_sha256: str
    uploaded_by: str
    request_id: str | None


async def create_submission(
    conn: Conn, s: NewSubmission, *, max_attempts: int
) -> tuple[asyncpg.Record, bool]:
    """Insert the submission and its OCR job in one transaction; (row, created).

    The same photos sent again for the same stage return the earlier submission (created False)."""
    async with conn.transaction():
        row = await conn.fetchrow(
            """insert into photo_submissions
                   (participation_id, stage, claimed_km, dashboard_sha256, plate_sha256, uploaded_by, request_id)
               values ($1, $2, $3, $4, $5, $6, $7)
               on conflict (participation_id, stage, dashboard_sha256, plate_sha256) do nothing
               returning *""",
            s.participation_id,
            s.stage,
            s.claimed_km,
            s.dashboard_sha256,
            s.plate_sha256,
            s.uploaded_by,
            s.request_id,
        )
        if row is None:
            existing = await conn.fetchrow(
                """select * from photo_submissions where participation_id = $1 and stage = $2
                   and dashboard_sha256 = $3 and plate_sha256 = $4""",
                s.participation_id,
                s.stage,
                s.dashboard_sha256,
                s.plate_sha256,
            )
            assert existing is not None
            return existing, False
        job_id = await conn.fetchval(
            "insert into ocr_jobs (submission_id, max_attempts) values ($1, $2) returning id",
            row["id"],
            max_attempts,
        )
        await conn.execute("select pg_notify($1, $2)", JOBS_CHANNEL, str(job_id))
    return row, True


_SUBMISSION_VIEW = """
    select s.*, p.vehicle_id, p.program, p.season_year, p.rule_set, p.enrolled_on, p.status as participation_status,
           p.start_reading_id, p.end_reading_id, v.owner_id, v.plate, v.district
    from photo_submissions s
    join participations p on p.id = s.participation_id
    join vehicles v on v.id = p.vehicle_id
"""


async def get_submission(conn: Conn | asyncpg.Pool, submission_id: int) -> asyncpg.Record | None:
    """The submission with its participation's and car's facts."""
    return await conn.fetchrow(_SUBMISSION_VIEW + " where s.id = $1", submission_id)


async def lock_submission(conn: Conn, submission_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(_SUBMISSION_VIEW + " where s.id = $1 for update of s", submission_id)


async def submissions_of(
    conn: Conn | asyncpg.Pool, participation_id: int, limit: int = 50
) -> list[asyncpg.Record]:
    return await conn.fetch(
        _SUBMISSION_VIEW + " where s.participation_id = $1 order by s.id desc limit $2",
        participation_id,
        limit,
    )


async def submissions_of_owner(
    conn: Conn | asyncpg.Pool, owner_id: str, limit: int = 20
) -> list[asyncpg.Record]:
    return await conn.fetch(_SUBMISSION_VIEW + " where v.owner_id = $1 order by s.id desc limit $2", owner_id, limit)


async def reuse_matches(
    conn: Conn,
    submission_id: int,
    photos: dict[str, tuple[str, str | None]],
    max_distance: int,
) -> list[dict[str, Any]]:
    """Photos of *other* submissions (anyone's) equal to, or perceptually near, this one's.

    `photos` maps role (dashboard, plate) to (sha256, phash hex). Near hashes are found through
    the hash's bands (migration 0420) when `max_distance` allows it, else by reading every hash."""
    found: list[dict[str, Any]] = []
    for role, (sha, phash) in photos.items():
        bits = phash_bits(phash)
        bands = band_neighbours(bits, max_distance) if bits is not None else None
        near = (
            "(phash_band0 = any($5::int[]) or phash_band1 = any($6::int[])"
            " or phash_band2 = any($7::int[]) or phash_band3 = any($8::int[]))"
            if bands is not None
            else "phash_bits is not null"
        )
        rows = await conn.fetch(
            f"""with near as (
                   select sha256, 0 as distance from photos where sha256 = $2
                   union
                   select sha256, bit_count((phash_bits # $3::bigint)::bit(64))::int
                   from photos
                   where $3::bigint is not null and {near}
                     and bit_count((phash_bits # $3::bigint)::bit(64)) <= $4)
               select s.id as other_submission_id, near.sha256, min(near.distance) as distance
               from near
               join photo_submissions s on s.dashboard_sha256 = near.sha256 or s.plate_sha256 = near.sha256
               where s.id <> $1
               group by s.id, near.sha256
               order by 3, s.id
               limit 20""",
            submission_id,
            sha,
            bits,
            max_distance,
            *(bands or ()),
        )
        for r in rows:
            found.append(
                {
                    "photo": role,
                    "kind": "exact" if r["sha256"] == sha else "similar",
                    "other_submission_id": r["other_submission_id"],
                    "distance": r["distance"],
                }
            )
    return found


async def finish_submission(
    conn: Conn,
    submission_id: int,
    *,
    status: str,
    reasons: list[str],
    decision: dict[str, Any] | None,
    reading_id: int | None = None,
    rejection_reason: str | None = None,
) -> None:
    await conn.execute(
        """update photo_submissions
           set status = $2, reasons = $3, decision = coalesce($4, decision),
               reading_id = coalesce($5, reading_id), rejection_reason = $6, decided_at = now()
           where id = $1""",
        submission_id,
        status,
        reasons,
        decision,
        reading_id,
        rejection_reason,
    )
