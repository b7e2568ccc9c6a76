"""Benchmark: photo upload to the machine's decision, at an offered load of 10 uploads a second.

Three runs against one scratch database (created, then dropped), each an open loop (uploads start
on schedule whether or not earlier ones finished):

1. the service's pipeline with the real OCR: HTTP upload -> blob store + job (202) -> OCR worker
   processes (pebble pool, one per core) -> decision committed;
2. the same pipeline with test readers that cost nothing (tests/photos/oracle.py): what the
   upload, queue and decision path cost without the OCR;
3. the naive baseline: a handler that runs the real OCR inline on the event loop and answers with
   the decision.

Latency is from the moment the client starts the upload to the decision (for the pipeline: the
submission's decided_at; for the naive handler: its answer). Run:
    nice -n 10 .venv/bin/python bench/photos.py [--rate 10] [--seconds 10] [--pipeline-only-seconds 8]
        [--naive-seconds 5]
The real-OCR run offers load for 10 s: long enough that a pipeline slower than the offered rate
shows as a growing queue (its p95 climbs and throughput stays below the rate), not only as a
burst the workers catch up on. The naive handler gets a shorter run (it falls behind at once and
would take minutes to drain); a longer one only makes it look worse.
Last line: {"p50_s": .., "p95_s": .., "throughput_per_s": .., "pipeline_only": {..}, "naive": {..}, ...}
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import struct
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ingest.app import create_app
from ingest.ocr_worker import OcrWorkers, analyse_dashboard, analyse_plate
from ingest.settings import Settings
from ingest.state import BLOBS
from storage.db import create_pool, drop_database, ensure_database, with_database
from storage.migrate import migrate
from storage.tokens import create_token
from tests.photos import oracle
from tests.photos.synth import dashboard_jpeg, plate_jpeg

ADMIN_URL = os.environ.get("CARMILEAGE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PLATE = "12가3456"


def variant(jpeg: bytes, n: int) -> bytes:
    """The same picture with other bytes that storing keeps (the JFIF header's pixel density): a
    new photo to the store. (A JPEG comment no longer does: stored photos lose their comments and
    personal metadata, docs/photos.md, so such variants were all one photo.)"""
    assert jpeg[6:11] == b"JFIF\x00", "the synthetic photos start with a JFIF header"
    return jpeg[:14] + struct.pack(">HH", 1 + n // 65_535, 1 + n % 65_535) + jpeg[18:]


class Photos:
    """A few rendered scenes, and as many distinct uploads of them as needed."""

    def __init__(self, scenes: int = 12) -> None:
        from datetime import datetime

        from prorate.calendar import SEOUL

        at = datetime.now(SEOUL).replace(microsecond=0)
        self.dash = [dashboard_jpeg(123_456 + i, at, seed=i) for i in range(scenes)]
        self.plate = [plate_jpeg(PLATE, at, seed=i) for i in range(scenes)]
        self.n = 0

    def next(self) -> tuple[bytes, bytes, int]:
        i = self.n % len(self.dash)
        self.n += 1
        return variant(self.dash[i], self.n), variant(self.plate[i], self.n), 123_456 + i


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summary(latencies: list[float], first: float, last: float, offered: int) -> dict[str, Any]:
    return {
        "uploads": offered,
        "decided": len(latencies),
        "p50_s": round(percentile(latencies, 0.5), 3),
        "p95_s": round(percentile(latencies, 0.95), 3),
        "max_s": round(max(latencies), 3) if latencies else None,
        "throughput_per_s": round(len(latencies) / (last - first), 2) if last > first else None,
    }


def _form(dash: bytes, plate: bytes, km: int) -> aiohttp.FormData:
    f = aiohttp.FormData()
    f.add_field("dashboard", dash, filename="d.jpg", content_type="image/jpeg")
    f.add_field("plate", plate, filename="p.jpg", content_type="image/jpeg")
    f.add_field("stage", "mid")
    f.add_field("claimed_km", str(km))
    return f


async def open_loop(rate: float, count: int, send: Callable[[int], Coroutine[Any, Any, None]]) -> None:
    """Start `count` uploads `1/rate` apart, on schedule."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    tasks: list[asyncio.Task[None]] = []
    for i in range(count):
        delay = t0 + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(i)))
    await asyncio.gather(*tasks)


