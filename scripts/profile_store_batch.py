"""Where PostgreSQL time goes in the telematics fast path: each statement of `store_batch`, timed.

Builds a scratch database (created, then dropped) with 10,000 enrolled cars, stores 60 batches of
readings (after one reading of every car, to warm up), and prints the wall time of each statement per reading,
largest first; the last line is JSON. Diagnostic only (docs/scaling.md quotes it); the throughput
benchmarks are bench/ingest.py and bench/ingest_floor.py.

Run:  .venv/bin/python scripts/profile_store_batch.py [--batch 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import importlib.util
import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from storage.db import drop_database, ensure_database, with_database  # noqa: E402
from storage.migrate import migrate  # noqa: E402
from storage.providers import create_provider  # noqa: E402
from storage.readings import BatchItem, store_batch  # noqa: E402
from storage.secret_box import SecretBox  # noqa: E402
from telematics.reading import OdometerReading  # noqa: E402

ADMIN_URL = os.environ.get("CARMILEAGE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TIMED = ("execute", "fetch", "fetchrow", "fetchval", "copy_records_to_table")
VEHICLES = 10_000


def _bench_ingest() -> Any:
    spec = importlib.util.spec_from_file_location("bench_ingest", ROOT / "bench" / "ingest.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class TimedConnection:
    """The connection, with the wall time of every statement added up by its first words."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.seconds: collections.defaultdict[str, float] = collections.defaultdict(float)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.conn, name)
        if name not in TIMED:
            return attr

        async def timed(query: str, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await attr(query, *args, **kwargs)
            finally:
                key = " ".join(f"{name}: {query}".split())[:70]
                self.seconds[key] += time.perf_counter() - started

        return timed


async def main(batch: int) -> dict[str, Any]:
    bench = _bench_ingest()
    url = with_database(ADMIN_URL, f"cmbench_sb_{uuid.uuid4().hex[:8]}")
    await ensure_database(url)
    try:
        conn = await asyncpg.connect(url)
        await migrate(conn)
        provider_id, _ = await create_provider(
            conn, "profilemotors", display_name=None, mqtt_password_hash="x", box=SecretBox(os.urandom(32))
        )
        await bench.enrol(conn, VEHICLES, [provider_id])
        await conn.execute("analyze")
        base = datetime.now(UTC).replace(microsecond=0) - timedelta(days=5)
        # Warm-up: every car's first reading (which looks for a previous one across all months),
        # then 50 timed batches of cars that have a history, as in steady ingestion.
        warm_up = -(-VEHICLES // batch)
        batches = []
        for b in range(warm_up + 50):
            items = []
            for n in range(b * batch, (b + 1) * batch):
                v, k = n % VEHICLES, n // VEHICLES
                reading = OdometerReading(
                    f"e{n}", bench.vin_of(v), 20_000_000 + 5_000 * k, base + k * timedelta(minutes=10),
                    Decimal(20_000 + 5 * k), "km",
                )
                items.append(BatchItem(provider_id, datetime.now(UTC), reading))
            batches.append(items)
        for items in batches[:warm_up]:
            await store_batch(conn, items)
        timed = TimedConnection(conn)
        started = time.perf_counter()
        for items in batches[warm_up:]:
            await store_batch(timed, items)  # type: ignore[arg-type]
        readings = 50 * batch
        total = (time.perf_counter() - started) / readings * 1e6
        await conn.close()
        per_statement = {
            k: round(v / readings * 1e6, 2) for k, v in sorted(timed.seconds.items(), key=lambda kv: -kv[1])
        }
        for key, us in per_statement.items():
            print(f"{us:7.2f} µs a reading  {key}")
        return {"batch": batch, "us_per_reading": round(total, 1), "per_statement_us": per_statement}
    finally:
        await drop_database(url)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=1000)
    print(json.dumps(asyncio.run(main(ap.parse_args().batch)), ensure_ascii=False))
