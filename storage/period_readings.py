"""Designating connected cars' start and end readings, set-based, for every participation at once.

The rule is `prorate.period_bounds` (read it first); this module states it in SQL. A participation
is *connected* when its car has a provider's consent during its period (`connected_for_start`,
`connected_for_end` there). Participations of cars without one are photo participations: the
photo and review flows set their readings, and so do they for a stage with a photo still being
read or reviewed.

Steps, in the caller's transaction (`designate_periods`), each one statement whatever the number
of participations:

1. participations pointing at a superseded reading are listed (`pr_superseded`);
2. each such pointer moves to the reading that corrects it — the car's verified reading at the
   same instant, or of the same photo submission — whichever flow set it;
3. the period bounds of every (rule set, programme, enrolment date, season) in use are computed
   by `prorate.period_bounds` and loaded as a temporary table;
4. the work (`pr_work`): connected participations lacking a start (or with a superseded one
   nothing corrects) or, once their period has settled, an end;
5. the readings the rule chooses (`pr_chosen`): the start, then the end after it;
6. one update of the participations, recorded in `period_readings`.

A designation that exists is never moved (only a superseded one is). Every pointer set is
recorded in `period_readings`. Running it again designates nothing new: it is idempotent.

Each look-up of a car's earliest or latest reading in a period is one probe of the readings'
(vehicle_id, recorded_at) key, month partition by month partition in time order, stopping at the
first hit: ordered by recorded_at alone, which is unique among a car's verified readings (the
checks refuse two values at one instant), so no tie-breaker makes it read on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from prorate.errors import ProrateError
from prorate.period_bounds import period_bounds
from prorate.rules import RuleSet, all_rule_sets
from storage.db import Conn

#: Serialises designations (a round takes it too, after its own lock).
DESIGNATION_LOCK_KEY = 0x63_6D_70_64  # "cmpd"

_TABLES = """
create temp table pr_superseded (
    participation_id bigint not null, stage text not null, reading_id bigint not null,
    vehicle_id bigint not null, recorded_at timestamptz not null, submission_id bigint,
    primary key (participation_id, stage)
) on commit drop;
create temp table pr_bounds (
    rule_set text not null, program text not null, enrolled_on date not null, season_key integer not null,
    starts_at timestamptz not null, ends_at timestamptz not null, last_day date not null,
    end_designated_at timestamptz not null, end_from timestamptz, end_until timestamptz,
    primary key (rule_set, program, enrolled_on, season_key)
) on commit drop;
"""

# 1. Pointers at superseded readings (found through the partial index on superseded readings).
_SUPERSEDED = """
insert into pr_superseded
with gone as materialized (
    select id, vehicle_id, recorded_at, submission_id from readings where status = 'superseded'
)
select p.id, 'start', g.id, g.vehicle_id, g.recorded_at, g.submission_id
from gone g join participations p on p.start_reading_id = g.id and p.vehicle_id = g.vehicle_id
union all
select p.id, 'end', g.id, g.vehicle_id, g.recorded_at, g.submission_id
from gone g join participations p on p.end_reading_id = g.id and p.vehicle_id = g.vehicle_id
"""

# 2. Superseded pointers move to their correction ($1: as of). One row per participation, so a
# participation whose start and end were both corrected is updated once.
_CORRECT = """
with fix as materialized (
    select x.participation_id, x.stage, x.reading_id as old_id, n.id as new_id, n.recorded_at
    from pr_superseded x
    cross join lateral (
        select n.id, n.recorded_at from readings n
        where n.vehicle_id = x.vehicle_id and n.status = 'verified' and n.verified_at <= $1
          and (n.recorded_at = x.recorded_at
               or (x.submission_id is not null and n.submission_id = x.submission_id))
        order by n.id desc limit 1) n
), per as (
    select participation_id,
           max(old_id) filter (where stage = 'start') as old_start,
           max(new_id) filter (where stage = 'start') as new_start,
           max(recorded_at) filter (where stage = 'start') as new_start_at,
           max(old_id) filter (where stage = 'end') as old_end,
           max(new_id) filter (where stage = 'end') as new_end,
           max(recorded_at) filter (where stage = 'end') as new_end_at
    from fix group by participation_id
), moved as (
    update participations p
    set start_reading_id = coalesce(f.new_start, p.start_reading_id),
        end_reading_id = coalesce(f.new_end, p.end_reading_id)
    from per f
    where p.id = f.participation_id
      and (f.new_start is null or p.start_reading_id = f.old_start)
      and (f.new_end is null or p.end_reading_id = f.old_end)
    returning p.id, f.old_start, f.new_start, f.new_start_at, f.old_end, f.new_end, f.new_end_at
), logged as (
    insert into period_readings (participation_id, stage, reading_id, recorded_at, reason,
                                 replaces_reading_id, as_of)
    select m.id, v.stage, v.new_id, v.recorded_at, 'correction', v.old_id, $1
    from moved m
    cross join lateral (values ('start', m.new_start, m.new_start_at, m.old_start),
                               ('end', m.new_end, m.new_end_at, m.old_end)) as v (stage, new_id, recorded_at, old_id)
    where v.new_id is not null
    returning participation_id, stage
), done as (
    delete from pr_superseded x using logged l
    where x.participation_id = l.participation_id and x.stage = l.stage
    returning 1
)
select (select count(*) from logged) as corrected, (select count(*) from done) as resolved
"""

# 3. The (rule set, programme, enrolment date, season) of every participation that may need a
# designation; their bounds are computed in Python.
_KEYS = """
select distinct p.rule_set, p.program, p.enrolled_on, p.season_year
from participations p
where p.start_reading_id is null or p.end_reading_id is null
   or p.id in (select participation_id from pr_superseded)
