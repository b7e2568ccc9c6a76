"""Verified readings, their quarantine, provider events and ingest counts.

Two entry points, both correct under any number of concurrent writers:

- `store_verified_reading(conn, reading)`: one reading (a photo, a reviewer's value, a single
  telematics reading). Takes the vehicle's lock, finds its neighbours by `recorded_at`, runs the
  order-free checks of `telematics.checks`, then inserts it — or quarantines it, opening a
  rollback dispute on a decrease.
- `store_batch(conn, items)`: the telematics fast path for up to a few thousand readings. The
  cars by VIN and their locks; one set-based query, over the batch sent as arrays, for every
  reading's consent and nearest verified neighbours (index probes within a window of month
  partitions); the checks in Python (readings of the same car inside the batch are neighbours of
  each other too); then COPY of the readings, quarantined readings and provider events. An event
  sent again makes that write fail, and the batch starts over with a look-up that probes for
  seen events too.

Correctness per vehicle comes from PostgreSQL, never from message order: every writer of
`readings` takes `pg_advisory_xact_lock(LOCK_NAMESPACE, vehicle_id)` (in ascending vehicle order,
so two batches cannot deadlock on each other) before looking at the vehicle's history, and holds
it until commit. Idempotency comes from the unique keys: (provider, event_id) in
`provider_events` and (vehicle, recorded_at, odometer_m) in `readings`; a lost race on either
rolls the batch back and retries it, and the retry sees the winner's rows as duplicates.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, NamedTuple

import asyncpg

from storage.db import Conn
from storage.disputes import open_rollback
from telematics.batch import Candidate, Decision, decide_batch
from telematics.checks import (
    DEFAULT_LIMITS,
    ODOMETER_DECREASED,
    Consent,
    Limits,
    Neighbourhood,
    Point,
    check_reading,
)
from telematics.reading import OdometerReading, Rejected

#: First key of the per-vehicle advisory lock (the second is the vehicle id).
LOCK_NAMESPACE = 7001
Source = Literal["telematics", "photo", "reviewer"]
Status = Literal["accepted", "duplicate", "quarantined"]

# -- one reading ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewReading:
    """A reading of an enrolled vehicle, with its provenance, about to be checked and stored."""

    vehicle_id: int
    odometer_m: int
    recorded_at: datetime
    source: Source
    provider_id: int | None = None
    provider_event_id: str | None = None
    original_value: Decimal | None = None
    original_unit: str | None = None
    captured_at: datetime | None = None
    uploaded_at: datetime | None = None
    approved_at: datetime | None = None
    submission_id: int | None = None
    #: When we got it; default now.
    received_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class StoredReading:
    """What became of a reading.

    `reading_id` is set when the reading is verified: newly inserted, or (`duplicate=True`) the
    identical reading already stored. Otherwise `reasons` says why the checks refused it, and
    `quarantine_id`/`dispute_id` are set when it was quarantined (and a rollback case opened).
    """

    reading_id: int | None
    reasons: tuple[str, ...] = ()
    duplicate: bool = False
    quarantine_id: int | None = None
    dispute_id: int | None = None


async def lock_vehicles(conn: Conn, vehicle_ids: Collection[int]) -> None:
    """Take the per-vehicle reading locks until the end of the transaction, in ascending order."""
    ids = sorted(set(vehicle_ids))
    if not ids:
        return
    await conn.execute(
        "select count(pg_advisory_xact_lock($1, id)) from unnest($2::int4[]) as id",
        LOCK_NAMESPACE,
        ids,
    )


_BEFORE = """select odometer_m, recorded_at from readings
             where vehicle_id = $1 and status = 'verified' and recorded_at <= $2
             order by recorded_at desc limit 1"""
_AFTER = """select odometer_m, recorded_at from readings
            where vehicle_id = $1 and status = 'verified' and recorded_at > $2
            order by recorded_at limit 1"""


async def neighbours(conn: Conn, vehicle_id: int, recorded_at: datetime) -> tuple[Point | None, Point | None]:
    """The vehicle's verified readings nearest before (at or before) and after an instant."""
    b = await conn.fetchrow(_BEFORE, vehicle_id, recorded_at)
    a = await conn.fetchrow(_AFTER, vehicle_id, recorded_at)
    return (
        Point(b["odometer_m"], b["recorded_at"]) if b else None,
        Point(a["odometer_m"], a["recorded_at"]) if a else None,
    )


