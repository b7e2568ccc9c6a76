"""Read-only figures for the operator dashboard (`/operator`) and the backlog gauges on `/metrics`.

Nothing here writes: the dashboard's one action (retrying a dead-lettered outbox event) goes
through `storage.outbox.retry_items`, the outbox's writer. Windows are counted in days back from
the database's `now()`; verified readings are counted by `recorded_at`, so the monthly partitions
outside the window are never read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

import asyncpg

from storage.db import Conn

#: How long open disputes have waited: (label, lower bound in seconds), oldest last.
BACKLOG_AGE_BUCKETS: tuple[tuple[str, int], ...] = (
    ("< 1 h", 0),
    ("1–24 h", 3600),
    ("1–3 d", 86400),
    ("3–7 d", 3 * 86400),
    ("≥ 7 d", 7 * 86400),
)


@dataclass(frozen=True, slots=True)
class DistrictFigures:
    district: str
    #: Owners with an active participation now.
    members: int
    #: Active participations whose start (end) reading is verified.
    start_verified: int
    end_verified: int
    #: Verified (not superseded) readings recorded in the window, of the district's cars.
    verified_readings: int


@dataclass(frozen=True, slots=True)
class RoundFigures:
    round: str
    district: str
    #: Current (not superseded) period results.
    results: int
    #: Sum of the positive reductions, km.
    reduction_km: Decimal
    points: int
    special_points: int


@dataclass(frozen=True, slots=True)
class IngestDay:
    day: date
    accepted: int
    duplicates: int
    quarantined: int


@dataclass(frozen=True, slots=True)
class OcrFigures:
    #: Photo submissions uploaded in the window, by their current status.
    uploaded: int
    processing: int
    #: Decided by the machine (anything but still processing).
    decided: int
    #: Accepted with no dispute ever opened about them: the machine's own acceptances.
    auto_accepted: int

    @property
    def auto_accept_rate(self) -> float | None:
        return self.auto_accepted / self.decided if self.decided else None


@dataclass(frozen=True, slots=True)
class ReviewBacklog:
    open: int
    #: Claimed by a reviewer whose lease is still running.
    held: int
    oldest_age_s: int
    by_kind: dict[str, int]
    #: Open disputes per BACKLOG_AGE_BUCKETS label, in that order.
    by_age: dict[str, int]


@dataclass(frozen=True, slots=True)
class OutboxState:
    pending: int
    #: Pending and due now (the rest wait for their backoff).
    due: int
    delivered: int
    dead: int
    oldest_pending_age_s: int
    #: The newest dead letters (storage.outbox.list_items rows).
    dead_items: list[dict[str, Any]] = field(default_factory=list)


async def district_figures(conn: Conn | asyncpg.Pool, window_days: int) -> list[DistrictFigures]:
    """Per district, most members first. Verified readings are counted by `recorded_at` over a
    short window (telematics cars report daily: this is the one figure that reads readings)."""
    rows = await conn.fetch(
        """with members as (
               select v.district, count(distinct v.owner_id) as n,
                      count(*) filter (where p.start_reading_id is not null) as starts,
                      count(*) filter (where p.end_reading_id is not null) as ends
               from participations p join vehicles v on v.id = p.vehicle_id
               where p.status = 'active'
               group by 1
           ), verified as (
               select v.district, count(*) as n
               from readings r join vehicles v on v.id = r.vehicle_id
               where r.status = 'verified' and r.recorded_at >= now() - make_interval(days => $1)
               group by 1
           )
           select coalesce(m.district, r.district) as district, coalesce(m.n, 0) as members,
                  coalesce(m.starts, 0) as starts, coalesce(m.ends, 0) as ends, coalesce(r.n, 0) as verified
           from members m full join verified r on r.district = m.district
           order by members desc, verified desc, district""",
        window_days,
    )
    return [DistrictFigures(r["district"], r["members"], r["starts"], r["ends"], r["verified"]) for r in rows]


async def round_figures(conn: Conn | asyncpg.Pool, rounds: int = 8) -> list[RoundFigures]:
    """The current results of the latest `rounds` rounds (by name, which sorts by date), by district."""
    rows = await conn.fetch(
        """with latest as (
               select distinct round from period_results where superseded_by is null
               order by round desc limit $1
           )
           select r.round, coalesce(r.district, v.district) as district, count(*) as results,
                  coalesce(sum(r.reduction_km) filter (where r.reduction_km > 0), 0) as reduction_km,
                  coalesce(sum(r.points), 0)::int8 as points,
                  coalesce(sum(r.special_points), 0)::int8 as special_points
           from period_results r
           join participations p on p.id = r.participation_id
           join vehicles v on v.id = p.vehicle_id
           where r.superseded_by is null and r.round in (select round from latest)
           group by 1, 2
           order by 1, 2""",
        rounds,
    )
    return [
        RoundFigures(
            r["round"], r["district"], r["results"], Decimal(r["reduction_km"]), r["points"], r["special_points"]
        )
        for r in rows
    ]


async def ingest_days(conn: Conn | asyncpg.Pool, days: int) -> list[IngestDay]:
    """Readings stored, duplicates and quarantined per day (exact: `ingest_counts` is written
    with the readings), for the last `days` Seoul days with any; days without are left out."""
    rows = await conn.fetch(
        """select day, sum(accepted)::int8 as accepted, sum(duplicates)::int8 as duplicates,
                  sum(quarantined)::int8 as quarantined
           from ingest_counts where day > (now() at time zone 'Asia/Seoul')::date - $1::int
           group by day order by day""",
        days,
    )
    return [IngestDay(r["day"], r["accepted"], r["duplicates"], r["quarantined"]) for r in rows]


async def quarantine_reasons(conn: Conn | asyncpg.Pool, window_days: int, limit: int = 20) -> list[tuple[str, int]]:
    rows = await conn.fetch(
        """select reason, count(*)::int8 as n
           from quarantined_readings, unnest(reasons) as reason
           where received_at >= now() - make_interval(days => $1)
           group by 1 order by 2 desc, 1 limit $2""",
        window_days,
        limit,
    )
    return [(r["reason"], r["n"]) for r in rows]


async def ocr_figures(conn: Conn | asyncpg.Pool, window_days: int) -> OcrFigures:
    r = await conn.fetchrow(
        """select count(*) as uploaded,
                  count(*) filter (where s.status = 'processing') as processing,
                  count(*) filter (where s.status <> 'processing') as decided,
                  count(*) filter (where s.status = 'accepted' and not exists
                                       (select 1 from disputes d where d.submission_id = s.id)) as auto_accepted
           from photo_submissions s
           where s.uploaded_at >= now() - make_interval(days => $1)""",
        window_days,
    )
    assert r is not None
    return OcrFigures(r["uploaded"], r["processing"], r["decided"], r["auto_accepted"])


async def review_backlog(conn: Conn | asyncpg.Pool) -> ReviewBacklog:
    r = await conn.fetchrow(
        """select count(*) as open,
                  count(*) filter (where claimed_by is not null and lease_until > now()) as held,
                  coalesce(extract(epoch from now() - min(created_at)), 0)::int8 as oldest_s
           from disputes where status = 'open'"""
    )
    assert r is not None
    kinds = await conn.fetch("select kind, count(*) as n from disputes where status = 'open' group by 1 order by 1")
    buckets = await conn.fetch(
        """select width_bucket(extract(epoch from now() - created_at)::float8, $1::float8[]) as b, count(*) as n
           from disputes where status = 'open' group by 1""",
        [float(lower) for _, lower in BACKLOG_AGE_BUCKETS],
    )
    labels = [label for label, _ in BACKLOG_AGE_BUCKETS]
    by_age = dict.fromkeys(labels, 0)
    for b in buckets:
        by_age[labels[max(1, b["b"]) - 1]] += b["n"]
    return ReviewBacklog(r["open"], r["held"], r["oldest_s"], {k["kind"]: k["n"] for k in kinds}, by_age)


async def outbox_state(conn: Conn | asyncpg.Pool) -> OutboxState:
    """Counts by state, and how long the oldest pending event has waited since it was written
    (the newest dead letters are added by the caller from `storage.outbox.list_items`)."""
    r = await conn.fetchrow(
        """select count(*) filter (where status = 'pending') as pending,
                  count(*) filter (where status = 'pending' and next_attempt_at <= now()) as due,
                  count(*) filter (where status = 'delivered') as delivered,
                  count(*) filter (where status = 'dead') as dead,
                  coalesce(extract(epoch from now() - min(created_at) filter (where status = 'pending')), 0)::int8
                      as oldest_pending_s
           from outbox"""
    )
    assert r is not None
    return OutboxState(r["pending"], r["due"], r["delivered"], r["dead"], r["oldest_pending_s"])


@dataclass(frozen=True, slots=True)
class BacklogSample:
    """What the backlog gauges on /metrics show (cheap: the partial indexes on open disputes and
    on pending and dead outbox rows)."""

    open_by_kind: dict[str, int]
    oldest_open_age_s: float
    outbox_pending: int
    outbox_dead: int


async def backlog_sample(conn: Conn | asyncpg.Pool) -> BacklogSample:
    kinds = await conn.fetch("select kind, count(*) as n from disputes where status = 'open' group by kind")
    oldest = await conn.fetchval(
        "select coalesce(extract(epoch from now() - min(created_at)), 0)::float8 from disputes where status = 'open'"
    )
    pending = await conn.fetchval("select count(*) from outbox where status = 'pending'")
    dead = await conn.fetchval("select count(*) from outbox where status = 'dead'")
    return BacklogSample({r["kind"]: r["n"] for r in kinds}, float(oldest), pending, dead)
