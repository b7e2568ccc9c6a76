"""Benchmark: one evaluation round over N synthetic participations (default 1,000,000), set-based,
against a naive per-participation loop (fetch, compute in Python, insert result and outbox row)
timed on a sample in the same run and extrapolated to N.

Every participation is computable under the rule set (annual periods of 336-365 days, seasons
started in their window and covering it), so the round writes a result for each.

Worlds (`--world`):
- `connected` (default): every car streams its readings (a provider's consent, no photos). Earlier
  designations gave every participation its start and five in six their end; the round first
  designates the ends of the sixth whose period has just settled (about a round's worth), then
  evaluates everything.
- `backlog`: connected, but nothing designated yet (the first run after a deployment): designating
  all starts and ends is timed alone, then the round runs.
- `photo`: every participation has its readings up front, as the photo flow sets them.

The naive loop decides each participation with the period rules' one function
(`prorate.evaluate.evaluate_participation`), which the round states in SQL.

Uses its own scratch database (created, then dropped; CMBENCH_DB names it, --keep keeps it). Run:
    nice -n 10 .venv/bin/python bench/evaluate.py [--n 1000000] [--sample 300] [--world connected|backlog|photo]
Last line: {"participations": n, "seconds": s, "ratio_vs_naive": r, "designated": k,
"designation_seconds": d, "designation_steady_seconds": z}: `seconds` is the round, its
designation included; `designated` the start and end readings designated (in the round, or alone
for `backlog`) in `designation_seconds`; `designation_steady_seconds` a designation with nothing
left to do, after the round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
import uuid

import asyncpg

from prorate.evaluate import CarHistory, Participation, PeriodReading, evaluate_participation, reading_day
from prorate.figures import PeriodFigures
from prorate.rounds import parse_round
from prorate.rules import rule_set_named
from storage.db import create_pool, drop_database, ensure_database, with_database
from storage.evaluation import evaluate_round
from storage.migrate import migrate
from storage.period_readings import designate

ADMIN_URL = os.environ.get("CARMILEAGE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
ROUND = "2023-05"

# 1 car per participation; a mix of every baseline method and ~10 % season participations.
_GENERATE = """
insert into owners (id, district)
select 'o' || g, (array['강남구','종로구','마포구','송파구','노원구'])[1 + g % 5]
from generate_series(1, $1) g;

insert into vehicles (owner_id, plate, plate_key, vin, district, registration_region, use, vehicle_type,
                      seats, fuel, first_registration_date, acquired_date, acquired_odometer_m)
select 'o' || g, 'p' || g, 'p' || g, 'KMH' || lpad(g::text, 14, '0'),
       (array['강남구','종로구','마포구','송파구','노원구'])[1 + g % 5], '서울', 'non_commercial',
       'passenger', 5, 'gasoline',
       case when g % 20 = 3 then date '2021-12-01' else date '2012-01-01' + (g % 3000) end,
       case when g % 20 in (5, 6, 7) then date '2020-01-01' + (g % 300) end,
       case when g % 20 in (5, 6, 7) then 10000000 + (g % 50000) * 100 end
from generate_series(1, $1) g;