async def consent_of(conn: Conn, provider_id: int, vehicle_id: int) -> Consent:
    row = await conn.fetchrow(
        "select withdrawn_at from vehicle_consents where provider_id = $1 and vehicle_id = $2",
        provider_id,
        vehicle_id,
    )
    if row is None:
        return "missing"
    return "withdrawn" if row["withdrawn_at"] is not None else "granted"


async def check_reasons(
    conn: Conn,
    vehicle_id: int,
    odometer_m: int,
    recorded_at: datetime,
    *,
    limits: Limits = DEFAULT_LIMITS,
    now: datetime | None = None,
) -> tuple[str, ...]:
    """A preview of the checks for a photo or reviewer reading (no lock, nothing written).

    `store_verified_reading` runs them again under the vehicle's lock; only that verdict counts.
    """
    same = await conn.fetchval(
        "select 1 from readings where vehicle_id = $1 and recorded_at = $2 and odometer_m = $3",
        vehicle_id,
        recorded_at,
        odometer_m,
    )
    if same:
        return ()
    before, after = await neighbours(conn, vehicle_id, recorded_at)
    return check_reading(
        Point(odometer_m, recorded_at), Neighbourhood(before, after, now or datetime.now(UTC)), limits
    )


async def store_verified_reading(
    conn: Conn,
    reading: NewReading,
    *,
    limits: Limits = DEFAULT_LIMITS,
    now: datetime | None = None,
    quarantine: bool | None = None,
    ignore: Collection[str] = (),
) -> StoredReading:
    """Check one reading against the vehicle's verified history and store it if it passes.

    Runs in the caller's transaction when there is one (the vehicle's lock is then held until the
    caller commits), else in its own. `quarantine` (default: only for telematics) decides whether
    a refused reading is kept in `quarantined_readings` — a decrease then also opens a `rollback`
    dispute unless one is open for the car — or only reported, so that the photo flow opens its
    own photo dispute. `ignore` lists reason codes a reviewer has overruled (e.g. a decrease after
    an odometer replacement). Telematics readings with a provider are checked for consent.
    """
    now = now or datetime.now(UTC)
    keep = reading.source == "telematics" if quarantine is None else quarantine
    async with conn.transaction():
        await lock_vehicles(conn, [reading.vehicle_id])
        same = await conn.fetchval(
            "select id from readings where vehicle_id = $1 and recorded_at = $2 and odometer_m = $3",
            reading.vehicle_id,
            reading.recorded_at,
            reading.odometer_m,
        )
        if same is not None:
            await _count(conn, reading.source, reading.provider_id, duplicates=1)
            return StoredReading(reading_id=same, duplicate=True)
        before, after = await neighbours(conn, reading.vehicle_id, reading.recorded_at)
        consent: Consent = "not_required"
        if reading.source == "telematics" and reading.provider_id is not None:
            consent = await consent_of(conn, reading.provider_id, reading.vehicle_id)
        candidate = Point(reading.odometer_m, reading.recorded_at)
        reasons = tuple(
            r
            for r in check_reading(candidate, Neighbourhood(before, after, now, True, consent), limits)
            if r not in ignore
        )
        if not reasons:
            reading_id: int = await conn.fetchval(
                """insert into readings (vehicle_id, odometer_m, recorded_at, received_at, source,
                       provider_id, provider_event_id, original_value, original_unit, captured_at,
                       uploaded_at, approved_at, submission_id)
                   values ($1, $2, $3, coalesce($4, now()), $5, $6, $7, $8, $9, $10, $11, $12, $13)
                   returning id""",
                reading.vehicle_id,
                reading.odometer_m,
                reading.recorded_at,
                reading.received_at,
                reading.source,
                reading.provider_id,
                reading.provider_event_id,
                reading.original_value,
                reading.original_unit,
                reading.captured_at,
                reading.uploaded_at,
                reading.approved_at,
                reading.submission_id,
            )
            await _count(conn, reading.source, reading.provider_id, accepted=1)
            return StoredReading(reading_id=reading_id)
        if not keep:
            return StoredReading(reading_id=None, reasons=reasons)
        vin, district = await conn.fetchrow(
            "select vin, district from vehicles where id = $1", reading.vehicle_id
        ) or (None, None)
        decreased = ODOMETER_DECREASED in reasons
        quarantine_id: int = await conn.fetchval(
            """insert into quarantined_readings (source, provider_id, provider_event_id, vehicle_id, vin,
                   odometer_m, recorded_at, received_at, original_value, original_unit, reasons, review_status)
               values ($1, $2, $3, $4, $5, $6, $7, coalesce($8, now()), $9, $10, $11, $12) returning id""",
            reading.source,
            reading.provider_id,
            reading.provider_event_id,
            reading.vehicle_id,
            vin,
            reading.odometer_m,
            reading.recorded_at,
            reading.received_at,
            reading.original_value,
            reading.original_unit,
            list(reasons),
            "open" if decreased else "none",
        )
        dispute_id = None
        if decreased:
            dispute_id = await _open_rollback(
                conn, reading.vehicle_id, district, quarantine_id, reasons, candidate, before, after
            )
        await _count(conn, reading.source, reading.provider_id, quarantined=1)
        return StoredReading(None, reasons, quarantine_id=quarantine_id, dispute_id=dispute_id)


