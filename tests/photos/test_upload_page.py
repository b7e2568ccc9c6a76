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


async def test_citizen_sees_the_current_result_of_each_participation(
    photo_client: TestClient, make_token: TokenFactory, pool: asyncpg.Pool
) -> None:
    c: Citizen = await enrol(photo_client, make_token)
    other: Citizen = await enrol(photo_client, make_token)

    async def result(p: Citizen, version: int, actual: str, points: int) -> int:
        rid: int = await pool.fetchval(
            """insert into period_results (participation_id, version, round, program, rule_set,
                   start_reading_id, end_reading_id, start_date, end_date, days, baseline_daily_km,
                   baseline_km, actual_km, reduction_km, reduction_rate_pct, points, baseline_derivation)
               values ($1, $2, '2023-05', 'annual', 'seoul-2022', 1, 2, '2022-03-01', '2023-03-02', 366,
                       30.0, 10980.0, $3::numeric, 10980.0 - $3::numeric, 50.0, $4, '{}') returning id""",
            p.participation_id, version, actual, points,
        )
        return rid

    first = await result(c, 1, "5490.0", 20000)
    second = await result(c, 2, "4000.0", 30000)
    await pool.execute("update period_results set superseded_by = $1 where id = $2", second, first)
    await result(other, 1, "1234.5", 10000)

    await sign_in(photo_client, c.headers)
    html = await (await photo_client.get("/upload?lang=en")).text()
    section = html[html.index('id="results"'):]
    section = section[: section.index("</section>")]
    # the current version only, and only this citizen's
    assert "Driven 4000.0 km" in section and "Points <strong>30000</strong>" in section
    assert "5490.0" not in section and "1234.5" not in html
    assert c.plate in section and "2022-03-01 – 2023-03-02 (366 days)" in section
