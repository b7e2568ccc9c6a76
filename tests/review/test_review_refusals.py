"""A refused review action, each kind: the API answers its status, code and reasons; the dispute
page shows the same refusal with the same status (the actions raise one kind of error, the API
and the pages each say it in their own way)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
from aiohttp.test_utils import TestClient

from storage.photo_readings import store_photo_reading
from tests.conftest import TokenFactory
from tests.photos.pagekit import _csrf, sign_in
from tests.review.conftest import PhotoCase, make_photo_case


async def _claimed_case(client: TestClient, pool: asyncpg.Pool, headers: dict[str, str], **kw: object) -> PhotoCase:
    async with pool.acquire() as conn:
        case = await make_photo_case(conn, district=f"test-{uuid.uuid4().hex[:8]}", **kw)  # type: ignore[arg-type]
    r = await client.post(f"/v1/disputes/{case.dispute_id}/claim", json={}, headers=headers)
    assert r.status == 200, await r.text()
    return case


async def test_each_refusal_answers_its_status_code_and_reasons(
    client: TestClient, pool: asyncpg.Pool, make_token: TokenFactory
) -> None:
    kim, lee = await make_token("reviewer"), await make_token("reviewer")
    case = await _claimed_case(client, pool, kim)
    did = case.dispute_id

    async def resolve(headers: dict[str, str], dispute_id: int, **body: object) -> tuple[int, dict]:
        r = await client.post(f"/v1/disputes/{dispute_id}/resolve", json=body, headers=headers)
        return r.status, (await r.json())["error"]

    status, err = await resolve(kim, 10**17, action="accept")
    assert (status, err["code"]) == (404, "dispute_not_found")
    status, err = await resolve(lee, did, action="accept")
    assert (status, err["code"]) == (409, "dispute_held_by_another")
    status, err = await resolve(kim, did, action="reject")
    assert (status, err["code"]) == (422, "rejection_reason_required")
    # The start already has its verified reading: the reviewer cannot verify a second one.
    async with pool.acquire() as conn, conn.transaction():
        start = await store_photo_reading(
            conn,
            vehicle_id=case.vehicle_id,
            odometer_m=40_000_000,
            recorded_at=datetime.now(UTC) - timedelta(days=1),
            source="reviewer",
            captured_at=None,
            uploaded_at=None,
            approved_at=datetime.now(UTC),
            submission_id=None,
            stage="start",
            participation_id=case.participation_id,
        )
    assert start.reading_id is not None
    status, err = await resolve(kim, did, action="correct", value_km=50_000)
    assert (status, err["code"]) == (409, "stage_already_verified")
    assert [r["code"] for r in err["reasons"]] == ["stage_already_verified"]
    assert err["reasons"][0]["message"] and err["reasons"][0]["message_ko"]
    # Nothing was written by the refusals: the dispute is still open and held.
    row = await pool.fetchrow("select status, claimed_by from disputes where id = $1", did)
    assert row is not None and (row["status"], row["claimed_by"]) == ("open", kim["X-Subject"])


async def test_the_dispute_page_shows_a_refusal_with_its_status(
    client: TestClient, pool: asyncpg.Pool, make_token: TokenFactory
) -> None:
    kim = await make_token("reviewer")
    did = (await _claimed_case(client, pool, kim, ocr_km=None)).dispute_id
    await sign_in(client, kim, f"/review/disputes/{did}")
    page = await client.get(f"/review/disputes/{did}?lang=en")
    assert page.status == 200
    r = await client.post(
        f"/review/disputes/{did}/resolve?lang=en", data={"csrf": _csrf(await page.text()), "action": "accept"}
    )
    assert r.status == 422
    assert "The OCR read no value" in await r.text()
    r = await client.post(
        f"/review/disputes/{10**17}/claim?lang=en", data={"csrf": _csrf(await page.text())}
    )
    assert r.status == 404