def _point_json(p: Point | None) -> dict[str, Any] | None:
    return None if p is None else {"odometer_m": p.odometer_m, "recorded_at": p.recorded_at.isoformat()}


async def _open_rollback(
    conn: Conn,
    vehicle_id: int,
    district: str | None,
    quarantine_id: int,
    reasons: Sequence[str],
    candidate: Point,
    before: Point | None,
    after: Point | None,
) -> int | None:
    """The car's rollback case (`storage.disputes`, the one writer of disputes), with the
    decrease and its neighbours as evidence."""
    return await open_rollback(
        conn,
        vehicle_id=vehicle_id,
        quarantined_reading_id=quarantine_id,
        district=district,
        reasons=reasons,
        details={"reading": _point_json(candidate), "before": _point_json(before), "after": _point_json(after)},
    )


async def _count(
    conn: Conn,
    source: str,
    provider_id: int | None,
    *,
    accepted: int = 0,
    duplicates: int = 0,
    quarantined: int = 0,
) -> None:
    await conn.execute(
        """insert into ingest_counts as c (day, source, provider_id, shard, accepted, duplicates, quarantined)
           values ((now() at time zone 'Asia/Seoul')::date, $1, $2, pg_backend_pid() % 16, $3, $4, $5)
           on conflict (day, source, provider_id, shard) do update
           set accepted = c.accepted + excluded.accepted,
               duplicates = c.duplicates + excluded.duplicates,
               quarantined = c.quarantined + excluded.quarantined""",
        source,
        provider_id or 0,
        accepted,
        duplicates,
        quarantined,
    )


# -- the batch fast path ----------------------------------------------------------------------


class BatchItem(NamedTuple):
    """One reading position of a provider payload: adapted, or rejected with its raw text."""

    provider_id: int | None
    received_at: datetime
    reading: OdometerReading | None = None
    rejected: Rejected | None = None


@dataclass(slots=True)
class ItemOutcome:
    status: Status
    reasons: tuple[str, ...] = ()
    reading_id: int | None = None
    quarantine_id: int | None = None


@dataclass(slots=True)
class BatchOutcome:
    items: list[ItemOutcome]
    #: Rollback disputes opened by this batch.
    disputes: int = 0
    #: How many times a lost race made the batch start over.
    retries: int = 0
    per_provider: dict[int, dict[str, int]] = field(default_factory=dict)


