"""The reviewer dispute queue: open, list, claim with a lease, renew, release, resolve.

A claim is an UPDATE of the oldest open dispute that nobody holds (or whose holder's lease ran
out), chosen with `FOR UPDATE SKIP LOCKED`: two reviewers claiming at the same moment get two
different disputes, never the same one. Resolving locks the dispute row and requires the
reviewer to hold it and the dispute to be open, so each dispute is resolved exactly once.

This module is the only writer of `disputes`: photo cases, rollback cases (one open per car) and
their resolutions are all written here, so the queue's invariants live in one place.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from storage.db import Conn

#: Why a reviewer rejects a case (the check constraint in migration 0300 names the same list).
REJECTION_REASONS: tuple[str, ...] = (
    "unreadable",
    "trip_instead_of_odo",
    "other_car",
    "reused_photo",
    "out_of_window",
    "suspected_tampering",
)
#: Rejections a citizen can put right with a new photo: the submission asks for a retake.
RETAKE_REASONS = frozenset({"unreadable", "trip_instead_of_odo"})


class NotHolder(Exception):
    """The reviewer does not hold the dispute (never claimed it, or another reviewer took it)."""


class AlreadyResolved(Exception):
    pass


class DisputeNotFound(LookupError):
    pass


async def open_dispute(
    conn: Conn,
    *,
    kind: str,
    reasons: list[str],
    vehicle_id: int | None,
    district: str | None,
    submission_id: int | None = None,
    quarantined_reading_id: int | None = None,
    details: dict[str, Any] | None = None,
) -> int:
    dispute_id: int = await conn.fetchval(
        """insert into disputes (kind, vehicle_id, submission_id, quarantined_reading_id, district, reasons, details)
           values ($1, $2, $3, $4, $5, $6, $7) returning id""",
        kind,
        vehicle_id,
        submission_id,
        quarantined_reading_id,
        district,
        reasons,
        details,
    )
    return dispute_id


async def open_rollback(
    conn: Conn,
    *,
    vehicle_id: int,
    quarantined_reading_id: int,
    district: str | None,
    reasons: Sequence[str],
    details: dict[str, Any],
) -> int | None:
    """Open a rollback case for a quarantined decrease, unless the car has one open already (its
    later decreases wait in quarantine: `open_next_rollback`). None when none was opened.

    `details` goes in as JSON text, so a connection without the JSON codec can call it too."""
    dispute_id: int | None = await conn.fetchval(
        """insert into disputes (kind, vehicle_id, quarantined_reading_id, district, reasons, details)
           select 'rollback', $1, $2, $3, $4, $5::text::jsonb
           where not exists (select 1 from disputes
                             where vehicle_id = $1 and kind = 'rollback' and status = 'open')
           returning id""",
        vehicle_id,
        quarantined_reading_id,
        district,
        list(reasons),
        json.dumps(details),
    )
    return dispute_id


async def open_next_rollback(conn: Conn, vehicle_id: int) -> int | None:
    """Telematics keeps one open rollback case per car; once it is resolved, the car's next
    decrease waiting in quarantine becomes the next case."""
    dispute_id: int | None = await conn.fetchval(
        """insert into disputes (kind, vehicle_id, quarantined_reading_id, district, reasons, details)
           select 'rollback', q.vehicle_id, q.id, v.district, q.reasons,
                  jsonb_build_object('reading', jsonb_build_object('odometer_m', q.odometer_m,
                                                                   'recorded_at', q.recorded_at))
           from quarantined_readings q join vehicles v on v.id = q.vehicle_id
           where q.vehicle_id = $1 and q.review_status = 'open'
             and not exists (select 1 from disputes where quarantined_reading_id = q.id)
             and not exists (select 1 from disputes where vehicle_id = $1 and kind = 'rollback' and status = 'open')
           order by q.recorded_at, q.id
           limit 1
           returning id""",
        vehicle_id,
    )
    return dispute_id


async def drop_open_cases_about(conn: Conn, quarantined_reading_ids: list[int]) -> None:
    """Delete the open cases about these quarantined readings (a provider's unverified data
    deleted when consent is withdrawn); resolved cases stay, they are part of a decision."""
    await conn.execute(
        "delete from disputes where quarantined_reading_id = any($1::int8[]) and status = 'open'",
        quarantined_reading_ids,
    )


@dataclass(frozen=True)
class QueueFilter:
    """Filters of the queue; None means any."""

    reason: str | None = None
    district: str | None = None
    kind: str | None = None
    #: Only disputes opened at least this many seconds ago.
    min_age_s: int | None = None
    #: Only disputes opened at most this many seconds ago.
    max_age_s: int | None = None

    def sql(self, first_param: int) -> tuple[str, list[Any]]:
        """A WHERE fragment (with leading ' and') and its parameters, numbered from first_param."""
        parts: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("$ = any(reasons)", self.reason),
            ("district = $", self.district),
            ("kind = $", self.kind),
            ("created_at <= now() - make_interval(secs => $)", self.min_age_s),
            ("created_at >= now() - make_interval(secs => $)", self.max_age_s),
        ):
            if value is not None:
                params.append(value)
                parts.append(" and " + column.replace("$", f"${first_param + len(params) - 1}"))
        return "".join(parts), params


async def list_disputes(
    conn: Conn | asyncpg.Pool,
    f: QueueFilter,
    *,
    status: str = "open",
    limit: int = 50,
    after_id: int | None = None,
) -> list[asyncpg.Record]:
    """Oldest first; pages by id (`after_id`)."""
    where, params = f.sql(4)
    return await conn.fetch(
        f"""select d.*, (d.claimed_by is not null and d.lease_until > now()) as held,
                   extract(epoch from now() - d.created_at)::bigint as age_s
            from disputes d
            where status = $1 and ($2::bigint is null or id > $2){where}
            order by id limit $3""",
        status,
        after_id,
        limit,
        *params,
    )


async def count_open(conn: Conn | asyncpg.Pool, f: QueueFilter) -> int:
    where, params = f.sql(1)
    n: int = await conn.fetchval(f"select count(*) from disputes where status = 'open'{where}", *params)
    return n


async def open_districts(conn: Conn | asyncpg.Pool, limit: int = 100) -> list[str]:
    """The districts that have open disputes: the queue page's district filter offers these."""
    rows = await conn.fetch(
        "select distinct district from disputes where status = 'open' and district is not null order by 1 limit $1",
        limit,
    )
    return [r["district"] for r in rows]


