"""Ownership is checked, not declared (issue 18, item 9): enrolling reveals nothing about other
members' cars, and a car takes part, receives consents and shows readings and results only once an
operator has checked its registration certificate, which is recorded and audited."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from tests.conftest import ROOT, TokenFactory, ownership_check, random_plate, service_url, vehicle_payload
from tests.telematics.conftest import body_of, make_provider, reading, recent, signed_headers

#: What an enrolment answer may differ in between two members: the car's own identity and times.
_OWN = {"id", "owner_id", "plate", "vin", "created_at"}


async def _enrol(client: TestClient, headers: dict[str, str], body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    r = await client.post("/v1/vehicles", json=body, headers=headers)
    return r.status, await r.json()


async def _check(client: TestClient, vehicle_id: int, body: dict[str, Any], op: dict[str, str]) -> tuple[int, Any]:
    r = await client.post(f"/v1/vehicles/{vehicle_id}/ownership-checks", json=body, headers=op)
    return r.status, await r.json()


def _shape(answer: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in answer.items() if k not in _OWN}


async def test_enrolling_a_car_someone_else_enrolled_looks_like_a_fresh_enrolment(
    client: TestClient, make_token: TokenFactory
) -> None:
    owner = await make_token("citizen")
    body = vehicle_payload()
    status, first = await _enrol(client, owner, body)
    assert status == 201
    # the same VIN, the same plate, both: each answered as a fresh enrolment, never a 409
    fresh_status, fresh = await _enrol(client, await make_token("citizen"), vehicle_payload())
    for probe in ({**body, "plate": random_plate()}, {**body, "vin": vehicle_payload()["vin"]}, body):
        status, answer = await _enrol(client, await make_token("citizen"), probe)
        assert status == fresh_status == 201, answer
        assert _shape(answer) == _shape(fresh) == _shape(first)
        assert answer["status"] == "pending"
    # ... also once the first member's car is verified and active
    op = await make_token("operator")
    assert (await _check(client, first["id"], ownership_check(first), op))[0] == 200
    late = await make_token("citizen")
    status, answer = await _enrol(client, late, body)
    assert status == 201 and _shape(answer) == _shape(fresh)


async def test_a_claim_takes_no_part_until_verified(
    client: TestClient, make_token: TokenFactory, pool: asyncpg.Pool
) -> None:
    h, op = await make_token("citizen"), await make_token("operator")
    _, v = await _enrol(client, h, vehicle_payload())
    async with pool.acquire() as conn:
        provider = await make_provider(conn)
    refusals = [
        await client.post(f"/v1/vehicles/{v['id']}/participations", json={}, headers=h),
        await client.post(f"/v1/vehicles/{v['id']}/consents", json={"provider": provider.name}, headers=h),
        await client.get(f"/v1/vehicles/{v['id']}/readings", headers=h),
    ]
    for r in refusals:
        assert r.status == 409
        assert (await r.json())["error"]["code"] == "ownership_not_verified"
    # staff see the claim and its (empty) readings
    assert (await client.get(f"/v1/vehicles/{v['id']}/readings", headers=op)).status == 200
    assert await pool.fetchval("select count(*) from vehicle_consents where vehicle_id = $1", v["id"]) == 0


async def test_provider_readings_of_an_unverified_claim_are_quarantined_and_never_reach_it(
    client: TestClient, make_token: TokenFactory, pool: asyncpg.Pool
) -> None:
    h, op = await make_token("citizen"), await make_token("operator")
    _, v = await _enrol(client, h, vehicle_payload())
    async with pool.acquire() as conn:
        provider = await make_provider(conn)
    body = body_of([reading(v["vin"], 41_000, recent(2))])
    r = await client.post(
        f"/v1/providers/{provider.name}/readings", data=body, headers=signed_headers(provider.secret, body)
    )
    assert (await r.json())["quarantined"] == [{"index": 0, "reasons": ["vehicle_unknown"]}]
    assert await pool.fetchval("select count(*) from readings where vehicle_id = $1", v["id"]) == 0
    assert await pool.fetchval(
        "select count(*) from disputes d join quarantined_readings q on q.id = d.quarantined_reading_id "
        "where q.vin = $1",
        v["vin"],
    ) == 0
    # verified, then consented: the provider's readings are taken
    assert (await _check(client, v["id"], ownership_check(v), op))[0] == 200
    r = await client.post(f"/v1/vehicles/{v['id']}/consents", json={"provider": provider.name}, headers=h)
    assert r.status == 201
    body = body_of([reading(v["vin"], 41_050, recent(1))])
    r = await client.post(
        f"/v1/providers/{provider.name}/readings", data=body, headers=signed_headers(provider.secret, body)
    )
    assert (await r.json())["accepted"] == 1
    r = await client.get(f"/v1/vehicles/{v['id']}/readings", headers=h)
    assert [x["odometer_km"] for x in (await r.json())["readings"]] == [41_050]


async def test_the_registered_owner_wins_over_an_impostor_who_enrolled_first(
    client: TestClient, make_token: TokenFactory, pool: asyncpg.Pool
) -> None:
    impostor, owner, op = await make_token("citizen"), await make_token("citizen"), await make_token("operator")
    body = vehicle_payload()
    _, fake = await _enrol(client, impostor, body)
    _, real = await _enrol(client, owner, body)
    r = await client.get("/v1/ownership-claims", headers=op)
    listed = {c["vehicle"]["id"]: c for c in (await r.json())["claims"]}
    assert listed[fake["id"]]["competing_claims"] == 1 and listed[real["id"]]["competing_claims"] == 1

    status, verified = await _check(
        client, real["id"], {**ownership_check(real), "registration_certificate_no": "제 2019-004711 호"}, op
    )
    assert status == 200, verified
    assert verified["status"] == "active"
    assert verified["registration_certificate_no"] == "2019-004711"
    assert verified["ownership_checked_by"] == op["X-Subject"]
    # the impostor's claim is refused; they learn it was refused, not who owns the car
    r = await client.get(f"/v1/vehicles/{fake['id']}", headers=impostor)
    seen = await r.json()
    assert (seen["status"], seen["ownership_refusal"]) == ("refused", "not_registered_owner")
    assert seen["ownership_checked_by"] is None and seen["registration_certificate_no"] is None
    for r in (
        await client.get(f"/v1/vehicles/{fake['id']}/readings", headers=impostor),
        await client.post(f"/v1/vehicles/{fake['id']}/participations", json={}, headers=impostor),
    ):
        assert r.status == 409
    # the owner's car takes part
    r = await client.post(f"/v1/vehicles/{real['id']}/participations", json={}, headers=owner)
    assert r.status == 201
    # every step is in the append-only audit log: who, against which document, when
    rows = await pool.fetch(
        "select entity_id, action, actor_id, after from audit_log where entity_id = any($1::text[]) "
        "and action like 'vehicle.ownership%' order by id",
        [str(fake["id"]), str(real["id"])],
    )
    assert [(r["entity_id"], r["action"]) for r in rows] == [
        (str(real["id"]), "vehicle.ownership_verify"),
        (str(fake["id"]), "vehicle.ownership_refuse"),
    ]
    assert rows[0]["actor_id"] == op["X-Subject"]
    assert rows[0]["after"]["registration_certificate_no"] == "2019-004711"
    assert rows[0]["after"]["checked_at"] and rows[0]["after"]["refused_claim_ids"] == [fake["id"]]


async def test_a_sold_car_moves_to_its_new_owner_only_with_transfer(
    client: TestClient, make_token: TokenFactory, pool: asyncpg.Pool
) -> None:
    seller, buyer, op = await make_token("citizen"), await make_token("citizen"), await make_token("operator")
    body = vehicle_payload()
    _, old = await _enrol(client, seller, body)
    assert (await _check(client, old["id"], ownership_check(old), op))[0] == 200
    part = await (await client.post(f"/v1/vehicles/{old['id']}/participations", json={}, headers=seller)).json()
    async with pool.acquire() as conn:
        provider = await make_provider(conn)
    await client.post(f"/v1/vehicles/{old['id']}/consents", json={"provider": provider.name}, headers=seller)

    _, new = await _enrol(client, buyer, body)
    status, answer = await _check(client, new["id"], ownership_check(new), op)
    assert status == 409 and answer["error"]["code"] == "held_by_another_member"
    assert answer["error"]["reasons"][0]["message"] == f"vehicle {old['id']}"
    status, answer = await _check(client, new["id"], {**ownership_check(new), "transfer": True}, op)
    assert status == 200 and answer["status"] == "active"

    old_now = await (await client.get(f"/v1/vehicles/{old['id']}", headers=seller)).json()
    assert old_now["status"] == "retired"
    assert [(p["id"], p["status"], p["end_reason"]) for p in old_now["participations"]] == [
        (part["id"], "ended", "ownership_transfer")
    ]
    assert await pool.fetchval(
        "select withdrawn_at is not null from vehicle_consents where vehicle_id = $1", old["id"]
    )
    # the seller still sees the history of the car they owned
    assert (await client.get(f"/v1/vehicles/{old['id']}/readings", headers=seller)).status == 200
    assert await pool.fetchval(
        "select count(*) from audit_log where entity_id = $1 and action = 'vehicle.ownership_transfer'", str(old["id"])
    ) == 1


async def test_a_mistaken_verification_is_withdrawn(
    client: TestClient, make_token: TokenFactory, pool: asyncpg.Pool
) -> None:
    h, op = await make_token("citizen"), await make_token("operator")
    _, v = await _enrol(client, h, vehicle_payload())
    assert (await _check(client, v["id"], ownership_check(v), op))[0] == 200
    part = await (await client.post(f"/v1/vehicles/{v['id']}/participations", json={}, headers=h)).json()
    status, answer = await _check(
        client, v["id"], {"outcome": "refused", "reason": "document_invalid", "note": "forged certificate"}, op
    )
    assert status == 200 and answer["status"] == "refused"
    assert answer["participations"][0]["end_reason"] == "ownership_refused"
    for path in (f"/v1/vehicles/{v['id']}/readings", f"/v1/participations/{part['id']}/results"):
        r = await client.get(path, headers=h)
        assert r.status == 409 and (await r.json())["error"]["code"] == "ownership_refused"
    # refused is final for this claim
    status, answer = await _check(client, v["id"], ownership_check(v), op)
    assert status == 409 and answer["error"]["code"] == "not_checkable"
    row = await pool.fetchrow(
        "select actor_id, before, after from audit_log where entity_id = $1 and action = 'vehicle.ownership_refuse'",
        str(v["id"]),
    )
    assert row is not None and row["before"]["status"] == "active" and row["after"]["reason"] == "document_invalid"


async def test_checks_are_for_operators_and_name_the_right_car(client: TestClient, make_token: TokenFactory) -> None:
    h, op = await make_token("citizen"), await make_token("operator")
    _, v = await _enrol(client, h, vehicle_payload())
    status, _ = await _check(client, v["id"], ownership_check(v), h)
    assert status == 403
    status, answer = await _check(client, v["id"], {**ownership_check(v), "vin": vehicle_payload()["vin"]}, op)
    assert status == 422 and answer["error"]["code"] == "vin_mismatch"
    for bad in (
        {"outcome": "verified", "vin": v["vin"]},
        {**ownership_check(v), "registration_certificate_no": "<script>"},
        {"outcome": "refused"},
        {"outcome": "refused", "reason": "other", "transfer": True},
    ):
        status, answer = await _check(client, v["id"], bad, op)
        assert status == 422, (bad, answer)
    status, answer = await _check(client, 999_999_999, ownership_check(v), op)
    assert status == 404
    assert (await client.get("/v1/ownership-claims", headers=h)).status == 403


def _cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ingest.cli", "ownership", *args],
        env={**os.environ, "CARMILEAGE_DATABASE_URL": service_url(database_url)},
        cwd=ROOT,
        capture_output=True,
        text=True,
    )


async def test_the_ownership_command_lists_verifies_and_refuses(
    client: TestClient, make_token: TokenFactory, pool: asyncpg.Pool, database_url: str
) -> None:
    first, second = await make_token("citizen"), await make_token("citizen")
    body = vehicle_payload()
    _, a = await _enrol(client, first, body)
    _, b = await _enrol(client, second, vehicle_payload())
    listed = json.loads(_cli(database_url, "list", "--json").stdout)
    assert {a["id"], b["id"]} <= {c["id"] for c in listed}

    out = _cli(database_url, "verify", str(a["id"]), "--certificate", "2020-1234", "--vin", "KMH" + "A" * 14)
    assert out.returncode == 1 and "vin_mismatch" in out.stdout
    out = _cli(
        database_url, "verify", str(a["id"]), "--certificate", "2020-1234", "--vin", a["vin"].lower(),
        "--operator", "gangnam-kim", "--json",
    )
    assert out.returncode == 0, out.stderr + out.stdout
    assert json.loads(out.stdout)["vehicle"]["status"] == "active"
    out = _cli(database_url, "refuse", str(b["id"]), "--reason", "vehicle_mismatch", "--note", "another car")
    assert out.returncode == 0 and "refused" in out.stdout
    rows = await pool.fetch(
        "select entity_id, actor_role, actor_id, after from audit_log where entity_id = any($1::text[]) "
        "and action like 'vehicle.ownership%' order by id",
        [str(a["id"]), str(b["id"])],
    )
    assert (rows[0]["entity_id"], rows[0]["actor_role"], rows[0]["actor_id"]) == (str(a["id"]), "operator", "gangnam-kim")
    assert rows[0]["after"]["registration_certificate_no"] == "2020-1234"
    assert rows[1]["actor_id"].startswith("cli:") and rows[1]["after"]["reason"] == "vehicle_mismatch"
    r = await client.get(f"/v1/vehicles/{b['id']}", headers=second)
    assert (await r.json())["ownership_note"] == "another car"