# For this transaction: every look-up is a probe of an index per reading, whatever the statistics
# said when the statement was first planned (tables that were empty then are large minutes later,
# and prepared statements keep their plans); and one plan per statement, whose month partitions
# are pruned when it starts (planning for 146 partitions anew costs more than running the
# look-ups). The writes that follow are COPY and single-row upserts, which these settings leave
# alone.
_SETTINGS = """
select set_config('enable_seqscan', 'off', true), set_config('enable_bitmapscan', 'off', true),
       set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true),
       set_config('plan_cache_mode', 'force_generic_plan', true)"""

# The batch's cars by VIN, each one's reading lock taken as it is found, in ascending id order
# (the sorted subquery is not flattened, so the outer select takes the locks in its order): the
# same order as `lock_vehicles`, in the same statement. One probe of the active-VIN index per VIN
# (a plain `vin = any($1)` lets the planner scan every active car through another partial index
# when its statistics are stale).
_LOCKED_VEHICLES = """
select vin, id, district, pg_advisory_xact_lock($2, id::int4)
from (
    select u.vin, v.id, v.district
    from unnest($1::text[]) as u(vin)
    cross join lateral (
        select id, district from vehicles v where v.vin = u.vin and v.status = 'active' limit 1) v
    order by v.id) as found"""

#: Readings this recent are looked up within a window of month partitions (see _LOOKUP).
RECENT = timedelta(days=365)
#: How far before the batch's earliest reading the window reaches for a previous reading.
LOOKBACK = timedelta(days=35)

# The batch's readings, as arrays (one per column) that the look-ups unnest: nothing is written
# to look them up, and a row says which reading it answers by its position (`ord`, from 1). The
# fast look-up needs neither event ids nor odometers.
_BATCH_FAST = """unnest($3::int8[], $4::int8[], $5::timestamptz[]) with ordinality
     as s(provider_id, vehicle_id, recorded_at, ord)"""
_BATCH = """unnest($3::int8[], $4::int8[], $5::timestamptz[], $6::text[], $7::int8[]) with ordinality
     as s(provider_id, vehicle_id, recorded_at, event_id, odometer_m, ord)"""

# Per reading: its consent, whether its event was seen (thorough look-up only), the same reading
# already stored (ditto), and the car's nearest verified readings before and after it. Readings
# are found by scanning month partitions in recorded_at order and stopping at the first hit. The
# window [$1, $2] (query parameters, so partitions outside it are pruned once when the query
# starts, not on every probe; both bounds on every look-up) keeps each probe to a few partitions:
# $2 is our clock plus skew plus a day (no verified reading lies beyond it); a previous reading
# older than $1 is looked up by _BEFORE_OLDER.
_LOOKUP = """
select s.ord, c.found as consent_row, c.withdrawn, {seen} as seen, {same_id} as same_id,
       b.id as b_id, b.odometer_m as b_odo, b.recorded_at as b_at,
       a.odometer_m as a_odo, a.recorded_at as a_at
from {batch}
left join lateral (
    select true as found, c.withdrawn_at is not null as withdrawn from vehicle_consents c
    where c.provider_id = s.provider_id and c.vehicle_id = s.vehicle_id limit 1) c on true
{thorough}
left join lateral (
    select r.id, r.odometer_m, r.recorded_at from readings r
    where r.vehicle_id = s.vehicle_id and r.status = 'verified' and r.recorded_at <= s.recorded_at
      and r.recorded_at >= $1 and r.recorded_at <= $2
    order by r.recorded_at desc limit 1) b on true
left join lateral (
    select r.odometer_m, r.recorded_at from readings r
    where r.vehicle_id = s.vehicle_id and r.status = 'verified' and r.recorded_at > s.recorded_at
      and r.recorded_at >= $1 and r.recorded_at <= $2
    order by r.recorded_at limit 1) a on true"""
