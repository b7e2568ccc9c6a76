"""A reviewer corrects a verified reading over HTTP: the old one is kept as superseded, the round
after writes a new result version whose outbox event supersedes the first."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import asyncpg
from aiohttp.test_utils import TestClient

from prorate.rounds import parse_round
from storage.evaluation import evaluate_round

from .helpers import bearer, make_car, make_participation, pointers


async def test_a_correction_yields_a_new_version_that_supersedes_the_first(
    conn: asyncpg.Connection, eval_pool: asyncpg.Pool, http: TestClient
) -> None:
    car = await make_car(conn)
    pid = await make_participation(
        conn, car, start=(date(2022, 3, 1), 40_000_000), end=(date(2023, 3, 2), 45_000_000)
    )
    await evaluate_round(conn, parse_round("2023-05"))
    start_id, old_end = await pointers(conn, pid)
    reviewer = await bearer(eval_pool, "reviewer", "kim")

    r = await http.post(
        f"/v1/readings/{old_end}/corrections",
        json={"odometer_km": 44_000, "reason": "photo re-read: 44,000 km"},
        headers=reviewer,
    )
    assert r.status == 201, await r.text()
    body = await r.json()
    assert body["superseded_reading_id"] == old_end
    assert (body["reading"]["odometer_m"], body["reading"]["source"]) == (44_000_000, "reviewer")
    fixed = body["reading"]["id"]

    # the superseded reading cannot be corrected again; the audit log has the correction
    r = await http.post(
        f"/v1/readings/{old_end}/corrections",
        json={"odometer_km": 43_000, "reason": "again"},
        headers=reviewer,
    )
    assert (r.status, (await r.json())["error"]["code"]) == (409, "reading_not_verified")
    audit = await conn.fetchrow("select * from audit_log where action = 'reading.correct'")
    assert audit is not None
    assert audit["actor_id"] == "kim" and json.loads(audit["after"])["corrected_by"] == fixed

    # The correction is verified now, so the first round whose cutoff follows it sees it.
    staged = await evaluate_round(conn, parse_round(f"{date.today().year + 1}-01"))
    assert (staged.to_write, staged.superseding) == (1, 1)
    assert await pointers(conn, pid) == (start_id, fixed)
    rows = await conn.fetch("select * from period_results where participation_id = $1 order by version", pid)
    assert [r["version"] for r in rows] == [1, 2] and rows[0]["superseded_by"] == rows[1]["id"]
    assert (rows[0]["actual_km"], rows[1]["actual_km"]) == (Decimal("5000.0"), Decimal("4000.0"))
    out = await conn.fetchrow("select * from outbox where period_result_id = $1", rows[1]["id"])
    assert out is not None
    assert out["supersedes_event_id"] == rows[0]["event_id"]


async def test_refused_corrections_change_nothing(
    conn: asyncpg.Connection, eval_pool: asyncpg.Pool, http: TestClient
) -> None:
    car = await make_car(conn)
    pid = await make_participation(
        conn, car, start=(date(2022, 3, 1), 40_000_000), end=(date(2023, 3, 2), 45_000_000)
    )
    _, end_id = await pointers(conn, pid)
    reviewer = await bearer(eval_pool, "reviewer", "lee")
    before = await conn.fetch("select id, odometer_m, status from readings order by id")

    cases = [
        (end_id, {"odometer_km": 39_000, "reason": "below the start"}, 409, "reading_conflicts"),
        (end_id, {"odometer_km": 45_000, "reason": "same value"}, 409, "correction_unchanged"),
        (999_999_999, {"odometer_km": 1, "reason": "unknown"}, 404, "reading_not_found"),
        (end_id, {"odometer_km": -1, "reason": "negative"}, 422, "invalid_request"),
        (end_id, {"odometer_km": 44_000}, 422, "invalid_request"),
    ]
    for rid, payload, status, code in cases:
        r = await http.post(f"/v1/readings/{rid}/corrections", json=payload, headers=reviewer)
        assert (r.status, (await r.json())["error"]["code"]) == (status, code), payload
    citizen = await bearer(eval_pool, "citizen", car.owner_id)
    r = await http.post(
        f"/v1/readings/{end_id}/corrections", json={"odometer_km": 44_000, "reason": "mine"}, headers=citizen
    )
    assert r.status == 403
    assert await conn.fetch("select id, odometer_m, status from readings order by id") == before
    assert await conn.fetchval("select count(*) from audit_log") == 0


async def test_owners_see_their_readings(
    conn: asyncpg.Connection, eval_pool: asyncpg.Pool, http: TestClient
) -> None:
    car = await make_car(conn)
    await make_participation(
        conn, car, start=(date(2022, 3, 1), 40_000_000), end=(date(2023, 3, 2), 45_000_000)
    )
    r = await http.get(
        f"/v1/vehicles/{car.vehicle_id}/readings", headers=await bearer(eval_pool, "citizen", car.owner_id)
    )
    assert r.status == 200
    assert [x["odometer_km"] for x in (await r.json())["readings"]] == [45_000, 40_000]
    r = await http.get(
        f"/v1/vehicles/{car.vehicle_id}/readings", headers=await bearer(eval_pool, "citizen", "other")
    )
    assert r.status == 403
