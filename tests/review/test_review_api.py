"""The reviewer queue over the API: claims and leases, resolutions, audit, labelled data.

Each test gives its disputes a district of its own and filters on it, so tests sharing the
session database never see each other's disputes.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
from aiohttp.test_utils import TestClient

from tests.conftest import TokenFactory
from tests.review.conftest import make_photo_case, resolve_count


def district() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


async def claim(client: TestClient, headers: dict[str, str], where: str) -> tuple[int, dict]:
    r = await client.post("/v1/disputes/claim", json={"district": where}, headers=headers)
    return r.status, (await r.json() if r.status == 200 else {})


async def test_two_reviewers_never_get_the_same_dispute_and_leases_expire(
    client: TestClient, pool: asyncpg.Pool, make_token: TokenFactory
) -> None:
    where = district()
    async with pool.acquire() as conn:
        old = await make_photo_case(conn, district=where, created_at=datetime.now(UTC) - timedelta(hours=2))
        new = await make_photo_case(conn, district=where)
    alice, bob, c_headers = [await make_token("reviewer") for _ in range(3)]
    s, a = await claim(client, alice, where)
    assert s == 200 and a["id"] == old.dispute_id  # oldest first
    assert a["claimed_by"] == alice["X-Subject"]
    s, b = await claim(client, bob, where)
    assert s == 200 and b["id"] == new.dispute_id
    assert (await claim(client, c_headers, where))[0] == 204  # nothing left
    # The lease runs 10 minutes by default.
    lease = datetime.fromisoformat(a["lease_until"]) - datetime.now(UTC)
    assert timedelta(minutes=9) < lease <= timedelta(minutes=10, seconds=5)
    # Once Alice's lease ran out, Carol may take her dispute.
    await pool.execute(
        "update disputes set lease_until = now() - interval '1 second' where id = $1", old.dispute_id
    )
    s, c = await claim(client, c_headers, where)
    assert s == 200 and c["id"] == old.dispute_id


async def test_a_reviewer_gets_back_the_dispute_they_hold(
    client: TestClient, pool: asyncpg.Pool, make_token: TokenFactory
) -> None:
    where = district()
    async with pool.acquire() as conn:
        first = await make_photo_case(conn, district=where)
        await make_photo_case(conn, district=where)
    h = await make_token("reviewer")
    assert (await claim(client, h, where))[1]["id"] == first.dispute_id
    assert (await claim(client, h, where))[1]["id"] == first.dispute_id


async def test_renew_and_release(client: TestClient, pool: asyncpg.Pool, make_token: TokenFactory) -> None:
    where = district()
    async with pool.acquire() as conn:
        case = await make_photo_case(conn, district=where)
    h, other = await make_token("reviewer"), await make_token("reviewer")
    await claim(client, h, where)
    await pool.execute(
        "update disputes set lease_until = now() + interval '1 minute' where id = $1", case.dispute_id
    )
    r = await client.post(f"/v1/disputes/{case.dispute_id}/renew", json={}, headers=h)
    assert r.status == 200
    assert datetime.fromisoformat((await r.json())["lease_until"]) > datetime.now(UTC) + timedelta(minutes=9)
    r = await client.post(f"/v1/disputes/{case.dispute_id}/renew", json={}, headers=other)
    assert r.status == 409 and (await r.json())["error"]["code"] == "dispute_held_by_another"
    r = await client.post(f"/v1/disputes/{case.dispute_id}/release", json={}, headers=h)
    assert r.status == 200 and (await r.json())["claimed_by"] is None
    assert (await claim(client, other, where))[1]["id"] == case.dispute_id


async def test_accepting_the_ocr_value_verifies_the_reading_and_keeps_the_label(
    client: TestClient, pool: asyncpg.Pool, make_token: TokenFactory
) -> None:
    where = district()
    async with pool.acquire() as conn:
        case = await make_photo_case(conn, district=where, claimed_km=61_234, ocr_km=61_234)
    h = await make_token("reviewer")
    await claim(client, h, where)
    r = await client.post(f"/v1/disputes/{case.dispute_id}/resolve", json={"action": "accept"}, headers=h)
    assert r.status == 200, await r.text()
    d = await r.json()
    assert d["status"] == "resolved" and d["resolution"] == "accepted" and d["resolved_value_m"] == 61_234_000
    assert d["resolved_by"] == h["X-Subject"]
    sub = await pool.fetchrow("select * from photo_submissions where id = $1", case.submission_id)
    assert sub is not None
    assert sub["status"] == "accepted"
    reading = await pool.fetchrow("select * from readings where id = $1", sub["reading_id"])
    assert reading is not None
    assert reading["odometer_m"] == 61_234_000 and reading["source"] == "reviewer"
    assert reading["approved_at"] is not None and reading["submission_id"] == case.submission_id
    assert (
        await pool.fetchval(
            "select start_reading_id from participations where id = $1", case.participation_id
        )
        == reading["id"]
    )
    labels = await pool.fetch("select * from ocr_labels where dispute_id = $1 order by kind", case.dispute_id)
    assert [(x["kind"], x["photo_sha256"], x["true_value"]) for x in labels] == [
        ("odometer", case.dashboard_sha256, "61234"),
        ("plate", case.plate_sha256, case.plate),
    ]
    audit = await pool.fetchrow(
        "select * from audit_log where entity = 'dispute' and entity_id = $1 and action = 'dispute.resolve'",
        str(case.dispute_id),
    )
    assert audit is not None
    assert audit["actor_role"] == "reviewer" and audit["actor_id"] == h["X-Subject"]
    assert audit["before"]["status"] == "open" and audit["after"]["resolution"] == "accepted"
    assert audit["after"]["reading_id"] == reading["id"]


async def test_a_correction_is_kept_as_labelled_data(
    client: TestClient, pool: asyncpg.Pool, make_token: TokenFactory
) -> None:
    where = district()
    async with pool.acquire() as conn:
        case = await make_photo_case(conn, district=where, claimed_km=70_001, ocr_km=10_001)
    h = await make_token("reviewer")
    await claim(client, h, where)
    r = await client.post(
        f"/v1/disputes/{case.dispute_id}/resolve",
        json={"action": "correct", "value_km": 70_001, "note": "first digit read as 1"},
        headers=h,
    )
    assert r.status == 200, await r.text()
    label = await pool.fetchrow(
        "select * from ocr_labels where dispute_id = $1 and kind = 'odometer'", case.dispute_id
    )
    assert label is not None
    assert (label["photo_sha256"], label["true_value"], label["ocr_value"], label["source"]) == (
        case.dashboard_sha256,
        "70001",
        "10001",
        "corrected",
    )
    value = await pool.fetchval(
        "select r.odometer_m from readings r join photo_submissions s on s.reading_id = r.id where s.id = $1",
        case.submission_id,
    )
    assert value == 70_001_000


async def test_rejections_need_a_reason_and_tell_the_citizen(
    client: TestClient, pool: asyncpg.Pool, make_token: TokenFactory
) -> None:
    where = district()
    async with pool.acquire() as conn:
        other_car = await make_photo_case(conn, district=where)
        trip = await make_photo_case(conn, district=where)
    h = await make_token("reviewer")
    await claim(client, h, where)
    url = f"/v1/disputes/{other_car.dispute_id}/resolve"
    r = await client.post(url, json={"action": "reject"}, headers=h)
    assert r.status == 422
    r = await client.post(url, json={"action": "reject", "reason": "because"}, headers=h)
    assert r.status == 422
    r = await client.post(url, json={"action": "correct"}, headers=h)
    assert r.status == 422 and (await r.json())["error"]["code"] == "value_required"
    r = await client.post(url, json={"action": "reject", "reason": "other_car"}, headers=h)
    assert r.status == 200
    # the citizen sees it, with the reason in both languages
    citizen = await make_token("citizen", other_car.owner_id)
    s = await (await client.get(f"/v1/submissions/{other_car.submission_id}", headers=citizen)).json()
    assert s["status"] == "rejected"
    assert s["rejection_reason"]["code"] == "other_car" and s["rejection_reason"]["message_ko"]
    # a photo of the trip meter asks for a retake
    await claim(client, h, where)
    r = await client.post(
        f"/v1/disputes/{trip.dispute_id}/resolve",
        json={"action": "reject", "reason": "trip_instead_of_odo"},
        headers=h,
    )
    assert r.status == 200
    status = await pool.fetchval("select status from photo_submissions where id = $1", trip.submission_id)
    assert status == "retake"


async def test_only_the_holder_resolves_and_only_once(
    client: TestClient, pool: asyncpg.Pool, make_token: TokenFactory
) -> None:
    where = district()
    async with pool.acquire() as conn:
        case = await make_photo_case(conn, district=where)
    h, other = await make_token("reviewer"), await make_token("reviewer")
    url = f"/v1/disputes/{case.dispute_id}/resolve"
    assert (await client.post(url, json={"action": "accept"}, headers=h)).status == 409  # not claimed
    await claim(client, h, where)
    r = await client.post(url, json={"action": "accept"}, headers=other)
    assert r.status == 409 and (await r.json())["error"]["code"] == "dispute_held_by_another"
    assert (await client.post(url, json={"action": "accept"}, headers=h)).status == 200
    r = await client.post(url, json={"action": "reject", "reason": "unreadable"}, headers=h)
    assert r.status == 409 and (await r.json())["error"]["code"] == "dispute_resolved"
    assert await resolve_count(pool, case.dispute_id) == 1
    # the audit log keeps what happened and cannot be rewritten
    try:
        await pool.execute("update audit_log set actor_id = 'x' where entity_id = $1", str(case.dispute_id))
        raise AssertionError("audit_log accepted an update")
    except (asyncpg.RaiseError, asyncpg.InsufficientPrivilegeError):  # the trigger, or the service role's grants
        pass


async def test_accept_without_an_ocr_value_asks_for_a_correction(
    client: TestClient, pool: asyncpg.Pool, make_token: TokenFactory
) -> None:
    where = district()
    async with pool.acquire() as conn:
        case = await make_photo_case(conn, district=where, ocr_km=None)
    h = await make_token("reviewer")
    await claim(client, h, where)
    r = await client.post(f"/v1/disputes/{case.dispute_id}/resolve", json={"action": "accept"}, headers=h)
    assert r.status == 422 and (await r.json())["error"]["code"] == "nothing_to_accept"
    assert (await pool.fetchval("select status from disputes where id = $1", case.dispute_id)) == "open"


async def test_the_queue_filters_by_reason_district_and_age(
    client: TestClient, pool: asyncpg.Pool, make_token: TokenFactory
) -> None:
    where = district()
    async with pool.acquire() as conn:
        old = await make_photo_case(
            conn, district=where, reasons=("reused_photo",), created_at=datetime.now(UTC) - timedelta(days=3)
        )
        fresh = await make_photo_case(conn, district=where, reasons=("plate_mismatch", "captured_in_future"))
    h = await make_token("reviewer")

    async def ids(**q: str) -> list[int]:
        r = await client.get("/v1/disputes", params={"district": where, **q}, headers=h)
        assert r.status == 200, await r.text()
        return [d["id"] for d in (await r.json())["disputes"]]

    assert await ids() == [old.dispute_id, fresh.dispute_id]
    assert await ids(reason="reused_photo") == [old.dispute_id]
    assert await ids(reason="captured_in_future") == [fresh.dispute_id]
    assert await ids(min_age_s=str(86400)) == [old.dispute_id]
    assert await ids(max_age_s=str(3600)) == [fresh.dispute_id]
    r = await client.get("/v1/disputes", params={"min_age_s": "soon"}, headers=h)
    assert r.status == 422
    body = await (await client.get("/v1/disputes", params={"district": where}, headers=h)).json()
    assert body["open_total"] == 2
    assert body["disputes"][0]["reasons"][0]["message_ko"]
    # citizens have no business in the queue
    assert (await client.get("/v1/disputes", headers=await make_token("citizen"))).status == 403
    assert (
        await client.post("/v1/disputes/claim", json={}, headers=await make_token("citizen"))
    ).status == 403


async def test_dispute_detail_shows_ocr_results_and_the_cars_readings(
    client: TestClient, pool: asyncpg.Pool, make_token: TokenFactory
) -> None:
    where = district()
    async with pool.acquire() as conn:
        case = await make_photo_case(conn, district=where, ocr_km=42_000)
        await conn.execute(
            """insert into readings (vehicle_id, odometer_m, recorded_at, source)
               values ($1, 40000000, now() - interval '30 days', 'telematics'),
                      ($1, 41000000, now() - interval '10 days', 'telematics')""",
            case.vehicle_id,
        )
    h = await make_token("reviewer")
    r = await client.get(f"/v1/disputes/{case.dispute_id}", headers=h)
    assert r.status == 200, await r.text()
    d = await r.json()
    assert d["ocr"]["dashboard"]["read"]["value_km"] == 42_000
    assert d["ocr"]["dashboard"]["read"]["box"] == [300, 400, 360, 110]
    assert [p["odometer_m"] for p in d["readings"]] == [40_000_000, 41_000_000]
    assert d["photos"]["dashboard"]["sha256"] == case.dashboard_sha256
    assert d["submission"]["claimed_km"] == 50_000
    assert d["enrolled_plate"] == case.plate


async def test_a_correction_that_contradicts_the_cars_readings_is_refused(
    client: TestClient, pool: asyncpg.Pool, make_token: TokenFactory
) -> None:
    where = district()
    async with pool.acquire() as conn:
        case = await make_photo_case(conn, district=where, claimed_km=50_000, ocr_km=50_000)
        await conn.execute(
            """insert into readings (vehicle_id, odometer_m, recorded_at, source)
               values ($1, 55000000, now() - interval '2 days', 'telematics')""",
            case.vehicle_id,
        )
    h = await make_token("reviewer")
    await claim(client, h, where)
    r = await client.post(f"/v1/disputes/{case.dispute_id}/resolve", json={"action": "accept"}, headers=h)
    assert r.status == 409
    err = (await r.json())["error"]
    assert err["code"] == "reading_conflicts" and [x["code"] for x in err["reasons"]] == [
        "odometer_decreased"
    ]
    assert await pool.fetchval("select count(*) from readings where vehicle_id = $1", case.vehicle_id) == 1
    r = await client.post(
        f"/v1/disputes/{case.dispute_id}/resolve", json={"action": "correct", "value_km": 55_100}, headers=h
    )
    assert r.status == 200, await r.text()