# The fast look-up, for a first attempt, trusts that a batch holds new events: a seen event is a
# duplicate key when its provider event is written, and the same reading already stored is
# usually the verified reading found "before" (same instant and odometer). Only a superseded one,
# a resent event or a writer that skipped the locks makes the write fail; the batch then starts
# over with the thorough look-up, which probes both.
_LOOKUP_FAST = _LOOKUP.format(batch=_BATCH_FAST, thorough="", seen="null::bool", same_id="null::int8")
_LOOKUP_THOROUGH = _LOOKUP.format(
    batch=_BATCH,
    seen="e.seen",
    same_id="same.id",
    thorough="""left join lateral (
    select true as seen from provider_events pe
    where pe.provider_id = s.provider_id and pe.event_id = s.event_id limit 1) e on true
left join lateral (
    select r.id from readings r
    where r.vehicle_id = s.vehicle_id and r.recorded_at = s.recorded_at and r.odometer_m = s.odometer_m
      and r.recorded_at >= $1 and r.recorded_at <= $2
    limit 1) same on true""",
)

_BEFORE_OLDER = """
select s.ord, b.odometer_m as b_odo, b.recorded_at as b_at
from unnest($2::int8[], $3::timestamptz[]) with ordinality as s(vehicle_id, recorded_at, ord)
join lateral (
    select r.odometer_m, r.recorded_at from readings r
    where r.vehicle_id = s.vehicle_id and r.status = 'verified' and r.recorded_at < $1
    order by r.recorded_at desc limit 1) b on true"""

_IDS = """
select array(select nextval('readings_id_seq') from generate_series(1, $1::int4)) as readings,
       array(select nextval(pg_get_serial_sequence('quarantined_readings', 'id'))
             from generate_series(1, $2::int4)) as quarantine"""

# The decisions are written by COPY, the cheapest way into a table (rows go in as multi-row
# inserts, and a partitioned table routes them). Neither table is written with ON CONFLICT: a key
# already taken (an event sent again, which the fast look-up does not probe for; a superseded
# identical reading; an event another worker stored since our look-up) is a unique violation that
# rolls the batch back, and it starts over with the thorough look-up, which finds them.
_READING_COLUMNS = (
    "id", "vehicle_id", "odometer_m", "recorded_at", "received_at", "source", "provider_id",
    "provider_event_id", "original_value", "original_unit",
)
_QUARANTINE_COLUMNS = (
    "id", "source", "provider_id", "provider_event_id", "vehicle_id", "vin", "odometer_m", "recorded_at",
    "received_at", "original_value", "original_unit", "reasons", "review_status",
)
# An event's received_at is left to its default, the transaction's start: a timestamp costs more to
# send than any other column, and nothing reads this one.
_EVENT_COLUMNS = ("provider_id", "event_id", "reading_id", "quarantine_id")

_RAW = """
insert into quarantined_readings (source, provider_id, reasons, raw, raw_sha256, received_at)
select 'telematics', p, string_to_array(r, ','), t, h, at
from unnest($1::int8[], $2::text[], $3::text[], $4::bytea[], $5::timestamptz[]) as u(p, r, t, h, at)
on conflict (coalesce(provider_id, 0), raw_sha256) where raw_sha256 is not null do nothing
returning raw_sha256"""

_COUNTS = """
insert into ingest_counts as c (day, source, provider_id, shard, accepted, duplicates, quarantined)
select (now() at time zone 'Asia/Seoul')::date, 'telematics', p, pg_backend_pid() % 16, a, d, q
from unnest($1::int8[], $2::int8[], $3::int8[], $4::int8[]) as u(p, a, d, q)
on conflict (day, source, provider_id, shard) do update
set accepted = c.accepted + excluded.accepted,
    duplicates = c.duplicates + excluded.duplicates,
    quarantined = c.quarantined + excluded.quarantined"""


def raw_digest(raw: str) -> bytes:
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).digest()