"""

_BOUNDS_JOIN = """
join pr_bounds b on b.rule_set = p.rule_set and b.program = p.program and b.enrolled_on = p.enrolled_on
                and b.season_key = coalesce(p.season_year, 0)"""

# 4. The work: every participation that lacks a start or an end (or points at a superseded reading
# nothing corrects) and may get one now, with what it needs ($1: as of). The start's recorded_at
# (to place the end on a later day) is looked up only where an end is due: from its designation
# record, or by id for a start the photo flow set.
_WORK = f"""
create temp table pr_work on commit drop as
select f.*,
       case when f.need_end and f.start_kept then coalesce(
           (select d.recorded_at from period_readings d
            where d.participation_id = f.id and d.stage = 'start' and d.reading_id = f.old_start
            limit 1),
           (select r.recorded_at from readings r
            where r.id = f.old_start and r.vehicle_id = f.vehicle_id and r.status = 'verified'))
       end as start_at
from (
    select p.id, p.vehicle_id, p.start_reading_id as old_start, p.end_reading_id as old_end,
           b.starts_at, b.ends_at, b.end_from,
           -- (an ended participation is measured up to the day it ended)
           case when p.status = 'ended' and b.end_until is not null
                then least(b.end_until, ((p.ended_on + 1)::timestamp at time zone 'Asia/Seoul'))
                else b.end_until end as end_until,
           p.start_reading_id is not null and xs.participation_id is null as start_kept,
           (p.start_reading_id is null or xs.participation_id is not null)
           and coalesce(k.for_start, false)
           and not exists (select 1 from photo_submissions s
                           where s.participation_id = p.id and s.stage = 'start'
                             and s.status in ('processing', 'in_review')) as need_start,
           (p.end_reading_id is null or xe.participation_id is not null)
           and b.end_designated_at <= $1
           and coalesce(k.for_end, false)
           and not exists (select 1 from photo_submissions s
                           where s.participation_id = p.id and s.stage = 'end'
                             and s.status in ('processing', 'in_review')) as need_end
    from participations p
    {_BOUNDS_JOIN}
    left join pr_superseded xs on xs.participation_id = p.id and xs.stage = 'start'
    left join pr_superseded xe on xe.participation_id = p.id and xe.stage = 'end'
    -- The car's consents, in one probe: one in force at some time within the period (start), one
    -- in force when it ended (end).
    left join lateral (
        select bool_or(k.granted_at < b.ends_at and k.granted_at <= $1
                       and (k.withdrawn_at is null
                            or (k.withdrawn_at > k.granted_at and k.withdrawn_at > b.starts_at))) as for_start,
               bool_or(k.granted_at < b.ends_at and (k.withdrawn_at is null or k.withdrawn_at >= b.ends_at)) as for_end
        from vehicle_consents k where k.vehicle_id = p.vehicle_id) k on true
    where (p.start_reading_id is null or p.end_reading_id is null
           or xs.participation_id is not null or xe.participation_id is not null)
      and (p.status = 'active' or p.ended_on > b.last_day)
      and b.starts_at <= $1
) f
where f.need_start or f.need_end
"""

# 5. The readings the rule chooses ($1: as of; [$2, $3): the union of the periods and their end
# windows, constants that prune the month partitions once, when the statement starts, not on every
# look-up): the start first, then the end, placed after the start (the one just chosen, or the one
# kept): the earliest reading from the period's end instant where it has one, else the latest
# within it. A gating condition inside each look-up skips it where nothing is due.
_CHOOSE = """
create temp table pr_chosen on commit drop as
select w.id, w.old_start, w.old_end, s.id as new_start, s.recorded_at as new_start_at,
       coalesce(ea.id, eb.id) as new_end, coalesce(ea.recorded_at, eb.recorded_at) as new_end_at