async def pipeline_run(
    url: str, data_dir: Path, readers: tuple[Any, Any], rate: float, count: int, photos: Photos, cap_s: float
) -> dict[str, Any]:
    settings = Settings(
        database_url=url,
        data_dir=data_dir,
        mqtt_enabled=False,
        secret_key="bench",
        ocr_workers=0,
        log_level="WARNING",
    )
    pool = await create_pool(url, min_size=2, max_size=20)
    app = create_app(settings, pool)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    workers = OcrWorkers(settings, pool, app[BLOBS], readers=readers)
    await workers.start()
    async with pool.acquire() as conn:
        owner = f"bench-{uuid.uuid4().hex[:8]}"
        _, token = await create_token(conn, "citizen", owner)
        await conn.execute(
            "insert into owners (id, district) values ($1, '강남구') on conflict do nothing", owner
        )
        vehicle = await conn.fetchval(
            """insert into vehicles (owner_id, plate, plate_key, vin, district, registration_region, use,
                   vehicle_type, seats, fuel, first_registration_date)
               values ($1, $2, $3, $4, '강남구', '서울', 'non_commercial', 'passenger', 5, 'gasoline', '2018-01-01')
               returning id""",
            owner,
            PLATE,
            PLATE + owner,
            "KMH"
            + hashlib.sha256(owner.encode()).hexdigest()[:14].upper().translate(str.maketrans("IOQ", "ABC")),
        )
        participation = await conn.fetchval(
            "insert into participations (vehicle_id, program, rule_set, enrolled_on) values ($1, 'annual', 'seoul-2022', current_date) returning id",
            vehicle,
        )
    base = f"http://127.0.0.1:{port}/v1/participations/{participation}/photos"
    headers = {"Authorization": f"Bearer {token}"}
    sent: dict[int, float] = {}
    try:
        async with aiohttp.ClientSession() as session:

            async def send(i: int) -> None:
                dash, plate, km = photos.next()
                started = time.time()
                async with session.post(base, data=_form(dash, plate, km), headers=headers) as r:
                    assert r.status == 202, await r.text()
                    sent[(await r.json())["id"]] = started

            # warm up: the worker processes load their models on the first photos
            await send(-1)
            await wait_decided(pool, list(sent), 120)
            sent.clear()
            first = time.time()
            await open_loop(rate, count, send)
            decided = await wait_decided(pool, list(sent), cap_s)
        latencies = [decided[i] - sent[i] for i in decided]
        last = max(decided.values()) if decided else first
        return summary(latencies, first, last, count)
    finally:
        await workers.stop()
        await runner.cleanup()
        await pool.close()


async def wait_decided(pool: Any, ids: list[int], cap_s: float) -> dict[int, float]:
    deadline = time.time() + cap_s
    decided: dict[int, float] = {}
    while True:
        rows = await pool.fetch(
            "select id, extract(epoch from decided_at)::float8 as t from photo_submissions"
            " where id = any($1::bigint[]) and status <> 'processing'",
            ids,
        )
        decided = {r["id"]: r["t"] for r in rows}
        if len(decided) == len(ids) or time.time() > deadline:
            return decided
        await asyncio.sleep(0.05)


async def naive_run(rate: float, count: int, photos: Photos) -> dict[str, Any]:
    """The real OCR called inline in the handler, on the event loop: requests queue behind it."""

    async def handle(request: web.Request) -> web.Response:
        form = await request.post()
        dash = form["dashboard"].file.read()  # type: ignore[union-attr]
        plate = form["plate"].file.read()  # type: ignore[union-attr]
        km = int(str(form["claimed_km"]))
        d = analyse_dashboard(dash, km)
        p = analyse_plate(plate, PLATE)
        return web.json_response({"odometer": d["read"]["value_km"], "plate": p["read"]["text"]})

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/photos", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    latencies: list[float] = []
    done: list[float] = []
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:

            async def send(i: int) -> None:
                dash, plate, km = photos.next()
                started = time.time()
                async with session.post(f"http://127.0.0.1:{port}/photos", data=_form(dash, plate, km)) as r:
                    assert r.status == 200
                    await r.read()
                finished = time.time()
                latencies.append(finished - started)
                done.append(finished)

            analyse_dashboard(photos.dash[0], 1)  # warm up the models in this process
            first = time.time()
            await open_loop(rate, count, send)
        return summary(latencies, first, max(done), count)
    finally:
        await runner.cleanup()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rate", type=float, default=10.0, help="offered uploads per second")
    ap.add_argument("--seconds", type=float, default=10.0, help="how long the real-OCR pipeline is offered load")
    ap.add_argument("--naive-seconds", type=float, default=5.0, help="how long the naive handler is offered load")
    ap.add_argument("--pipeline-only-seconds", type=float, default=8.0)
    ap.add_argument("--cap", type=float, default=25.0, help="stop waiting for decisions after this many s")
    args = ap.parse_args()
    started = time.monotonic()
    name = f"cmbench_photos_{uuid.uuid4().hex[:8]}"
    url = with_database(ADMIN_URL, name)
    await ensure_database(url)
    try:
        import asyncpg

        conn = await asyncpg.connect(url)
        try:
            await migrate(conn)
        finally:
            await conn.close()
        photos = Photos()
        print(f"scratch database and photos ready  [{time.monotonic() - started:.0f} s]", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            real = await pipeline_run(
                url,
                Path(tmp) / "real",
                (analyse_dashboard, analyse_plate),
                args.rate,
                int(args.rate * args.seconds),
                photos,
                args.cap,
            )
            print(f"pipeline, real OCR      {real}  [{time.monotonic() - started:.0f} s]", flush=True)
            only = await pipeline_run(
                url,
                Path(tmp) / "oracle",
                (oracle.oracle_dashboard, oracle.oracle_plate),
                args.rate,
                int(args.rate * args.pipeline_only_seconds),
                photos,
                args.cap,
            )
            print(f"pipeline, no-cost OCR   {only}  [{time.monotonic() - started:.0f} s]", flush=True)
        naive = await naive_run(args.rate, int(args.rate * args.naive_seconds), photos)
        print(f"naive, OCR on the loop  {naive}  [{time.monotonic() - started:.0f} s]", flush=True)
        result = {
            "offered_per_s": args.rate,
            "cores": os.cpu_count(),
            "p50_s": real["p50_s"],
            "p95_s": real["p95_s"],
            "throughput_per_s": real["throughput_per_s"],
            "decided": real["decided"],
            "uploads": real["uploads"],
            "pipeline_only": only,
            "naive": naive,
            "p95_ratio_naive_vs_pipeline": round(naive["p95_s"] / real["p95_s"], 2)
            if real["p95_s"]
            else None,
        }
        print(json.dumps(result))
    finally:
        await drop_database(url)


if __name__ == "__main__":
    asyncio.run(main())
