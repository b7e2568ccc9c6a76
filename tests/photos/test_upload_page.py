"""The citizen's upload page over plain HTTP (CSRF, origin, session binding)."""

from __future__ import annotations

import re

import asyncpg
from aiohttp.test_utils import TestClient

from tests.conftest import TokenFactory
from tests.photos.conftest import Citizen, enrol, form, now_seoul
from tests.photos.pagekit import _csrf, assert_page_is_locked_down, sign_in
from tests.photos.synth import dashboard_jpeg, plate_jpeg


async def test_citizen_upload_form_needs_its_csrf_token(
    photo_client: TestClient, make_token: TokenFactory, pool: asyncpg.Pool
) -> None:
    c: Citizen = await enrol(photo_client, make_token)
    await sign_in(photo_client, c.headers)
    page = await photo_client.get("/upload")
    html = await page.text()
    assert_page_is_locked_down(page.headers, html)
    assert c.plate in html and 'capture="environment"' in html
    at = now_seoul()
    dash, plate = dashboard_jpeg(2024, at, seed=c.vehicle_id * 100 + 9), plate_jpeg(c.plate, at, seed=c.vehicle_id * 100 + 9)

    def body(csrf: str | None) -> object:
        f = form(dash, plate, "start", 2024)
        f.add_field("participation_id", str(c.participation_id))
        if csrf is not None:
            f.add_field("csrf", csrf)
        return f

    r = await photo_client.post("/upload", data=body(None), allow_redirects=False)
    assert r.status == 403
    r = await photo_client.post("/upload", data=body("0" * 64), allow_redirects=False)
    assert r.status == 403
    r = await photo_client.post(
        "/upload", data=body(_csrf(html)), headers={"Origin": "https://evil.example"}, allow_redirects=False
    )
    assert r.status == 403
    assert await pool.fetchval("select count(*) from photo_submissions where participation_id = $1", c.participation_id) == 0
    r = await photo_client.post("/upload", data=body(_csrf(html)), allow_redirects=False)
    assert r.status == 303, await r.text()
    assert re.fullmatch(r"/submissions/\d+", r.headers["Location"])
    outcome = await photo_client.get(r.headers["Location"])
    assert outcome.status == 200
    # the token of another session does not verify
    other = await enrol(photo_client, make_token)
    await sign_in(photo_client, other.headers)
    r = await photo_client.post("/upload", data=body(_csrf(html)), allow_redirects=False)
    assert r.status == 403
