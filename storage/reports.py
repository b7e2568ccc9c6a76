"""Reports: district statistics (the inputs of the city's yearly district evaluation, one row
per 자치구) and the ingestion counts behind `carmileage stats`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import asyncpg

from prorate.vehicle import SEOUL_DISTRICTS


@dataclass(frozen=True, slots=True)
class DistrictRow:
    district: str
    #: Owners with a participation running at any time in the year.
    members: int
    #: Owners whose first participation ever was enrolled in the year.
    new_members: int
    #: Participations that ended in the year (transfer, move, scrapping, withdrawal).
    ended_participations: int
    #: Current (not superseded) period results whose period ended in the year.
    results: int
    #: Sum of their positive reductions, km (each rounded to 0.1 as reported).
    verified_reduction_km: Decimal
    points: int
    special_points: int


_REPORT = """
with members as (
    select v.district, count(distinct v.owner_id) as n
    from participations p join vehicles v on v.id = p.vehicle_id
    where p.enrolled_on <= $2 and (p.ended_on is null or p.ended_on >= $1)
    group by v.district
), firsts as (
    select v.owner_id, min(p.enrolled_on) as first_on,
           (array_agg(v.district order by p.enrolled_on, p.id))[1] as district
    from participations p join vehicles v on v.id = p.vehicle_id
    group by v.owner_id
), new_members as (
    select district, count(*) as n from firsts where first_on between $1 and $2 group by district
), ended as (
    select v.district, count(*) as n
    from participations p join vehicles v on v.id = p.vehicle_id
    where p.status = 'ended' and p.ended_on between $1 and $2
    group by v.district
), results as (
    select coalesce(r.district, v.district) as district, count(*) as n,
           coalesce(sum(r.reduction_km) filter (where r.reduction_km > 0), 0) as reduction_km,
           coalesce(sum(r.points), 0) as points, coalesce(sum(r.special_points), 0) as special_points
    from period_results r
    join participations p on p.id = r.participation_id
    join vehicles v on v.id = p.vehicle_id
    where r.superseded_by is null and r.end_date between $1 and $2
    group by 1
), districts as (
    select district from unnest($3::text[]) as district
    union select district from members union select district from results
    union select district from ended union select district from new_members
)
select d.district, coalesce(m.n, 0) as members, coalesce(nm.n, 0) as new_members,
       coalesce(e.n, 0) as ended, coalesce(r.n, 0) as results,
       coalesce(r.reduction_km, 0) as reduction_km, coalesce(r.points, 0) as points,
       coalesce(r.special_points, 0) as special_points,
       array_position($3::text[], d.district) as pos
from districts d
left join members m on m.district = d.district
left join new_members nm on nm.district = d.district
left join ended e on e.district = d.district
left join results r on r.district = d.district
order by pos nulls last, d.district
"""


async def district_report(conn: asyncpg.Connection | asyncpg.Pool, year: int) -> list[DistrictRow]:
    """All 25 districts (zeros included) in the official order, then any other district seen."""
    rows = await conn.fetch(_REPORT, date(year, 1, 1), date(year, 12, 31), list(SEOUL_DISTRICTS))
    return [
        DistrictRow(
            district=r["district"],
            members=r["members"],
            new_members=r["new_members"],
            ended_participations=r["ended"],
            results=r["results"],
            verified_reduction_km=Decimal(r["reduction_km"]),
            points=int(r["points"]),
            special_points=int(r["special_points"]),
        )
        for r in rows
    ]


_INGEST_TOTALS = """
select coalesce(sum(accepted), 0)::int8 as stored, coalesce(sum(duplicates), 0)::int8 as duplicate,
       coalesce(sum(quarantined), 0)::int8 as quarantined
from ingest_counts"""
_INGEST_BY = """
select {key} as key, sum(accepted)::int8 as stored, sum(duplicates)::int8 as duplicate,
       sum(quarantined)::int8 as quarantined
from ingest_counts c left join providers p on p.id = c.provider_id
group by 1 order by 1"""
_COUNTED = ("stored", "duplicate", "quarantined")


async def ingest_stats(conn: asyncpg.Connection | asyncpg.Pool) -> dict[str, Any]:
    """How many readings were stored, were duplicates, were quarantined: in total, by source, by
    provider and by quarantine reason, with the table sizes alongside. Exact, because
    `ingest_counts` is written in the same transaction as the readings it counts."""
    totals = await conn.fetchrow(_INGEST_TOTALS)
    assert totals is not None
    by_source = await conn.fetch(_INGEST_BY.format(key="c.source"))
    by_provider = await conn.fetch(_INGEST_BY.format(key="coalesce(p.name, '(none)')"))
    by_reason = await conn.fetch(
        """select reason, count(*)::int8 as n from quarantined_readings, unnest(reasons) as reason
           group by 1 order by 2 desc, 1"""
    )
    return {
        **dict(totals),
        "by_source": {r["key"]: {k: r[k] for k in _COUNTED} for r in by_source},
        "by_provider": {r["key"]: {k: r[k] for k in _COUNTED} for r in by_provider},
        "quarantined_by_reason": {r["reason"]: r["n"] for r in by_reason},
        "tables": {
            "readings": await conn.fetchval("select count(*) from readings"),
            "quarantined_readings": await conn.fetchval("select count(*) from quarantined_readings"),
            "open_rollback_disputes": await conn.fetchval(
                "select count(*) from disputes where kind = 'rollback' and status = 'open'"
            ),
        },
    }