async def store_batch(
    conn: Conn,
    items: Sequence[BatchItem],
    *,
    limits: Limits = DEFAULT_LIMITS,
    now: datetime | None = None,
    max_attempts: int = 5,
    before_write: Callable[[Conn], Awaitable[None]] | None = None,
    expect_duplicates: bool = False,
) -> BatchOutcome:
    """Store a batch of provider readings in one transaction; one outcome per item, in order.

    Must not be called inside another transaction (it retries by rolling its own back). Errors
    other than a lost race (the database gone, a bug) propagate with nothing committed.
    `before_write` runs first inside the transaction (e.g. replay detection of a signed request);
    whatever it raises aborts the batch. `expect_duplicates` (e.g. a broker's redelivery) makes
    the first attempt the thorough one, which a resent event would otherwise cost.
    """
    for attempt in range(max_attempts):
        try:
            async with conn.transaction():
                if before_write is not None:
                    await before_write(conn)
                thorough = expect_duplicates or attempt > 0
                outcome = await _store_batch_once(conn, items, limits, now or datetime.now(UTC), thorough)
            outcome.retries = attempt
            return outcome
        except (asyncpg.UniqueViolationError, asyncpg.DeadlockDetectedError):
            if attempt == max_attempts - 1:
                raise
    raise AssertionError("unreachable")


_new = tuple.__new__


class _Staged(NamedTuple):
    """A reading of the batch with its car found (None: no active car has its VIN)."""

    position: int
    provider_id: int
    reading: OdometerReading
    received_at: datetime
    vehicle_id: int | None
    district: str | None


async def _look_up(
    conn: Conn, staged: list[_Staged], now: datetime, limits: Limits, thorough: bool
) -> dict[int, Candidate]:
    """_LOOKUP for every reading of the batch: the candidate `decide_batch` judges, by its
    position in the batch.

    Recent readings share one window; older ones (late uploads) are looked up without a lower
    bound. A previous reading older than the window is then looked for where none was found.
    """
    hi = now + timedelta(seconds=limits.clock_skew_s, days=1)
    recent_from = now - RECENT
    # Readings of unknown cars only need their event looked up: any window does.
    recent = [st for st in staged if st.vehicle_id is None or st.reading.recorded_at >= recent_from]
    old = [st for st in staged if st.vehicle_id is not None and st.reading.recorded_at < recent_from]
    found: dict[int, Candidate] = {}
    groups = []
    if recent:
        earliest = min((st.reading.recorded_at for st in recent if st.vehicle_id is not None), default=now)
        groups.append((min(earliest, now) - LOOKBACK, recent))
    if old:
        groups.append((datetime.min.replace(tzinfo=UTC), old))
    for lo, group in groups:
        top = max([hi] + [st.reading.recorded_at for st in group if st.vehicle_id is not None])
        provider_ids: list[int] = []
        vehicle_ids: list[int | None] = []
        instants: list[datetime] = []
        for _, provider_id, reading, _, vehicle_id, _ in group:
            provider_ids.append(provider_id)
            vehicle_ids.append(vehicle_id)
            instants.append(reading.recorded_at)
        arrays: tuple[list[Any], ...] = (provider_ids, vehicle_ids, instants)
        if thorough:
            arrays += ([st.reading.event_id for st in group], [st.reading.odometer_m for st in group])
        for r in await conn.fetch(_LOOKUP_THOROUGH if thorough else _LOOKUP_FAST, lo, top, *arrays):
            b_at, a_at = r["b_at"], r["a_at"]
            position, provider_id, reading, _, vehicle_id, _ = group[r["ord"] - 1]
            # tuple.__new__: a thousand candidates a batch, built without NamedTuple's argument
            # handling (the fields in Candidate's order).
            found[position] = _new(
                Candidate,
                (
                    position,
                    provider_id,
                    reading.event_id,
                    vehicle_id,
                    _new(Point, (reading.odometer_m, reading.recorded_at)),
                    "missing" if not r["consent_row"] else "withdrawn" if r["withdrawn"] else "granted",
                    bool(r["seen"]),
                    r["same_id"],
                    _new(Point, (r["b_odo"], b_at)) if b_at is not None else None,
                    r["b_id"],
                    _new(Point, (r["a_odo"], a_at)) if a_at is not None else None,
                ),
            )
        missing = [
            st
            for st in group
            if st.vehicle_id is not None and found[st.position].before is None and found[st.position].stored_id is None
        ]
        if missing and lo.year > 1:
            older = await conn.fetch(
                _BEFORE_OLDER, lo, [st.vehicle_id for st in missing], [st.reading.recorded_at for st in missing]
            )
            for r in older:
                position = missing[r["ord"] - 1].position
                found[position] = found[position]._replace(before=Point(r["b_odo"], r["b_at"]))
    return found


