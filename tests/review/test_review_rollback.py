"""Rollback cases raised by telematics share the reviewers' queue: accept (overrule), correct,
reject; the car's next decrease waiting in quarantine becomes the next case."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
from aiohttp.test_utils import TestClient

from storage.readings import NewReading, store_verified_reading
from tests.conftest import TokenFactory
from tests.photos.pagekit import sign_in
from tests.review.conftest import make_car


async def _rollback_case(pool: asyncpg.Pool, where: str) -> tuple[int, list[int]]:
    """A car with a verified 10,000 km and two later decreases in quarantine."""
    now = datetime.now(UTC)
    async with pool.acquire() as conn:
        vehicle_id, _ = await make_car(conn, where)
        ok = await store_verified_reading(
            conn, NewReading(vehicle_id, 10_000_000, now - timedelta(days=10), "telematics")
        )
        assert ok.reading_id is not None
        first = await store_verified_reading(
            conn, NewReading(vehicle_id, 9_000_000, now - timedelta(days=1), "telematics")
        )
        second = await store_verified_reading(
            conn, NewReading(vehicle_id, 9_100_000, now - timedelta(hours=12), "telematics")
        )
    assert first.dispute_id is not None and second.dispute_id is None  # one open case per car
    assert first.quarantine_id is not None and second.quarantine_id is not None
    return vehicle_id, [first.quarantine_id, second.quarantine_id]


async def test_accept_overrules_the_decrease_and_opens_the_next_case(
    client: TestClient, pool: asyncpg.Pool, make_token: TokenFactory
) -> None:
    where = f"test-{uuid.uuid4().hex[:8]}"
    vehicle_id, quarantined = await _rollback_case(pool, where)
    h = await make_token("reviewer")
    r = await client.post("/v1/disputes/claim", json={"district": where, "kind": "rollback"}, headers=h)
    d = await r.json()
    assert d["kind"] == "rollback" and d["quarantined_reading_id"] == quarantined[0]
    assert [x["code"] for x in d["reasons"]] == ["odometer_decreased"]
    # the reviewer's page shows the quarantined reading on the car's timeline
    await sign_in(client, h)
    html = await (await client.get(f"/review/disputes/{d['id']}")).text()
    assert 'id="quarantined-km"' in html and "9,000.0" in html and 'class="mark mark-quarantined"' in html
    r = await client.post(
        f"/v1/disputes/{d['id']}/resolve", json={"action": "accept", "note": "cluster replaced"}, headers=h
    )
    assert r.status == 200, await r.text()
    assert (await r.json())["resolved_value_m"] == 9_000_000
    values = [
        r["odometer_m"]
        for r in await pool.fetch(
            "select odometer_m from readings where vehicle_id = $1 and status = 'verified' order by recorded_at",
            vehicle_id,
        )
    ]
    assert values == [10_000_000, 9_000_000]
    assert (
        await pool.fetchval("select review_status from quarantined_readings where id = $1", quarantined[0])
        == "resolved"
    )
    # the second decrease is now the car's open case
    nxt = await pool.fetchrow("select * from disputes where vehicle_id = $1 and status = 'open'", vehicle_id)
    assert nxt is not None
    assert nxt["kind"] == "rollback" and nxt["quarantined_reading_id"] == quarantined[1]
    r = await client.post("/v1/disputes/claim", json={"district": where}, headers=h)
    assert (await r.json())["id"] == nxt["id"]
    r = await client.post(
        f"/v1/disputes/{nxt['id']}/resolve",
        json={"action": "reject", "reason": "suspected_tampering"},
        headers=h,
    )
    assert r.status == 200
    assert (
        await pool.fetchval("select review_status from quarantined_readings where id = $1", quarantined[1])
        == "resolved"
    )
    assert (
        await pool.fetchval(
            "select count(*) from disputes where vehicle_id = $1 and status = 'open'", vehicle_id
        )
        == 0
    )


async def test_correct_stores_the_true_value_checked(
    client: TestClient, pool: asyncpg.Pool, make_token: TokenFactory
) -> None:
    where = f"test-{uuid.uuid4().hex[:8]}"
    vehicle_id, _ = await _rollback_case(pool, where)
    h = await make_token("reviewer")
    d = await (await client.post("/v1/disputes/claim", json={"district": where}, headers=h)).json()
    url = f"/v1/disputes/{d['id']}/resolve"
    r = await client.post(url, json={"action": "correct", "value_km": 9_500}, headers=h)
    assert r.status == 409 and (await r.json())["error"]["code"] == "reading_conflicts"  # still a decrease
    r = await client.post(url, json={"action": "correct", "value_km": 10_800}, headers=h)
    assert r.status == 200, await r.text()
    row = await pool.fetchrow(
        "select * from readings where vehicle_id = $1 and source = 'reviewer'", vehicle_id
    )
    assert row is not None
    assert row["odometer_m"] == 10_800_000 and row["approved_at"] is not None
