"""`carmileage stats [--json]`: how many readings were stored, were duplicates, were quarantined.

The counts are exact: `ingest_counts` is written in the same transaction as the readings it
counts (a duplicate leaves no other trace). The table sizes are given alongside.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

import asyncpg

from ingest.settings import load_settings

_TOTALS = """
select coalesce(sum(accepted), 0)::int8 as stored, coalesce(sum(duplicates), 0)::int8 as duplicate,
       coalesce(sum(quarantined), 0)::int8 as quarantined
from ingest_counts"""
_BY = """
select {key} as key, sum(accepted)::int8 as stored, sum(duplicates)::int8 as duplicate,
       sum(quarantined)::int8 as quarantined
from ingest_counts c left join providers p on p.id = c.provider_id
group by 1 order by 1"""


async def collect(conn: asyncpg.Connection) -> dict[str, Any]:
    totals = await conn.fetchrow(_TOTALS)
    assert totals is not None
    by_source = await conn.fetch(_BY.format(key="c.source"))
    by_provider = await conn.fetch(_BY.format(key="coalesce(p.name, '(none)')"))
    by_reason = await conn.fetch(
        """select reason, count(*)::int8 as n from quarantined_readings, unnest(reasons) as reason
           group by 1 order by 2 desc, 1"""
    )
    return {
        **dict(totals),
        "by_source": {r["key"]: {k: r[k] for k in ("stored", "duplicate", "quarantined")} for r in by_source},
        "by_provider": {r["key"]: {k: r[k] for k in ("stored", "duplicate", "quarantined")} for r in by_provider},
        "quarantined_by_reason": {r["reason"]: r["n"] for r in by_reason},
        "tables": {
            "readings": await conn.fetchval("select count(*) from readings"),
            "quarantined_readings": await conn.fetchval("select count(*) from quarantined_readings"),
            "open_rollback_disputes": await conn.fetchval(
                "select count(*) from disputes where kind = 'rollback' and status = 'open'"
            ),
        },
    }


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stats", help="counts of stored, duplicate and quarantined readings")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    async def go() -> dict[str, Any]:
        conn = await asyncpg.connect(load_settings().database_url)
        try:
            return await collect(conn)
        finally:
            await conn.close()

    stats = asyncio.run(go())
    if args.json:
        print(json.dumps(stats))
        return 0
    print(f"stored {stats['stored']}  duplicate {stats['duplicate']}  quarantined {stats['quarantined']}")
    for name, c in stats["by_provider"].items():
        print(f"  {name:<24} stored {c['stored']}  duplicate {c['duplicate']}  quarantined {c['quarantined']}")
    for reason, n in stats["quarantined_by_reason"].items():
        print(f"  quarantined for {reason}: {n}")
    return 0