class _Counts:
    """Accepted, duplicate and quarantined readings per provider (for `ingest_counts`)."""

    def __init__(self) -> None:
        self.by_provider: dict[int, dict[str, int]] = defaultdict(
            lambda: {"accepted": 0, "duplicates": 0, "quarantined": 0}
        )

    def add(self, provider_id: int | None, what: str) -> None:
        self.by_provider[provider_id or 0][what] += 1

    async def write(self, conn: Conn) -> None:
        ps = sorted(self.by_provider)
        if ps:
            counts = [self.by_provider[p] for p in ps]
            await conn.execute(
                _COUNTS,
                ps,
                [c["accepted"] for c in counts],
                [c["duplicates"] for c in counts],
                [c["quarantined"] for c in counts],
            )


async def _store_batch_once(
    conn: Conn, items: Sequence[BatchItem], limits: Limits, now: datetime, thorough: bool
) -> BatchOutcome:
    """One attempt: stage, look up, decide (`telematics.batch.decide_batch`), write."""
    outcomes: list[ItemOutcome | None] = [None] * len(items)
    counts = _Counts()
    readings = [(i, it) for i, it in enumerate(items) if it.reading is not None and it.provider_id is not None]
    unreadable = [(i, it) for i, it in enumerate(items) if it.reading is None or it.provider_id is None]
    disputes = 0
    if readings:
        staged = await _stage(conn, readings)
        found = await _look_up(conn, staged, now, limits, thorough)
        decisions = decide_batch([found[st.position] for st in staged], now, limits)
        disputes = await _write_decisions(conn, staged, decisions, outcomes, counts)
    if unreadable:
        await _quarantine_raw(conn, unreadable, outcomes, counts)
    await counts.write(conn)
    final_outcomes = [o for o in outcomes if o is not None]
    assert len(final_outcomes) == len(items)
    return BatchOutcome(items=final_outcomes, disputes=disputes, per_provider=dict(counts.by_provider))


async def _stage(conn: Conn, readings: list[tuple[int, BatchItem]]) -> list[_Staged]:
    """The batch's cars by VIN, their reading locks taken (see _LOCKED_VEHICLES)."""
    await conn.execute(_SETTINGS)
    vins = list({it.reading.vin for _, it in readings if it.reading is not None})
    cars = {r["vin"]: (r["id"], r["district"]) for r in await conn.fetch(_LOCKED_VEHICLES, vins, LOCK_NAMESPACE)}
    staged = []
    for i, it in readings:
        r = it.reading
        assert r is not None and it.provider_id is not None
        vehicle_id, district = cars.get(r.vin, (None, None))
        staged.append(_Staged(i, it.provider_id, r, it.received_at, vehicle_id, district))
    return staged


