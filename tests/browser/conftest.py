"""Real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright; never
`playwright install`) against a real `carmileage serve` process on a database of its own."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from storage.db import create_pool, drop_database
from tests.conftest import LiveService, cli_token, clone_database, ownership_check, vehicle_payload

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class Service:
    url: str
    database_url: str
    data_dir: Path
    live: LiveService


@pytest.fixture(scope="module")
def service(template_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    database_url = clone_database(template_database_url, "br" + uuid.uuid4().hex[:6])
    data_dir = tmp_path_factory.mktemp("browser") / "data"
    live = LiveService(database_url, data_dir, CARMILEAGE_OCR_WORKERS="2")
    live.start()
    try:
        yield Service(live.url, database_url, data_dir, live)
    finally:
        live.kill()
        asyncio.run(drop_database(database_url))


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    if not Path(CHROMIUM).exists():  # noqa: ASYNC240 - once per module, before any I/O matters
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: scripts/setup.sh --test installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is not installed (Debian package chromium)")
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        await b.close()


def token(service: Service, role: str, subject: str | None = None) -> tuple[str, str]:
    subject = subject or f"{role}-{uuid.uuid4().hex[:8]}"
    return cli_token(service.database_url, role, subject), subject


def api(service: Service, method: str, path: str, token_: str, body: dict[str, Any] | None = None) -> Any:
    req = urllib.request.Request(
        service.url + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token_}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def enrol(service: Service) -> dict[str, Any]:
    """A citizen with a car and an annual participation, enrolled over the API."""
    t, subject = token(service, "citizen")
    v = api(service, "POST", "/v1/vehicles", t, vehicle_payload())
    v = api(service, "POST", f"/v1/vehicles/{v['id']}/ownership-checks", token(service, "operator")[0], ownership_check(v))
    p = api(service, "POST", f"/v1/vehicles/{v['id']}/participations", t, {})
    return {"token": t, "subject": subject, "vehicle": v, "participation": p}


@contextlib.asynccontextmanager
async def db(service: Service) -> AsyncIterator[Any]:
    """A connection to the service's database, with the project's JSON codecs."""
    pool = await create_pool(service.database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            yield conn
    finally:
        await pool.close()


async def sign_in(page: Any, service: Service, token_: str) -> None:
    await page.goto(service.url + "/sign-in?lang=en")
    await page.fill("#token", token_)
    await page.click("#sign-in-form button[type=submit]")
    await page.wait_for_load_state("load")
