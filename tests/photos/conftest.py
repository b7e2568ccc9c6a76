"""Fixtures for photo registration: an enrolled citizen, an app whose blob store the OCR workers
share, the workers themselves (with the test readers of tests/photos/oracle.py), and helpers to
upload and to wait for a decision."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from ingest.app import create_app
from ingest.ocr_worker import OcrWorkers
from ingest.settings import Settings
from ingest.state import BLOBS
from prorate.calendar import SEOUL
from tests.conftest import TokenFactory, make_settings, ownership_check, vehicle_payload
from tests.photos import oracle


@pytest.fixture(scope="session")
def photo_settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """One data dir (blob store) for the session, shared by the test apps and the workers."""
    data: Path = tmp_path_factory.mktemp("photos") / "data"
    return make_settings(database_url, data, ocr_workers=2, ocr_lease_s=5, ocr_task_timeout_s=20)


@pytest.fixture
async def photo_client(photo_settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[TestClient]:
    app = create_app(photo_settings, pool)
    async with TestClient(TestServer(app)) as c:
        yield c


@pytest.fixture(scope="session")
async def workers(photo_settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[OcrWorkers]:
    """OCR workers on the session database, reading with the test readers."""
    from storage.blobs import LocalBlobStore

    w = OcrWorkers(
        photo_settings,
        pool,
        LocalBlobStore(photo_settings.data_dir / "blobs"),
        readers=(oracle.oracle_dashboard, oracle.oracle_plate),
    )
    await w.start()
    yield w
    await w.stop()


@dataclass
class Citizen:
    headers: dict[str, str]
    subject: str
    vehicle_id: int
    plate: str
    participation_id: int


async def enrol(client: TestClient, make_token: TokenFactory, **vehicle: Any) -> Citizen:
    headers = await make_token("citizen")
    r = await client.post("/v1/vehicles", json=vehicle_payload(**vehicle), headers=headers)
    assert r.status == 201, await r.text()
    v = await r.json()
    r = await client.post(  # an operator checks the registration certificate before the car takes part
        f"/v1/vehicles/{v['id']}/ownership-checks", json=ownership_check(v), headers=await make_token("operator")
    )
    assert r.status == 200, await r.text()
    r = await client.post(f"/v1/vehicles/{v['id']}/participations", json={}, headers=headers)
    assert r.status == 201, await r.text()
    p = await r.json()
    return Citizen(headers, headers["X-Subject"], v["id"], v["plate"], p["id"])


@pytest.fixture
async def citizen(photo_client: TestClient, make_token: TokenFactory) -> Citizen:
    return await enrol(photo_client, make_token)


def form(
    dashboard: bytes | None,
    plate: bytes | None,
    stage: str | None = "start",
    claimed_km: str | int | None = 123456,
    *,
    dashboard_type: str = "image/jpeg",
    plate_type: str = "image/jpeg",
) -> aiohttp.FormData:
    f = aiohttp.FormData()
    if dashboard is not None:
        f.add_field("dashboard", dashboard, filename="dashboard.jpg", content_type=dashboard_type)
    if plate is not None:
        f.add_field("plate", plate, filename="plate.jpg", content_type=plate_type)
    if stage is not None:
        f.add_field("stage", stage)
    if claimed_km is not None:
        f.add_field("claimed_km", str(claimed_km))
    return f


async def upload(client: TestClient, c: Citizen, data: aiohttp.FormData, participation_id: int | None = None) -> aiohttp.ClientResponse:
    return await client.post(
        f"/v1/participations/{participation_id or c.participation_id}/photos", data=data, headers=c.headers
    )


async def wait_decided(client: TestClient, headers: dict[str, str], submission_id: int, within: float = 60) -> dict[str, Any]:
    """Poll the status until the machine (or a reviewer) decided."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        r = await client.get(f"/v1/submissions/{submission_id}", headers=headers)
        assert r.status == 200, await r.text()
        body: dict[str, Any] = await r.json()
        if body["status"] != "processing":
            return body
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"submission {submission_id} still processing after {within} s")
        await asyncio.sleep(0.1)


def now_seoul() -> datetime:
    return datetime.now(SEOUL).replace(microsecond=0)


__all__ = ["BLOBS", "Citizen", "enrol", "form", "now_seoul", "upload", "wait_decided"]