async def _write_decisions(
    conn: Conn,
    staged: list[_Staged],
    decisions: list[Decision],
    outcomes: list[ItemOutcome | None],
    counts: _Counts,
) -> int:
    """COPY the verified readings, the quarantined ones and the provider events; open the
    rollback cases; the number of cases opened."""
    n_verified = sum(1 for d in decisions if d.kind == "verified")
    n_quarantined = sum(1 for d in decisions if d.kind == "quarantined")
    ids = await conn.fetchrow(_IDS, n_verified, n_quarantined)
    assert ids is not None
    reading_ids = iter(ids["readings"])
    quarantine_ids = iter(ids["quarantine"])
    #: Batch position -> the id of the reading verified there (for duplicates of it).
    verified_ids: dict[int, int] = {}
    verified_rows: list[tuple[Any, ...]] = []
    quarantined_rows: list[tuple[Any, ...]] = []
    event_rows: list[tuple[Any, ...]] = []
    rollbacks: list[tuple[_Staged, Decision, int]] = []
    tally = counts.by_provider
    # Decisions come in the staged readings' order (one each).
    for st, d in zip(staged, decisions, strict=True):
        position, kind = d.position, d.kind
        r = st.reading
        provider_counts = tally[st.provider_id]
        if kind == "duplicate_event":
            outcomes[position] = ItemOutcome("duplicate")
            provider_counts["duplicates"] += 1
            continue
        reading_id = quarantine_id = None
        if kind == "verified":
            reading_id = verified_ids[position] = next(reading_ids)
            verified_rows.append(
                (reading_id, st.vehicle_id, r.odometer_m, r.recorded_at, st.received_at, "telematics",
                 st.provider_id, r.event_id, r.original_value, r.original_unit)
            )
            outcomes[position] = ItemOutcome("accepted", (), reading_id)
            provider_counts["accepted"] += 1
        elif kind == "duplicate_reading":
            if d.same_id is not None:
                reading_id = d.same_id
            else:
                assert d.same_as is not None
                reading_id = verified_ids[d.same_as]
            outcomes[position] = ItemOutcome("duplicate", (), reading_id)
            provider_counts["duplicates"] += 1
        else:
            quarantine_id = next(quarantine_ids)
            quarantined_rows.append(
                (quarantine_id, "telematics", st.provider_id, r.event_id, st.vehicle_id, r.vin, r.odometer_m,
                 r.recorded_at, st.received_at, r.original_value, r.original_unit, list(d.reasons),
                 "open" if d.for_review else "none")
            )
            outcomes[position] = ItemOutcome("quarantined", d.reasons, None, quarantine_id)
            provider_counts["quarantined"] += 1
            if d.opens_rollback:
                rollbacks.append((st, d, quarantine_id))
        event_rows.append((st.provider_id, r.event_id, reading_id, quarantine_id))
    if verified_rows:
        await conn.copy_records_to_table("readings", records=verified_rows, columns=_READING_COLUMNS)
    if quarantined_rows:
        await conn.copy_records_to_table("quarantined_readings", records=quarantined_rows, columns=_QUARANTINE_COLUMNS)
    if event_rows:
        await conn.copy_records_to_table("provider_events", records=event_rows, columns=_EVENT_COLUMNS)
    opened = 0
    for st, d, quarantine_id in rollbacks:
        assert st.vehicle_id is not None
        point = Point(st.reading.odometer_m, st.reading.recorded_at)
        dispute = await _open_rollback(
            conn, st.vehicle_id, st.district, quarantine_id, d.reasons, point, d.before, d.after
        )
        opened += dispute is not None
    return opened


async def _quarantine_raw(
    conn: Conn, unreadable: list[tuple[int, BatchItem]], outcomes: list[ItemOutcome | None], counts: _Counts
) -> None:
    """Items that never became readings, kept raw once (identified by their SHA-256)."""
    rows = []
    for i, it in unreadable:
        rejected = it.rejected if it.rejected is not None else Rejected((), "")
        rows.append((i, it, rejected, raw_digest(rejected.raw)))
    inserted = {
        bytes(r["raw_sha256"])
        for r in await conn.fetch(
            _RAW,
            [it.provider_id for _, it, _, _ in rows],
            [",".join(rej.reasons) or "unreadable" for _, _, rej, _ in rows],
            [rej.raw for _, _, rej, _ in rows],
            [h for _, _, _, h in rows],
            [it.received_at for _, it, _, _ in rows],
        )
    }
    for i, it, rej, h in rows:
        if h in inserted:
            inserted.discard(h)  # the same bytes twice in one batch: the second is a duplicate
            outcomes[i] = ItemOutcome("quarantined", rej.reasons or ("unreadable",))
            counts.add(it.provider_id, "quarantined")
        else:
            outcomes[i] = ItemOutcome("duplicate", rej.reasons)
            counts.add(it.provider_id, "duplicates")
