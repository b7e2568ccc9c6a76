"""20 reviewers claiming at once over 500 disputes: each dispute is resolved exactly once, and no
two reviewers ever hold the same dispute at the same time."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from ingest.app import create_app
from storage.db import create_pool
from storage.tokens import create_token
from tests.conftest import make_settings
from tests.review.conftest import make_photo_case

REVIEWERS = 20
DISPUTES = 500


@pytest.mark.slow
async def test_twenty_reviewers_resolve_five_hundred_disputes_exactly_once(
    fresh_database_url: str, tmp_path: Path
) -> None:
    pool = await create_pool(fresh_database_url, min_size=2, max_size=25)
    try:
        async with pool.acquire() as conn:
            cases = [await make_photo_case(conn, claimed_km=1000 + i, ocr_km=1000 + i) for i in range(DISPUTES)]
            tokens = [(await create_token(conn, "reviewer", f"reviewer-{i}"))[1] for i in range(REVIEWERS)]
        app = create_app(make_settings(fresh_database_url, tmp_path / "data"), pool)
        held_now: dict[int, str] = {}
        overlaps: list[int] = []

        async def reviewer(i: int, client: TestClient) -> Counter[str]:
            rng = random.Random(i)
            headers = {"Authorization": f"Bearer {tokens[i]}"}
            done: Counter[str] = Counter()
            while True:
                r = await client.post("/v1/disputes/claim", json={}, headers=headers)
                if r.status == 204:
                    return done
                assert r.status == 200, await r.text()
                d = await r.json()
                if d["id"] in held_now:
                    overlaps.append(d["id"])
                held_now[d["id"]] = f"reviewer-{i}"
                await asyncio.sleep(rng.random() * 0.01)
                action = rng.choice(["accept", "correct", "reject"])
                body: dict[str, object] = {"action": action}
                if action == "correct":
                    body["value_km"] = d["details"]["claimed_km"]
                if action == "reject":
                    body["reason"] = rng.choice(["unreadable", "other_car", "suspected_tampering"])
                del held_now[d["id"]]
                r = await client.post(f"/v1/disputes/{d['id']}/resolve", json=body, headers=headers)
                assert r.status == 200, await r.text()
                done[action] += 1

        async with TestClient(TestServer(app)) as client:
            results = await asyncio.gather(*(reviewer(i, client) for i in range(REVIEWERS)))
        assert overlaps == []
        total = sum((c for c in results), Counter())
        assert sum(total.values()) == DISPUTES
        assert all(sum(c.values()) > 0 for c in results), "some reviewer never got a dispute"

        ids = [str(c.dispute_id) for c in cases]
        resolves = await pool.fetch(
            """select entity_id, count(*) as n from audit_log
               where entity = 'dispute' and action = 'dispute.resolve' group by entity_id"""
        )
        assert sorted(r["entity_id"] for r in resolves) == sorted(ids)
        assert {r["n"] for r in resolves} == {1}
        claims = await pool.fetch(
            "select entity_id, count(*) as n from audit_log where action = 'dispute.claim' group by entity_id"
        )
        assert {r["n"] for r in claims} == {1}  # nobody's lease ran out, so nobody claimed twice
        assert await pool.fetchval("select count(*) from disputes where status = 'open'") == 0
        accepted = total["accept"] + total["correct"]
        assert await pool.fetchval("select count(*) from readings") == accepted
        assert await pool.fetchval("select count(*) from photo_submissions where status = 'accepted'") == accepted
        assert await pool.fetchval("select count(*) from ocr_labels where kind = 'odometer'") == accepted
    finally:
        await pool.close()
