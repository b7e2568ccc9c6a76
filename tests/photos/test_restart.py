"""Kill the service (SIGKILL) in the middle of uploads and in the middle of OCR, restart it:
every upload that was answered 202 is still there, with its photos, and gets decided."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from storage.blobs import LocalBlobStore, sha256_of
from storage.db import create_pool
from tests.conftest import LiveService, cli_token, ownership_check, vehicle_payload
from tests.photos.conftest import now_seoul
from tests.photos.synth import dashboard_jpeg, plate_jpeg

pytestmark = pytest.mark.slow


async def _enrol(session: aiohttp.ClientSession, svc: LiveService, token: str) -> tuple[int, str]:
    h = {"Authorization": f"Bearer {token}"}
    async with session.post(f"{svc.url}/v1/vehicles", json=vehicle_payload(), headers=h) as r:
        assert r.status == 201, await r.text()
        v = await r.json()
    operator = {"Authorization": f"Bearer {cli_token(svc.database_url, 'operator', 'restart-operator')}"}
    async with session.post(
        f"{svc.url}/v1/vehicles/{v['id']}/ownership-checks", json=ownership_check(v), headers=operator
    ) as r:
        assert r.status == 200, await r.text()
    async with session.post(f"{svc.url}/v1/vehicles/{v['id']}/participations", json={}, headers=h) as r:
        assert r.status == 201, await r.text()
        p = await r.json()
    return p["id"], v["plate"]


def _form(dash: bytes, plate: bytes, km: int) -> aiohttp.FormData:
    f = aiohttp.FormData()
    f.add_field("dashboard", dash, filename="d.jpg", content_type="image/jpeg")
    f.add_field("plate", plate, filename="p.jpg", content_type="image/jpeg")
    f.add_field("stage", "mid")
    f.add_field("claimed_km", str(km))
    return f


async def _wait_all_decided(database_url: str, ids: list[int], within: float) -> list[Any]:
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        deadline = time.monotonic() + within
        while True:
            rows = await pool.fetch(
                """select s.id, s.status, j.status as job_status, j.attempts
                   from photo_submissions s join ocr_jobs j on j.submission_id = s.id
                   where s.id = any($1::bigint[]) order by s.id""",
                ids,
            )
            if len(rows) == len(ids) and all(r["status"] != "processing" for r in rows):
                return rows
            if time.monotonic() > deadline:
                raise AssertionError(f"not all decided: {[dict(r) for r in rows]}")
            await asyncio.sleep(0.5)
    finally:
        await pool.close()


async def _integrity(database_url: str, data_dir: Path) -> None:
    """Every submission has its job and both photos, readable under their hashes."""
    pool = await create_pool(database_url, min_size=1, max_size=2)
    store = LocalBlobStore(data_dir / "blobs")
    try:
        orphans = await pool.fetchval(
            "select count(*) from photo_submissions s where not exists (select 1 from ocr_jobs j where j.submission_id = s.id)"
        )
        assert orphans == 0
        for r in await pool.fetch("select dashboard_sha256, plate_sha256 from photo_submissions"):
            for sha in (r["dashboard_sha256"], r["plate_sha256"]):
                assert sha256_of(await store.get(sha)) == sha
    finally:
        await pool.close()


async def test_kill_mid_ocr_then_restart_decides_everything(
    fresh_database_url: str, live_service_factory: Callable[..., LiveService]
) -> None:
    svc = live_service_factory(fresh_database_url, CARMILEAGE_OCR_WORKERS="1", CARMILEAGE_OCR_LEASE_S="3")
    token = cli_token(fresh_database_url, "citizen", "restart-ocr")
    ids: list[int] = []
    async with aiohttp.ClientSession() as session:
        pid, plate_text = await _enrol(session, svc, token)
        at = now_seoul()
        for i in range(6):
            data = _form(dashboard_jpeg(40_000 + i, at, seed=500 + i), plate_jpeg(plate_text, at, seed=500 + i), 40_000 + i)
            async with session.post(
                f"{svc.url}/v1/participations/{pid}/photos", data=data, headers={"Authorization": f"Bearer {token}"}
            ) as r:
                assert r.status == 202, await r.text()
                ids.append((await r.json())["id"])
    # wait until a worker holds a job, then kill the whole service without warning
    pool = await create_pool(fresh_database_url, min_size=1, max_size=1)
    try:
        for _ in range(200):
            if await pool.fetchval("select count(*) from ocr_jobs where status = 'running'"):
                break
            await asyncio.sleep(0.05)
        running = await pool.fetchval("select count(*) from ocr_jobs where status = 'running'")
        svc.kill()
        pending = await pool.fetchval("select count(*) from photo_submissions where status = 'processing'")
    finally:
        await pool.close()
    assert running >= 1 and pending >= 1, "the kill came too late to interrupt OCR"
    await _integrity(fresh_database_url, Path(svc.env["CARMILEAGE_DATA_DIR"]))
    svc.start()
    # HTTP answers before the background components are up: wait for the workers to report
    async with aiohttp.ClientSession() as session:
        for _ in range(100):
            async with session.get(f"{svc.url}/readyz") as r:
                ready = await r.json()
            if "ocr_workers" in ready["checks"]:
                break
            await asyncio.sleep(0.1)
    assert r.status == 200 and ready["checks"]["ocr_workers"].startswith("ok"), ready
    rows = await _wait_all_decided(fresh_database_url, ids, within=120)
    assert {r["status"] for r in rows} <= {"accepted", "in_review", "retake"}
    assert all(r["job_status"] in ("done", "failed") for r in rows)
    assert max(r["attempts"] for r in rows) >= 2  # the interrupted job ran again
    await _integrity(fresh_database_url, Path(svc.env["CARMILEAGE_DATA_DIR"]))


async def test_kill_mid_upload_loses_nothing_that_was_accepted(
    fresh_database_url: str, live_service_factory: Callable[..., LiveService]
) -> None:
    svc = live_service_factory(fresh_database_url, CARMILEAGE_OCR_WORKERS="1", CARMILEAGE_OCR_LEASE_S="3")
    token = cli_token(fresh_database_url, "citizen", "restart-upload")
    at = now_seoul()
    answered: list[int] = []
    failed = 0
    killed = asyncio.Event()
    async with aiohttp.ClientSession() as session:
        pid, plate_text = await _enrol(session, svc, token)
        # large photos, so that uploads are still streaming when the service dies
        photos = [
            (dashboard_jpeg(50_000 + i, at, seed=700 + i, size=(3000, 2000)), plate_jpeg(plate_text, at, seed=700 + i, size=(3000, 2000)))
            for i in range(16)
        ]

        async def one(i: int) -> None:
            nonlocal failed
            dash, plate = photos[i]
            try:
                async with session.post(
                    f"{svc.url}/v1/participations/{pid}/photos",
                    data=_form(dash, plate, 50_000 + i),
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=aiohttp.ClientTimeout(total=30),
                ) as r:
                    if r.status == 202:
                        answered.append((await r.json())["id"])
                        if len(answered) >= 4 and not killed.is_set():
                            killed.set()
                            svc.kill()
                    else:
                        failed += 1
            except (TimeoutError, aiohttp.ClientError):
                failed += 1

        await asyncio.gather(*(one(i) for i in range(16)))
    assert killed.is_set() and failed >= 1, "the kill did not interrupt any upload"
    await _integrity(fresh_database_url, Path(svc.env["CARMILEAGE_DATA_DIR"]))
    svc.start()
    pool = await create_pool(fresh_database_url, min_size=1, max_size=1)
    try:
        stored = [r["id"] for r in await pool.fetch("select id from photo_submissions order by id")]
    finally:
        await pool.close()
    assert set(answered) <= set(stored)
    await _wait_all_decided(fresh_database_url, stored, within=180)


async def test_sigterm_mid_ocr_hands_jobs_back_at_once(
    fresh_database_url: str, live_service_factory: Callable[..., LiveService]
) -> None:
    # a long lease: only the graceful hand-back can make the jobs available again quickly
    svc = live_service_factory(fresh_database_url, CARMILEAGE_OCR_WORKERS="1", CARMILEAGE_OCR_LEASE_S="600")
    token = cli_token(fresh_database_url, "citizen", "restart-term")
    ids: list[int] = []
    async with aiohttp.ClientSession() as session:
        pid, plate_text = await _enrol(session, svc, token)
        at = now_seoul()
        for i in range(6):
            data = _form(dashboard_jpeg(60_000 + i, at, seed=900 + i), plate_jpeg(plate_text, at, seed=900 + i), 60_000 + i)
            async with session.post(
                f"{svc.url}/v1/participations/{pid}/photos", data=data, headers={"Authorization": f"Bearer {token}"}
            ) as r:
                assert r.status == 202, await r.text()
                ids.append((await r.json())["id"])
    assert svc.terminate() == 0
    pool = await create_pool(fresh_database_url, min_size=1, max_size=1)
    try:
        assert await pool.fetchval("select count(*) from ocr_jobs where status = 'running'") == 0
        assert await pool.fetchval("select max(attempts) from ocr_jobs") <= 1
    finally:
        await pool.close()
    svc.start()
    await _wait_all_decided(fresh_database_url, ids, within=120)