async def open_reasons(conn: Conn | asyncpg.Pool, limit: int = 100) -> list[str]:
    """The reasons of open disputes: the queue page's reason filter offers these."""
    rows = await conn.fetch(
        "select distinct unnest(reasons) as reason from disputes where status = 'open' order by 1 limit $1", limit
    )
    return [r["reason"] for r in rows]


async def get_dispute(conn: Conn | asyncpg.Pool, dispute_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """select d.*, (d.claimed_by is not null and d.lease_until > now()) as held,
                  extract(epoch from now() - d.created_at)::bigint as age_s
           from disputes d where id = $1""",
        dispute_id,
    )


async def claim_next(
    conn: Conn, reviewer: str, lease_s: int, f: QueueFilter
) -> asyncpg.Record | None:
    """The dispute this reviewer already holds, else the oldest free one matching `f`, leased."""
    held = await conn.fetchrow(
        """update disputes set lease_until = now() + make_interval(secs => $2)
           where id = (select id from disputes
                       where status = 'open' and claimed_by = $1 and lease_until > now()
                       order by id limit 1 for update skip locked)
           returning *""",
        reviewer,
        lease_s,
    )
    if held is not None:
        return held
    where, params = f.sql(3)
    return await conn.fetchrow(
        f"""update disputes d
            set claimed_by = $1, claimed_at = now(), lease_until = now() + make_interval(secs => $2)
            where d.id = (
                select id from disputes
                where status = 'open' and (claimed_by is null or lease_until <= now()){where}
                order by created_at, id
                for update skip locked
                limit 1)
            returning d.*""",
        reviewer,
        lease_s,
        *params,
    )


async def claim(conn: Conn, dispute_id: int, reviewer: str, lease_s: int) -> asyncpg.Record:
    """Claim one named dispute; NotHolder when another reviewer holds it."""
    row = await conn.fetchrow(
        """update disputes set claimed_by = $2, lease_until = now() + make_interval(secs => $3),
                  claimed_at = case when claimed_by = $2 and lease_until > now() then claimed_at else now() end
           where id = $1 and status = 'open' and (claimed_by is null or claimed_by = $2 or lease_until <= now())
           returning *""",
        dispute_id,
        reviewer,
        lease_s,
    )
    if row is None:
        await _explain(conn, dispute_id)
    assert row is not None
    return row