from pr_work w
left join lateral (
    select r.id, r.recorded_at from readings r
    where w.need_start and r.vehicle_id = w.vehicle_id and r.status = 'verified' and r.verified_at <= $1
      and r.recorded_at >= w.starts_at and r.recorded_at < w.ends_at
      and r.recorded_at >= $2 and r.recorded_at < $3 and r.recorded_at <= $1 + interval '1 day'
    order by r.recorded_at limit 1) s on true
cross join lateral (select coalesce(s.recorded_at, w.start_at) as start_at) st
left join lateral (
    select r.id, r.recorded_at from readings r
    where w.need_end and st.start_at is not null and w.end_from is not null
      and r.vehicle_id = w.vehicle_id and r.status = 'verified' and r.verified_at <= $1
      and r.recorded_at >= w.end_from and r.recorded_at < w.end_until
      and r.recorded_at >= $2 and r.recorded_at < $3
    order by r.recorded_at limit 1) ea on true
left join lateral (
    select r.id, r.recorded_at from readings r
    where w.need_end and st.start_at is not null and ea.id is null
      and r.vehicle_id = w.vehicle_id and r.status = 'verified' and r.verified_at <= $1
      and r.recorded_at >= (((st.start_at at time zone 'Asia/Seoul')::date + 1)::timestamp at time zone 'Asia/Seoul')
      and r.recorded_at >= w.starts_at and r.recorded_at < w.ends_at
      and r.recorded_at >= $2 and r.recorded_at < $3
    order by r.recorded_at desc limit 1) eb on true
where s.id is not null or ea.id is not null or eb.id is not null
"""

# 6. One update per participation, re-checking the pointers it read (a photo decision that set one
# meanwhile wins; the next designation looks again), and the record of every pointer set.
_DESIGNATE = """
with set_ as (
    update participations p
    set start_reading_id = coalesce(c.new_start, p.start_reading_id),
        end_reading_id = coalesce(c.new_end, p.end_reading_id)
    from pr_chosen c
    where p.id = c.id
      and p.start_reading_id is not distinct from c.old_start
      and p.end_reading_id is not distinct from c.old_end
    returning p.id, c.new_start, c.new_start_at, c.new_end, c.new_end_at
), logged as (
    insert into period_readings (participation_id, stage, reading_id, recorded_at, reason, as_of)
    select s.id, v.stage, v.reading_id, v.recorded_at, 'rule', $1
    from set_ s
    cross join lateral (values ('start', s.new_start, s.new_start_at),
                               ('end', s.new_end, s.new_end_at)) as v (stage, reading_id, recorded_at)
    where v.reading_id is not null
    returning stage
)
select count(*) filter (where stage = 'start') as starts, count(*) filter (where stage = 'end') as ends
from logged
"""

_UNBOUNDED = """
select count(*) from participations p
where (p.start_reading_id is null or p.end_reading_id is null) and p.status = 'active'
  and not exists (select 1 from pr_bounds b
                  where b.rule_set = p.rule_set and b.program = p.program and b.enrolled_on = p.enrolled_on
                    and b.season_key = coalesce(p.season_year, 0))
