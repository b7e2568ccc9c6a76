"""Benchmark: what PostgreSQL alone needs to store telematics readings with their keys.

Issue 6 asks for 50,000 readings/s over HTTP on this 2-core machine. Whatever the service does,
each accepted reading ends as one row in `readings` (unique on vehicle, time and odometer) and
one in `provider_events` (unique on provider and event id), committed durably. This script
measures that floor with no service, no broker, no load generator and no checks at all: two
connections (one per core) COPY ready-made binary rows straight into the project's own tables
(migrated scratch database), 1,000 readings and one commit per batch, as the service's batches
are. The naive baseline in the same run is one INSERT and one commit per reading.

Whatever the service adds (HTTP, HMAC, JSON, adapters, the order-free checks and the look-ups
that make duplicates idempotent) and whatever the load generator costs comes on top of this, on
the same two cores. So if this floor is not far above 50,000/s, the target cannot be met here.

Run:  .venv/bin/python bench/ingest_floor.py [--readings 200000] [--connections 2]
Last line: {"copy_readings_per_s", "copy_cpu_us_per_reading", "naive_readings_per_s", "ratio", ...}
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from storage.db import drop_database, ensure_database, with_database  # noqa: E402
from storage.migrate import migrate  # noqa: E402

ADMIN_URL = os.environ.get("CARMILEAGE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BATCH = 1_000
READING_COLUMNS = ("id", "vehicle_id", "odometer_m", "recorded_at", "received_at", "source", "provider_id",
                   "provider_event_id", "original_unit")
EVENT_COLUMNS = ("provider_id", "event_id", "reading_id", "received_at")


def _bench_ingest() -> Any:
    """bench/ingest.py (a script, not a package), for its /proc CPU reader."""
    spec = importlib.util.spec_from_file_location("bench_ingest", ROOT / "bench" / "ingest.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def batches(n: int, vehicles: int, provider_id: int, first_id: int, base: datetime, prefix: str) -> list[tuple[list[Any], list[Any]]]:
    """Ready-made rows: reading k of vehicle v every 10 minutes, 5 km apart."""
    now = datetime.now(UTC)
    out = []
    for start in range(0, n, BATCH):
        rs, es = [], []
        for i in range(start, min(n, start + BATCH)):
            v, k = i % vehicles, i // vehicles
            rid = first_id + i
            rs.append((rid, v + 1, 20_000_000 + 5_000 * k, base + timedelta(minutes=10 * k), now, "telematics",
                       provider_id, f"{prefix}{i}", "km"))
            es.append((provider_id, f"{prefix}{i}", rid, now))
        out.append((rs, es))
    return out


async def copy_phase(url: str, work: list[tuple[list[Any], list[Any]]], connections: int) -> tuple[float, float]:
    conns = [await asyncpg.connect(url) for _ in range(connections)]
    pids = [c.get_server_pid() for c in conns]
    backend_cpu_s = _bench_ingest().cpu_seconds
    queue: asyncio.Queue[tuple[list[Any], list[Any]]] = asyncio.Queue()
    for b in work:
        queue.put_nowait(b)

    async def run(conn: asyncpg.Connection) -> None:
        while not queue.empty():
            rs, es = queue.get_nowait()
            async with conn.transaction():
                await conn.copy_records_to_table("readings", records=rs, columns=READING_COLUMNS)
                await conn.copy_records_to_table("provider_events", records=es, columns=EVENT_COLUMNS)

    cpu0 = backend_cpu_s(pids)
    t0 = time.perf_counter()
    await asyncio.gather(*(run(c) for c in conns))
    elapsed = time.perf_counter() - t0
    cpu = backend_cpu_s(pids) - cpu0
    for c in conns:
        await c.close()
    return elapsed, cpu


async def naive_phase(url: str, rows: list[tuple[list[Any], list[Any]]]) -> float:
    conn = await asyncpg.connect(url)
    n = 0
    t0 = time.perf_counter()
    for rs, es in rows:
        for r, e in zip(rs, es, strict=True):
            async with conn.transaction():
                await conn.execute(
                    "insert into readings (" + ", ".join(READING_COLUMNS) + ") values ($1,$2,$3,$4,$5,$6,$7,$8,$9)", *r
                )
                await conn.execute("insert into provider_events (" + ", ".join(EVENT_COLUMNS) + ") values ($1,$2,$3,$4)", *e)
            n += 1
    elapsed = time.perf_counter() - t0
    await conn.close()
    return n / elapsed


async def main(args: argparse.Namespace) -> dict[str, Any]:
    url = with_database(ADMIN_URL, f"cmbench_floor_{uuid.uuid4().hex[:8]}")
    await ensure_database(url)
    try:
        conn = await asyncpg.connect(url)
        await migrate(conn)
        provider_id = await conn.fetchval("insert into providers (name) values ('floormotors') returning id")
        await conn.close()
        base = datetime.now(UTC).replace(microsecond=0) - timedelta(days=30)
        work = batches(args.readings, args.vehicles, provider_id, 1, base, "e")
        elapsed, cpu = await copy_phase(url, work, args.connections)
        naive_work = batches(args.naive, args.vehicles, provider_id, 10_000_000, base + timedelta(days=400), "n")
        naive_rate = await naive_phase(url, naive_work)
        rate = args.readings / elapsed
        return {
            "readings": args.readings,
            "connections": args.connections,
            "copy_readings_per_s": round(rate),
            "copy_cpu_us_per_reading": round(cpu / args.readings * 1e6, 1),
            "copy_cpu_limit_readings_per_s_on_2_cores": round(2 / (cpu / args.readings)),
            "naive_readings_per_s": round(naive_rate),
            "ratio": round(rate / naive_rate, 1),
        }
    finally:
        await drop_database(url)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--readings", type=int, default=200_000)
    ap.add_argument("--vehicles", type=int, default=2_000)
    ap.add_argument("--connections", type=int, default=2)
    ap.add_argument("--naive", type=int, default=2_000)
    return ap.parse_args()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(parse_args()))))
