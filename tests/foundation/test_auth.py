"""401 for no or bad credentials, 403 for the wrong role or someone else's data."""

from __future__ import annotations

import asyncpg
from aiohttp.test_utils import TestClient

from storage.tokens import revoke_token
from tests.conftest import TokenFactory, ownership_check, vehicle_payload


async def test_no_token(client: TestClient) -> None:
    r = await client.get("/v1/vehicles")
    assert r.status == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await r.json())["error"]["code"] == "unauthenticated"


async def test_bad_token(client: TestClient) -> None:
    for header in ("Bearer nope", "Bearer cm_cit_xxxxxxxx", "Basic dXNlcjpwYXNz", "Bearer "):
        r = await client.get("/v1/vehicles", headers={"Authorization": header})
        assert r.status == 401, header


async def test_revoked_token(client: TestClient, make_token: TokenFactory, pool: asyncpg.Pool) -> None:
    h = await make_token("citizen")
    assert (await client.get("/v1/vehicles", headers=h)).status == 200
    token_id = await pool.fetchval("select max(id) from api_tokens where subject = $1", h["X-Subject"])
    async with pool.acquire() as conn:
        await revoke_token(conn, token_id)
    r = await client.get("/v1/vehicles", headers=h)
    assert r.status == 401
    assert (await r.json())["error"]["code"] == "invalid_token"


async def test_tokens_are_stored_hashed(make_token: TokenFactory, pool: asyncpg.Pool) -> None:
    h = await make_token("citizen")
    token = h["Authorization"].split()[1]
    rows = await pool.fetch("select token_hash::text as t from api_tokens where subject = $1", h["X-Subject"])
    assert all(token not in r["t"] for r in rows)


async def test_wrong_role(client: TestClient, make_token: TokenFactory) -> None:
    for role in ("provider", "reviewer"):
        h = await make_token(role)
        r = await client.post("/v1/vehicles", json=vehicle_payload(), headers=h)
        assert r.status == 403, role
        assert (await r.json())["error"]["code"] == "forbidden"


async def test_citizen_sees_only_own_vehicles(client: TestClient, make_token: TokenFactory) -> None:
    owner, other = await make_token("citizen"), await make_token("citizen")
    v = await (await client.post("/v1/vehicles", json=vehicle_payload(), headers=owner)).json()
    r = await client.get(f"/v1/vehicles/{v['id']}", headers=other)
    assert r.status == 403
    assert (await r.json())["error"]["code"] == "not_your_vehicle"
    r = await client.post(f"/v1/vehicles/{v['id']}/participations", json={}, headers=other)
    assert r.status == 403
    op = await make_token("operator")
    assert (await client.post(f"/v1/vehicles/{v['id']}/ownership-checks", json=ownership_check(v), headers=op)).status == 200
    p = await (await client.post(f"/v1/vehicles/{v['id']}/participations", json={}, headers=owner)).json()
    r = await client.post(f"/v1/participations/{p['id']}/end", json={"reason": "withdrawn"}, headers=other)
    assert r.status == 403
    r = await client.get("/v1/vehicles", headers=other)
    assert (await r.json())["vehicles"] == []
    # a citizen cannot enrol for someone else
    r = await client.post("/v1/vehicles", json=vehicle_payload(owner_id=owner["X-Subject"]), headers=other)
    assert r.status == 403
    # reviewers and operators may look
    for role in ("reviewer", "operator"):
        r = await client.get(f"/v1/vehicles/{v['id']}", headers=await make_token(role))
        assert r.status == 200


async def test_unknown_ids(client: TestClient, make_token: TokenFactory) -> None:
    h = await make_token("citizen")
    for path in ("/v1/vehicles/999999999", "/v1/vehicles/abc", "/v1/vehicles/0", "/v1/vehicles/-1"):
        r = await client.get(path, headers=h)
        assert r.status == 404, path
