"""Benchmark: finding earlier uploads of the same or a near photo (the reuse check of every photo
decision) when the photos table is large.

Every machine decision asks, for both photos of a submission, which earlier photos are the same
bytes or within `photo_reuse_max_distance` (8) bits of its perceptual hash. Read naively that is
a scan of every hash in the table: fine for a test database, a few hundred milliseconds per
decision once a city's program has stored a million photos. Migration 0420 cuts the hash into
four 16-bit bands with an index each; `storage.photos.reuse_matches` looks up the 137 values
within 2 bits of each band and computes the exact distance for what they find only.

This script fills a scratch database (migrated, then dropped) with --photos photos in
submissions of two, a few of them near one another, and times --lookups reuse checks with the
band lookup and with the naive scan (the same function told that the bands do not apply), checking
that both find the same matches.

Run:  .venv/bin/python bench/photo_reuse.py [--photos 400000] [--lookups 100]
Last line: {"photos": .., "band_lookup_ms": .., "naive_scan_ms": .., "ratio": .., "same_matches": true}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import storage.photos as photos_store
from storage.db import drop_database, ensure_database, with_database
from storage.migrate import migrate

ADMIN_URL = os.environ.get("CARMILEAGE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def signed(u: int) -> int:
    return u - (1 << 64) if u >= 1 << 63 else u


async def fill(conn: asyncpg.Connection, n: int, rng: random.Random) -> list[tuple[int, str, int]]:
    """n photos in n / 2 submissions; every 50th photo has a near twin (a few bits off) elsewhere.
    Returns (submission id, sha256, hash) of the photos to look up."""
    owner = f"bench-{uuid.uuid4().hex[:8]}"
    await conn.execute("insert into owners (id, district) values ($1, '강남구')", owner)
    vehicle = await conn.fetchval(
        """insert into vehicles (owner_id, plate, plate_key, vin, district, registration_region, use,
               vehicle_type, seats, fuel, first_registration_date)
           values ($1, '12가3456', $1, 'KMHBENCH000000001', '강남구', '서울', 'non_commercial', 'passenger', 5,
                   'gasoline', '2018-01-01') returning id""",
        owner,
    )
    participation = await conn.fetchval(
        "insert into participations (vehicle_id, program, rule_set, enrolled_on) values ($1, 'annual', 'seoul-2022', current_date) returning id",
        vehicle,
    )
    hashes = [rng.getrandbits(64) for _ in range(n)]
    for i in range(0, n, 50):  # a near twin: the same photo re-encoded, a few bits off
        j = (i + n // 2 + 1) % n
        twin = hashes[i]
        for _ in range(rng.randint(0, 6)):
            twin ^= 1 << rng.randrange(64)
        hashes[j] = twin
    shas = [f"{rng.getrandbits(256):064x}" for _ in range(n)]
    await conn.copy_records_to_table(
        "photos",
        records=[(s, signed(h), "image/jpeg", 1) for s, h in zip(shas, hashes, strict=True)],
        columns=["sha256", "phash_bits", "content_type", "size_bytes"],
    )
    await conn.copy_records_to_table(
        "photo_submissions",
        records=[(participation, "mid", f"s{k}", shas[2 * k], shas[2 * k + 1]) for k in range(n // 2)],
        columns=["participation_id", "stage", "request_id", "dashboard_sha256", "plate_sha256"],
    )
    ids = {r["request_id"]: r["id"] for r in await conn.fetch("select id, request_id from photo_submissions")}
    await conn.execute("analyze photos; analyze photo_submissions")
    picks = rng.sample(range(0, n - 1, 50), 100)
    return [(ids[f"s{i // 2}"], shas[i], hashes[i]) for i in picks]


async def timed(conn: asyncpg.Connection, probes: list[tuple[int, str, int]], naive: bool) -> tuple[float, list[Any]]:
    saved = photos_store.band_neighbours
    if naive:
        photos_store.band_neighbours = lambda bits, max_distance: None
    try:
        found = []
        started = time.perf_counter()
        for sub, sha, h in probes:
            m = await photos_store.reuse_matches(conn, sub, {"dashboard": (sha, f"{h:016x}")}, 8)
            found.append(sorted((x["other_submission_id"], x["distance"]) for x in m))
        return (time.perf_counter() - started) / len(probes) * 1000, found
    finally:
        photos_store.band_neighbours = saved


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", type=int, default=400_000)
    ap.add_argument("--lookups", type=int, default=100)
    args = ap.parse_args()
    started = time.monotonic()
    url = with_database(ADMIN_URL, f"cmbench_reuse_{uuid.uuid4().hex[:8]}")
    await ensure_database(url)
    try:
        conn = await asyncpg.connect(url)
        try:
            await migrate(conn)
            probes = (await fill(conn, args.photos, random.Random(11)))[: args.lookups]
            print(f"{args.photos} photos stored  [{time.monotonic() - started:.0f} s]", flush=True)
            await timed(conn, probes[:5], False)  # warm the caches for both
            await timed(conn, probes[:5], True)
            band_ms, band_found = await timed(conn, probes, False)
            naive_ms, naive_found = await timed(conn, probes, True)
            plan = "\n".join(
                r[0]
                for r in await conn.fetch(
                    "explain select sha256 from photos where phash_band0 = any($1::int[]) or phash_band1 = any($1::int[])",
                    list(range(137)),
                )
            )
        finally:
            await conn.close()
        print(plan.splitlines()[0], flush=True)
        print(f"band lookup {band_ms:.2f} ms, naive scan {naive_ms:.2f} ms  [{time.monotonic() - started:.0f} s]")
        print(
            json.dumps(
                {
                    "photos": args.photos,
                    "lookups": len(probes),
                    "band_lookup_ms": round(band_ms, 3),
                    "naive_scan_ms": round(naive_ms, 3),
                    "ratio": round(naive_ms / band_ms, 1),
                    "same_matches": band_found == naive_found,
                    "matches_found": sum(len(f) for f in band_found),
                }
            )
        )
    finally:
        await drop_database(url)


if __name__ == "__main__":
    asyncio.run(main())
