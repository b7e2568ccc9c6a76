"""A citizen sees the period results of their own participation: every version, the current one
first, the same figures the reward calculator receives, and whether it has them yet."""

from __future__ import annotations

from datetime import UTC, date, datetime

import asyncpg
from aiohttp.test_utils import TestClient

from prorate.rounds import parse_round
from storage.corrections import correct_reading
from storage.evaluation import evaluate_round

from .helpers import bearer, make_car, make_participation, pointers


async def test_the_owner_sees_every_version_with_its_figures_and_delivery(
    conn: asyncpg.Connection, eval_pool: asyncpg.Pool, http: TestClient
) -> None:
    car = await make_car(conn, first_registration=date(2018, 3, 1))
    pid = await make_participation(
        conn, car, start=(date(2022, 3, 1), 40_000_000), end=(date(2023, 3, 2), 45_000_000)
    )
    owner = await bearer(eval_pool, "citizen", car.owner_id)

    # before any round: nothing yet
    r = await http.get(f"/v1/participations/{pid}/results", headers=owner)
    assert r.status == 200, await r.text()
    assert await r.json() == {"participation_id": pid, "results": []}

    await evaluate_round(conn, parse_round("2023-05"))
    r = await http.get(f"/v1/participations/{pid}/results", headers=owner)
    body = await r.json()
    (first,) = body["results"]
    row = await conn.fetchrow("select * from period_results where participation_id = $1", pid)
    assert row is not None
    assert first["version"] == 1 and first["current"] is True and first["round"] == "2023-05"
    assert (first["start_date"], first["end_date"], first["days"]) == ("2022-03-01", "2023-03-02", 366)
    # decimals travel as exact strings, equal to what the round stored
    assert first["actual_km"] == str(row["actual_km"]) == "5000.0"
    assert first["baseline_km"] == str(row["baseline_km"])
    assert first["points"] == row["points"] and first["event_id"] == str(row["event_id"])
    assert first["baseline"]["method"] == "national"
    assert first["delivery"] == "pending" and first["delivered_at"] is None

    # a corrected end reading: the next round adds version 2, which supersedes version 1
    _, end_id = await pointers(conn, pid)
    assert end_id is not None
    await correct_reading(conn, end_id, 44_000_000, approved_at=datetime.now(UTC))
    await evaluate_round(conn, parse_round(f"{date.today().year + 1}-01"))
    await conn.execute(
        "update outbox set status = 'delivered', delivered_at = now() where supersedes_event_id is null"
    )

    body = await (await http.get(f"/v1/participations/{pid}/results", headers=owner)).json()
    newest, older = body["results"]
    assert (newest["version"], newest["current"], older["version"], older["current"]) == (2, True, 1, False)
    assert newest["supersedes_event_id"] == older["event_id"]
    assert (newest["actual_km"], older["actual_km"]) == ("4000.0", "5000.0")
    assert (newest["delivery"], older["delivery"]) == ("pending", "delivered")


async def test_only_the_owner_and_staff_see_results(
    conn: asyncpg.Connection, eval_pool: asyncpg.Pool, http: TestClient
) -> None:
    car = await make_car(conn)
    pid = await make_participation(
        conn, car, start=(date(2022, 3, 1), 40_000_000), end=(date(2023, 3, 2), 45_000_000)
    )
    url = f"/v1/participations/{pid}/results"
    assert (await http.get(url)).status == 401
    other = await bearer(eval_pool, "citizen", "someone-else")
    r = await http.get(url, headers=other)
    assert (r.status, (await r.json())["error"]["code"]) == (403, "not_your_vehicle")
    provider = await bearer(eval_pool, "provider", "maker")
    assert (await http.get(url, headers=provider)).status == 403
    for role in ("operator", "reviewer"):
        assert (await http.get(url, headers=await bearer(eval_pool, role, "staff"))).status == 200
    r = await http.get("/v1/participations/999999/results", headers=await bearer(eval_pool, "operator", "op"))
    assert (r.status, (await r.json())["error"]["code"]) == (404, "participation_not_found")
