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
from storage.reports import ingest_stats


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stats", help="counts of stored, duplicate and quarantined readings")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    async def go() -> dict[str, Any]:
        conn = await asyncpg.connect(load_settings().database_url)
        try:
            return await ingest_stats(conn)
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
