"""The web pages over plain HTTP: sign-in, CSRF, escaping, security headers, and the reviewer's
and citizen's forms (the browser tests drive the same pages in Chromium)."""

from __future__ import annotations

import uuid

import asyncpg
from aiohttp.test_utils import TestClient

from tests.conftest import TokenFactory
from tests.photos.pagekit import SCRIPT, _csrf, assert_page_is_locked_down, sign_in
from tests.review.conftest import make_photo_case


async def test_pages_need_a_session_and_sign_in_is_protected(
    client: TestClient, make_token: TokenFactory
) -> None:
    r = await client.get("/upload", allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] in ("/sign-in?next=%2Fupload", "/sign-in?next=/upload")
    page = await client.get("/sign-in")
    html = await page.text()
    assert_page_is_locked_down(page.headers, html)
    headers = await make_token("citizen")
    token = headers["Authorization"].split(" ", 1)[1]
    # no CSRF token: refused, no session
    r = await client.post("/sign-in", data={"token": token}, allow_redirects=False)
    assert r.status == 403
    assert "cm_session" not in r.cookies
    # a wrong token
    r = await client.post("/sign-in", data={"token": "nope", "csrf": _csrf(html)}, allow_redirects=False)
    assert r.status == 401
    # the right one: an HttpOnly, SameSite=Strict session cookie
    r = await client.post(
        "/sign-in",
        data={"token": token, "csrf": _csrf(html), "next": "//evil.example/"},
        allow_redirects=False,
    )
    assert r.status == 303 and r.headers["Location"] == "/upload"  # no open redirect
    cookie = r.cookies["cm_session"]
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    assert (await client.get("/upload")).status == 200


async def test_everything_typed_is_escaped(
    client: TestClient, pool: asyncpg.Pool, make_token: TokenFactory
) -> None:
    where = f"test-{uuid.uuid4().hex[:6]}"
    async with pool.acquire() as conn:
        case = await make_photo_case(conn, district=where, reasons=(SCRIPT,))
        await conn.execute(
            "update disputes set status = 'resolved', resolution = 'rejected', resolution_reason = 'other_car',"
            " resolution_note = $2, resolved_by = $3, resolved_at = now() where id = $1",
            case.dispute_id,
            SCRIPT,
            SCRIPT,
        )
    reviewer = await make_token("reviewer", subject=f"<img src=x onerror=alert(1)>{uuid.uuid4().hex[:4]}")
    await sign_in(client, reviewer)
    pages = [
        await client.get(f"/review/disputes/{case.dispute_id}"),
        await client.get("/review", params={"reason": SCRIPT, "district": SCRIPT, "min_age_h": SCRIPT}),
    ]
    for page in pages:
        html = await page.text()
        assert page.status == 200
        assert SCRIPT not in html and "<img src=x" not in html
        assert "&lt;script&gt;" in html or "&lt;img" in html
        assert_page_is_locked_down(page.headers, html)


async def test_reviewer_claims_and_resolves_through_the_forms(
    client: TestClient, pool: asyncpg.Pool, make_token: TokenFactory
) -> None:
    where = f"test-{uuid.uuid4().hex[:6]}"
    async with pool.acquire() as conn:
        case = await make_photo_case(conn, district=where, claimed_km=33_333, ocr_km=33_330)
    reviewer = await make_token("reviewer")
    await sign_in(client, reviewer)
    queue = await client.get("/review", params={"district": where})
    html = await queue.text()
    assert f"/review/disputes/{case.dispute_id}" in html
    r = await client.post("/review/claim", data={"district": where}, allow_redirects=False)
    assert r.status == 403  # no CSRF token
    r = await client.post(
        "/review/claim", data={"district": where, "csrf": _csrf(html)}, allow_redirects=False
    )
    assert r.status == 303 and r.headers["Location"] == f"/review/disputes/{case.dispute_id}"
    page = await client.get(r.headers["Location"])
    html = await page.text()
    assert 'id="correct-form"' in html and "33,330 km" in html and 'class="ocr-box"' in html
    assert 'class="timeline"' in html
    csrf = _csrf(html)
    renew = await client.post(f"/review/disputes/{case.dispute_id}/renew", headers={"X-CSRF-Token": csrf})
    assert renew.status == 200 and "lease_until" in await renew.json()
    r = await client.post(
        f"/review/disputes/{case.dispute_id}/resolve",
        data={"csrf": csrf, "action": "correct", "value_km": "33333", "note": "last digit"},
        allow_redirects=False,
    )
    assert r.status == 303 and r.headers["Location"] == f"/review?done={case.dispute_id}"
    d = await pool.fetchrow("select * from disputes where id = $1", case.dispute_id)
    assert d is not None
    assert (d["resolution"], d["resolved_value_m"], d["resolution_note"]) == (
        "corrected",
        33_333_000,
        "last digit",
    )
    # a citizen has no business on the reviewer's pages
    citizen = await make_token("citizen")
    await sign_in(client, citizen)
    assert (await client.get("/review")).status == 403
    assert (await client.get(f"/review/photos/{case.dashboard_sha256}")).status == 403