async def renew(conn: Conn | asyncpg.Pool, dispute_id: int, reviewer: str, lease_s: int) -> asyncpg.Record:
    """Extend the reviewer's lease (the dispute page does so while it is open).

    A lease that ran out may be renewed as long as nobody else claimed the dispute meanwhile."""
    row = await conn.fetchrow(
        """update disputes set lease_until = now() + make_interval(secs => $3)
           where id = $1 and status = 'open' and claimed_by = $2
           returning *""",
        dispute_id,
        reviewer,
        lease_s,
    )
    if row is None:
        await _explain(conn, dispute_id)
    assert row is not None
    return row


async def release(conn: Conn, dispute_id: int, reviewer: str) -> asyncpg.Record:
    row = await conn.fetchrow(
        """update disputes set claimed_by = null, lease_until = null, claimed_at = null
           where id = $1 and status = 'open' and claimed_by = $2 returning *""",
        dispute_id,
        reviewer,
    )
    if row is None:
        await _explain(conn, dispute_id)
    assert row is not None
    return row


async def _explain(conn: Conn | asyncpg.Pool, dispute_id: int) -> None:
    row = await conn.fetchrow("select status from disputes where id = $1", dispute_id)
    if row is None:
        raise DisputeNotFound(dispute_id)
    if row["status"] != "open":
        raise AlreadyResolved(dispute_id)
    raise NotHolder(dispute_id)


async def lock_for_resolution(conn: Conn, dispute_id: int, reviewer: str) -> asyncpg.Record:
    """Lock the dispute row for the resolving transaction; the reviewer must hold it."""
    row = await conn.fetchrow("select * from disputes where id = $1 for update", dispute_id)
    if row is None:
        raise DisputeNotFound(dispute_id)
    if row["status"] != "open":
        raise AlreadyResolved(dispute_id)
    if row["claimed_by"] != reviewer:
        raise NotHolder(dispute_id)
    return row


async def mark_resolved(
    conn: Conn,
    dispute_id: int,
    *,
    reviewer: str,
    resolution: str,
    reason: str | None,
    value_m: int | None,
    note: str | None,
) -> asyncpg.Record:
    row = await conn.fetchrow(
        """update disputes
           set status = 'resolved', resolution = $2, resolution_reason = $3, resolved_value_m = $4,
               resolution_note = $5, resolved_by = $6, resolved_at = now(), lease_until = null
           where id = $1 and status = 'open' returning *""",
        dispute_id,
        resolution,
        reason,
        value_m,
        note,
        reviewer,
    )
    if row is None:
        raise AlreadyResolved(dispute_id)
    return row


async def add_label(
    conn: Conn,
    *,
    photo_sha256: str,
    kind: str,
    true_value: str,
    ocr_value: str | None,
    source: str,
    dispute_id: int,
    labelled_by: str,
) -> None:
    """Keep what a reviewer established about a photo, for improving the OCR later."""
    await conn.execute(
        """insert into ocr_labels (photo_sha256, kind, true_value, ocr_value, source, dispute_id, labelled_by)
           values ($1, $2, $3, $4, $5, $6, $7)""",
        photo_sha256,
        kind,
        true_value,
        ocr_value,
        source,
        dispute_id,
        labelled_by,
    )


async def labels(conn: Conn | asyncpg.Pool, limit: int = 1000) -> list[asyncpg.Record]:
    return await conn.fetch("select * from ocr_labels order by id limit $1", limit)


async def labels_for_calibration(
    conn: Conn | asyncpg.Pool, kind: str | None = None, limit: int = 5000
) -> list[asyncpg.Record]:
    """What reviewers established about photos, for refitting the OCR's claim thresholds
    (`carmileage ocr calibrate`): the latest label per photo and kind, newest photos first."""
    return await conn.fetch(
        """select * from (
               select distinct on (photo_sha256, kind)
                      photo_sha256, kind, true_value, ocr_value, source, labelled_at
               from ocr_labels
               where $1::text is null or kind = $1
               order by photo_sha256, kind, id desc
           ) latest
           order by labelled_at desc, photo_sha256
           limit $2""",
        kind,
        limit,
    )