"""


@dataclass(frozen=True)
class Designation:
    """What a designation did (or, in a dry run, would do)."""

    #: The instant it was applied as of: readings verified later were not considered.
    as_of: datetime
    starts: int
    ends: int
    #: Pointers moved from a superseded reading to the reading that corrects it.
    corrections: int
    #: Active participations lacking a reading whose period cannot be bounded (an unknown rule
    #: set, a season the rules lack): nothing can be designated for them.
    unbounded: int
    #: How long it took (operators watch it: it is part of every round).
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "starts": self.starts,
            "ends": self.ends,
            "corrections": self.corrections,
            "unbounded": self.unbounded,
            "seconds": round(self.seconds, 3),
        }


def _bounds_rows(
    keys: list[asyncpg.Record], sets: tuple[RuleSet, ...]
) -> tuple[list[tuple[Any, ...]], int]:
    by_name = {r.name: r for r in sets}
    rows: list[tuple[Any, ...]] = []
    unbounded = 0
    for k in keys:
        rules = by_name.get(k["rule_set"])
        if rules is None:
            unbounded += 1
            continue
        try:
            b = period_bounds(k["program"], k["enrolled_on"], k["season_year"], rules)
        except ProrateError:
            unbounded += 1
            continue
        rows.append(
            (k["rule_set"], k["program"], k["enrolled_on"], k["season_year"] or 0,
             b.starts_at, b.ends_at, b.last_day, b.end_designated_at, b.end_from, b.end_until)
        )
    return rows, unbounded


async def designate_periods(
    conn: Conn, *, as_of: datetime | None = None, sets: tuple[RuleSet, ...] | None = None
) -> Designation:
    """Designate start and end readings; must run inside the caller's transaction.

    `as_of` (default: the transaction's start) is the instant the rule is applied at: only readings
    verified by then count, and only periods settled by then get an end.
    """
    await conn.execute("select pg_advisory_xact_lock($1)", DESIGNATION_LOCK_KEY)
    started = time.perf_counter()
    await conn.execute("set local jit = off")
    at: datetime = as_of if as_of is not None else await conn.fetchval("select now()")
    await conn.execute(_TABLES)
    await conn.execute(_SUPERSEDED)
    corrected = int(await conn.fetchval(_CORRECT, at))
    keys = await conn.fetch(_KEYS)
    rows, unbounded_keys = _bounds_rows(keys, sets if sets is not None else all_rule_sets())
    await conn.copy_records_to_table("pr_bounds", records=rows)
    await conn.execute("analyze pr_bounds; analyze pr_superseded")
    await conn.execute(_WORK, at)
    await conn.execute("analyze pr_work")
    window = await conn.fetchrow(
        "select min(starts_at) as lo, max(greatest(ends_at, end_until)) as hi from pr_work"
    )
    assert window is not None
    await conn.execute(_CHOOSE, at, window["lo"], window["hi"])
    await conn.execute("analyze pr_chosen")
    row = await conn.fetchrow(_DESIGNATE, at)
    assert row is not None
    starts, ends = int(row["starts"]), int(row["ends"])
    unbounded = 0
    if unbounded_keys:
        unbounded = int(await conn.fetchval(_UNBOUNDED))
    await conn.execute("drop table pr_superseded, pr_bounds, pr_work, pr_chosen")
    return Designation(
        as_of=at,
        starts=starts,
        ends=ends,
        corrections=corrected,
        unbounded=unbounded,
        seconds=time.perf_counter() - started,
    )


class _DryRun(Exception):
    """Raised inside the transaction to roll a dry run back."""


async def designate(
    conn: Conn, *, dry_run: bool = False, as_of: datetime | None = None
) -> Designation:
    """`designate_periods` in a transaction of its own; a dry run rolls it back (writes nothing)."""
    result: Designation | None = None
    try:
        async with conn.transaction():
            result = await designate_periods(conn, as_of=as_of)
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
    assert result is not None
    return result



@dataclass(frozen=True)
class PeriodFacts:
    """What an operator needs to see about one participation's period readings."""

    participation: asyncpg.Record
    #: The car's provider consents (provider name, granted_at, withdrawn_at).
    consents: list[asyncpg.Record]
    #: The readings the participation points at (start, end), with their provenance.
    readings: dict[str, asyncpg.Record | None]
    #: Every designation recorded for it, oldest first.
    history: list[asyncpg.Record]


async def period_facts(conn: Conn, participation_id: int) -> PeriodFacts | None:
    p = await conn.fetchrow("select * from participations where id = $1", participation_id)
    if p is None:
        return None
    consents = await conn.fetch(
        """select pr.name as provider, k.granted_at, k.withdrawn_at
           from vehicle_consents k join providers pr on pr.id = k.provider_id
           where k.vehicle_id = $1 order by k.granted_at""",
        p["vehicle_id"],
    )
    readings: dict[str, asyncpg.Record | None] = {}
    for stage in ("start", "end"):
        rid = p[f"{stage}_reading_id"]
        readings[stage] = (
            None
            if rid is None
            else await conn.fetchrow(
                """select id, source, odometer_m, recorded_at, verified_at, status from readings
                   where id = $1 and vehicle_id = $2""",
                rid,
                p["vehicle_id"],
            )
        )
    history = await conn.fetch(
        "select * from period_readings where participation_id = $1 order by id", participation_id
    )
    return PeriodFacts(participation=p, consents=list(consents), readings=readings, history=list(history))