-- $2: the world. Connected worlds' season readings lie inside the season [1 Dec, 1 Apr), as
-- designation requires; their annual participations enrol on their first reading's day, so that
-- the end reading lies within the 12 months. Annual periods run 336-365 days (at least the rule
-- set's minimum of 335, so that every participation is computed).
insert into readings (id, vehicle_id, odometer_m, recorded_at, source, verified_at)
select 2 * g - 1, g, 40000000 + (g % 70000) * 1000, t, 'telematics', t + interval '1 hour'
from generate_series(1, $1) g,
     lateral (select case when g % 10 = 9 and $2 <> 'photo' then timestamptz '2022-12-01 12:00+09'
                          when g % 10 = 9 then timestamptz '2022-11-25 12:00+09'
                          else timestamptz '2022-01-01 12:00+09' + make_interval(days => g % 100) end as t) x
union all
select 2 * g, g, 40000000 + (g % 70000) * 1000 + (g % 25000) * 1000 + g % 997, t, 'telematics',
       t + interval '1 hour'
from generate_series(1, $1) g,
     lateral (select case when g % 10 = 9 and $2 <> 'photo' then timestamptz '2023-03-31 12:00+09'
                          when g % 10 = 9 then timestamptz '2023-04-02 12:00+09'
                          else timestamptz '2023-01-01 12:00+09' + make_interval(days => g % 100 - g % 30) end as t) x;

insert into participations (vehicle_id, program, season_year, rule_set, enrolled_on, baseline_daily_km,
                            start_reading_id, end_reading_id)
select g, case when g % 10 = 9 then 'season' else 'annual' end,
       case when g % 10 = 9 then 2022 end, 'seoul-2022',
       case when $2 = 'photo' then date '2022-02-01'
            when g % 10 = 9 then date '2022-11-20'
            else date '2022-01-01' + g % 100 end,
       case when g % 20 = 11 then 25.5 + (g % 100) / 10.0 end,
       case when $2 <> 'backlog' then 2 * g - 1 end,
       case when $2 = 'photo' or ($2 = 'connected' and g % 6 <> 0) then 2 * g end
from generate_series(1, $1) g;

-- What earlier designations recorded in the connected world (the readings' instants as above).
insert into period_readings (participation_id, stage, reading_id, recorded_at, reason, as_of)
select g, 'start', 2 * g - 1, t, 'rule', t + interval '1 day'
from generate_series(1, $1) g,
     lateral (select case when g % 10 = 9 then timestamptz '2022-12-01 12:00+09'
                          else timestamptz '2022-01-01 12:00+09' + make_interval(days => g % 100) end as t) x
where $2 = 'connected'
union all
select g, 'end', 2 * g, t, 'rule', t + interval '10 days'
from generate_series(1, $1) g,
     lateral (select case when g % 10 = 9 then timestamptz '2023-03-31 12:00+09'
                          else timestamptz '2023-01-01 12:00+09' + make_interval(days => g % 100 - g % 30) end as t) x
where $2 = 'connected' and g % 6 <> 0;

insert into providers (id, name) overriding system value
select 1, 'bench-maker' where $2 <> 'photo' and $1::int > 0;

insert into vehicle_consents (provider_id, vehicle_id, granted_at)
select 1, g, timestamptz '2020-01-01 00:00+09' from generate_series(1, $1) g where $2 <> 'photo';
"""

async def setup(url: str, n: int, world: str) -> float:
    t = time.perf_counter()
    await drop_database(url)
    await ensure_database(url)
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
        # Synthetic data of our own making, loaded with the foreign-key triggers off, so the
        # tables can fill in any order: two connections split the statements (about half the
        # time on two cores). Cars and their owners and consents on one; readings,
        # participations and designations on the other.
        stmts = _GENERATE.split(";\n\n")
        cars = [x for x in stmts if re.search(r"insert into (owners|vehicles|providers|vehicle_consents)\b", x)]
        rest = [x for x in stmts if x not in cars]

        async def load(part: list[str]) -> None:
            c = await asyncpg.connect(url)
            try:
                async with c.transaction():
                    await c.execute("set local synchronous_commit = off")
                    await c.execute("set local session_replication_role = replica")
                    for stmt in part:
                        await c.execute(stmt, *((n, world) if "$2" in stmt else (n,)))
            finally:
                await c.close()

        await asyncio.gather(load(cars), load(rest))
        await conn.execute("select setval('readings_id_seq', $1)", 2 * n)
        await conn.execute("analyze")
    finally:
        await conn.close()
    return time.perf_counter() - t


_READING = ("id", "vehicle_id", "odometer_m", "status", "source", "recorded_at", "captured_at", "uploaded_at",
            "approved_at", "verified_at")


async def naive_sample(pool: asyncpg.Pool, sample: int, n: int, skip_due: bool = False) -> float:
    """Seconds per participation for a per-row loop: fetch, decide in Python with the period rules
    (`evaluate_participation`, as `carmileage calc` does), insert the result and its outbox row,
    one by one. The outbox row is the round's (its payload rendered when it is sent), so both
    sides do the same work."""
    rnd = parse_round(ROUND)
    step = max(1, n // sample)
    ids = [i for i in range(1, n + 1, step) if not (skip_due and i % 6 == 0)][:sample]
    readings = ", ".join(f"{a}.{c} as {a}_{c}" for a in ("rs", "re") for c in _READING)
    async with pool.acquire() as conn:
        tr = conn.transaction()
        await tr.start()
        try:
            t = time.perf_counter()
            for pid in ids:
                row = await conn.fetchrow(
                    f"""select p.*, v.first_registration_date, v.acquired_date, v.acquired_odometer_m,
                               v.district, {readings}
                        from participations p join vehicles v on v.id = p.vehicle_id
                        join readings rs on rs.id = p.start_reading_id
                        join readings re on re.id = p.end_reading_id
                        where p.id = $1""",
                    pid,
                )
                assert row is not None
                if row["re_verified_at"] >= rnd.cutoff:
                    continue
                rules = rule_set_named(row["rule_set"])
                start, end = (
                    PeriodReading(
                        id=row[f"{a}_id"], vehicle_id=row[f"{a}_vehicle_id"], odometer_m=row[f"{a}_odometer_m"],
                        superseded=row[f"{a}_status"] != "verified",
                        on=reading_day(source=row[f"{a}_source"], recorded_at=row[f"{a}_recorded_at"],
                                       captured_at=row[f"{a}_captured_at"], uploaded_at=row[f"{a}_uploaded_at"],
                                       approved_at=row[f"{a}_approved_at"], basis=rules.readings.photo_date_basis),
                    )
                    for a in ("rs", "re")
                )
                f = evaluate_participation(
                    Participation(
                        program=row["program"], rule_set=row["rule_set"], season_year=row["season_year"],
                        enrolled_on=row["enrolled_on"], status=row["status"], ended_on=row["ended_on"],
                        end_reason=row["end_reason"], baseline_daily_km=row["baseline_daily_km"],
                        car=CarHistory(vehicle_id=row["vehicle_id"], first_registration_date=row["first_registration_date"],
                                       acquired_date=row["acquired_date"], acquired_odometer_m=row["acquired_odometer_m"],
                                       district=row["district"]),
                    ),
                    start,
                    end,
                    round_first_day=rnd.first_day,
                    rules=rules,
                )
                assert isinstance(f, PeriodFigures), f
                assert f.baseline is not None
                r = f.reported()
                event_id = uuid.uuid4()
                rid = await conn.fetchval(
                    """insert into period_results (participation_id, version, round, program, rule_set,
                           start_reading_id, end_reading_id, start_date, end_date, days, baseline_daily_km,
                           baseline_km, actual_km, reduction_km, reduction_rate_pct, points, special_points,
                           baseline_derivation, event_id)
                       values ($1, 1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
                       returning id""",
                    pid, ROUND, f.program, f.rules, row["start_reading_id"], row["end_reading_id"],
                    f.start_date, f.end_date, f.days, r.baseline_daily_km, r.baseline_km, r.actual_km,
                    r.reduction_km, r.reduction_rate_pct, f.points or 0, f.special_points or 0,
                    json.dumps(f.baseline.evidence()), event_id,
                )
                await conn.execute(
                    "insert into outbox (event_id, kind, period_result_id) values ($1, 'period_result', $2)",
                    event_id,
                    rid,
                )
            per_row = (time.perf_counter() - t) / len(ids)
        finally:
            await tr.rollback()
    return per_row


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--sample", type=int, default=300)
    ap.add_argument("--keep", action="store_true", help="keep the scratch database")
    ap.add_argument("--world", choices=("connected", "backlog", "photo"), default="connected")
    ap.add_argument("--setup-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    url = with_database(ADMIN_URL, os.environ.get("CMBENCH_DB", f"cmbench_evaluate_{os.getpid()}"))
    try:
        setup_s = await setup(url, args.n, args.world)
        print(f"setup: {args.n} participations ({args.world}) in {setup_s:.1f} s", file=sys.stderr)
        if args.setup_only:
            return
        pool = await create_pool(url, min_size=1, max_size=2)
        designated, designation_s = 0, 0.0
        try:
            if args.world == "backlog":
                async with pool.acquire() as conn:
                    d = await designate(conn)
                    designated, designation_s = d.starts + d.ends, d.seconds
                    # Rounds come weeks after the first designation: autovacuum and checkpoints
                    # have caught up by then.
                    await conn.execute("vacuum (analyze) participations")
                    await conn.execute("checkpoint")
                print(f"designation alone: {d.starts} starts and {d.ends} ends in {designation_s:.1f} s", file=sys.stderr)
                assert d.starts == d.ends == args.n, d
            # The naive loop gets a connection of its own, closed afterwards: PostgreSQL caches the
            # plans of foreign-key checks per connection, and one made while period_results held a
            # handful of rows (a sequential scan) would check the round's first 100,000 outbox rows
            # by scanning period_results each time.
            naive_pool = await create_pool(url, min_size=1, max_size=1)
            try:
                # (In the connected world, participations whose end the round designates are not
                # sampled: the naive loop has no designation.)
                per_row = await naive_sample(naive_pool, args.sample, args.n, skip_due=args.world == "connected")
            finally:
                await naive_pool.close()
            print(f"naive: {per_row * 1000:.2f} ms per participation", file=sys.stderr)
            async with pool.acquire() as conn:
                t = time.perf_counter()
                marks: list[float] = []
                staged = await evaluate_round(
                    conn, parse_round(ROUND), on_staged=lambda _: marks.append(time.perf_counter())
                )
                seconds = time.perf_counter() - t
                written = await conn.fetchval("select count(*) from outbox")
                if args.world == "connected":
                    assert staged.designation is not None
                    d = staged.designation
                    designated, designation_s = d.starts + d.ends, d.seconds
                    assert (d.starts, d.ends) == (0, args.n // 6), d
                    print(f"the round's designation: {d.ends} ends in {d.seconds:.1f} s", file=sys.stderr)
                # A designation with nothing left to designate: what every later round pays.
                t_steady = time.perf_counter()
                await designate(conn, dry_run=True)
                steady_s = time.perf_counter() - t_steady
        finally:
            await pool.close()
        print(
            f"set-based: {staged.to_write} results + {written} outbox rows in {seconds:.1f} s "
            f"({staged.candidates} candidates, {len(staged.problems)} problems; "
            f"staging {marks[0] - t:.1f} s, writing {t + seconds - marks[0]:.1f} s)",
            file=sys.stderr,
        )
        assert staged.to_write == written == args.n - len(staged.problems)
        print(json.dumps({
            "participations": args.n,
            "seconds": round(seconds, 2),
            "ratio_vs_naive": round(per_row * args.n / seconds, 1),
            "designated": designated,
            "designation_seconds": round(designation_s, 2),
            "designation_steady_seconds": round(steady_s, 2),
        }))
    finally:
        if not args.keep:
            await drop_database(url)


if __name__ == "__main__":
    asyncio.run(main())
