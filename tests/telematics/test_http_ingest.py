"""Signed HTTP batches from providers, consent withdrawal, and the member's consent API."""

from __future__ import annotations

import json
import time
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from tests.conftest import PROVIDER_BOX, TokenFactory, ownership_check, vehicle_payload
from tests.telematics.conftest import body_of, enrol_cars, make_provider, reading, recent, signed_headers


async def post(client: TestClient, provider: Any, body: bytes, headers: dict[str, str] | None = None) -> Any:
    r = await client.post(
        f"/v1/providers/{provider.name}/readings", data=body, headers=headers or signed_headers(provider.secret, body)
    )
    return r.status, await r.json()


async def test_signed_batch_is_stored_and_answered_after_commit(client: TestClient, pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        p = await make_provider(conn)
        a, b = await enrol_cars(conn, 2, [p])
        (unconsented,) = await enrol_cars(conn, 1)
    readings = [
        reading(a, 1000.0, recent(3)),
        reading(a, 1010.5, recent(2)),
        reading(b, 500, recent(2)),
        reading(a, 900, recent(1)),  # lower than the reading an hour before
        reading(unconsented, 1, recent(1)),
    ]
    status, answer = await post(client, p, body_of(readings))
    assert status == 200, answer
    assert answer == {
        "accepted": 3,
        "duplicates": 0,
        "quarantined": [{"index": 3, "reasons": ["odometer_decreased"]}, {"index": 4, "reasons": ["consent_missing"]}],
    }
    stored = await pool.fetchval("select odometer_m from readings where provider_event_id = $1", readings[1]["event_id"])
    assert stored == 1_010_500
    # Sent again (signed anew): every reading is a duplicate, nothing is stored twice.
    again = body_of(readings)
    status, answer = await post(client, p, again, signed_headers(p.secret, again, int(time.time()) + 1))
    assert status == 200, answer
    assert (answer["accepted"], answer["duplicates"], answer["quarantined"]) == (0, 5, [])


async def test_authentication_failures_are_401_with_a_reason(client: TestClient, pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        p = await make_provider(conn)
        other = await make_provider(conn)
    body = body_of([reading("KMHXX00XXXX000001", 1, recent(1))])
    cases = {
        "signature_missing": {"Content-Type": "application/json", "X-Carmileage-Timestamp": str(int(time.time()))},
        "timestamp_missing": {"Content-Type": "application/json", "X-Carmileage-Signature": "sha256=" + "0" * 64},
        "timestamp_stale": signed_headers(p.secret, body, int(time.time()) - 301),
        "signature_invalid": signed_headers(other.secret, body),
    }
    for code, headers in cases.items():
        status, answer = await post(client, p, body, headers)
        assert status == 401, code
        assert answer["error"]["code"] == "unauthenticated"
        assert [r["code"] for r in answer["error"]["reasons"]] == [code]
    r = await client.post("/v1/providers/nosuchprovider/readings", data=body, headers=signed_headers(p.secret, body))
    assert r.status == 401
    assert (await r.json())["error"]["reasons"][0]["code"] == "unknown_provider"
    # The body is part of what is signed.
    headers = signed_headers(p.secret, body)
    status, _ = await post(client, p, body.replace(b"1", b"2"), headers)
    assert status == 401


async def test_a_replayed_request_is_refused(client: TestClient, pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        p = await make_provider(conn)
        (car,) = await enrol_cars(conn, 1, [p])
    body = body_of([reading(car, 7, recent(1))])
    headers = signed_headers(p.secret, body)
    assert (await post(client, p, body, headers))[0] == 200
    status, answer = await post(client, p, body, headers)
    assert (status, answer["error"]["code"]) == (409, "replayed_request")


async def test_two_secrets_are_valid_during_rotation(client: TestClient, pool: asyncpg.Pool) -> None:
    from storage.providers import add_secret, revoke_older_secrets

    async with pool.acquire() as conn:
        p = await make_provider(conn)
        (car,) = await enrol_cars(conn, 1, [p])
        new = await add_secret(conn, p.id, box=PROVIDER_BOX)
    for i, secret in enumerate([p.secret, new]):
        body = body_of([reading(car, 10 + i, recent(2 - i))])
        assert (await post(client, p, body, signed_headers(secret, body)))[0] == 200
    async with pool.acquire() as conn:
        await revoke_older_secrets(conn, p.id)
    body = body_of([reading(car, 20, recent(0.5))])
    assert (await post(client, p, body, signed_headers(p.secret, body)))[0] == 401


async def test_bad_input_is_refused_whole_with_reasons(client: TestClient, pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        p = await make_provider(conn)
        (car,) = await enrol_cars(conn, 1, [p])
    good = reading(car, 100, recent(2))
    cases: list[tuple[bytes, int, str]] = [
        (b"{not json", 400, "malformed_json"),
        (body_of([good]).replace(b"100", b"NaN"), 400, "non_finite_number"),
        (body_of([good]).replace(b"100", b"Infinity"), 400, "non_finite_number"),
        (b'{"readings": 5}', 422, "wrong_type"),
        (json.dumps({"readings": [good] * 10_001}).encode(), 422, "too_many_readings"),
    ]
    for body, status, code in cases:
        got, answer = await post(client, p, body)
        assert (got, answer["error"]["code"]) == (status, code), code
    bad = [
        good,
        {**good, "event_id": "b1", "odometer": {"value": -1, "unit": "km"}},
        {**good, "event_id": "b2", "odometer": {"value": 20_000_000, "unit": "km"}},
        {**good, "event_id": "b3", "odometer": {"value": "100", "unit": "km"}},
        {**good, "event_id": "b4", "recorded_at": "2022-03-01T09:00:00"},
        {**good, "event_id": "b5", "odometer": {"value": 1, "unit": "league"}},
    ]
    got, answer = await post(client, p, body_of(bad))
    assert got == 422 and answer["error"]["code"] == "invalid_readings"
    assert [(r["code"], r["field"]) for r in answer["error"]["reasons"]] == [
        ("odometer_negative", "readings[1].odometer.value"),
        ("odometer_too_large", "readings[2].odometer.value"),
        ("wrong_type", "readings[3].odometer.value"),
        ("time_without_offset", "readings[4].recorded_at"),
        ("unit_unknown", "readings[5].odometer.unit"),
    ]
    # Nothing of a refused batch is stored; the good reading goes through once sent alone.
    assert await pool.fetchval("select count(*) from readings where vehicle_id = $1", car.id) == 0
    assert (await post(client, p, body_of([good])))[1]["accepted"] == 1


async def test_body_over_5_mb_is_413(client: TestClient, pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        p = await make_provider(conn)
    body = b'{"readings": [' + b" " * (5 * 1024 * 1024) + b"]}"
    got, answer = await post(client, p, body)
    assert (got, answer["error"]["code"]) == (413, "body_too_large")


async def test_consent_withdrawal_stops_ingestion_and_deletes_unverified_data(
    client: TestClient, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as conn:
        p = await make_provider(conn)
        keep, leave = await enrol_cars(conn, 2, [p])
    first = [reading(keep, 100, recent(5)), reading(leave, 100, recent(5)), reading(leave, 50, recent(4))]
    assert (await post(client, p, body_of(first)))[1]["quarantined"] == [{"index": 2, "reasons": ["odometer_decreased"]}]
    assert await pool.fetchval("select count(*) from disputes where vehicle_id = $1 and status = 'open'", leave.id) == 1
    body = json.dumps({"vins": [leave.vin, "KMHZZ00ZZZZ999998"]}).encode()
    r = await client.post(f"/v1/providers/{p.name}/consent-withdrawals", data=body, headers=signed_headers(p.secret, body))
    assert r.status == 200, await r.text()
    assert await r.json() == {"withdrawn": 1, "deleted_quarantined": 1, "unknown_vins": ["KMHZZ00ZZZZ999998"]}
    assert await pool.fetchval("select count(*) from quarantined_readings where vehicle_id = $1", leave.id) == 0
    assert await pool.fetchval("select count(*) from disputes where vehicle_id = $1", leave.id) == 0
    # Verified readings stay; later readings of the car are quarantined, the other car's flow on.
    assert await pool.fetchval("select count(*) from readings where vehicle_id = $1", leave.id) == 1
    _, answer = await post(client, p, body_of([reading(keep, 101, recent(3)), reading(leave, 101, recent(3))]))
    assert answer["quarantined"] == [{"index": 1, "reasons": ["consent_withdrawn"]}]


async def test_the_member_grants_and_withdraws_consent(
    client: TestClient, pool: asyncpg.Pool, make_token: TokenFactory
) -> None:
    async with pool.acquire() as conn:
        p = await make_provider(conn)
    h = await make_token("citizen")
    r = await client.post("/v1/vehicles", json=vehicle_payload(), headers=h)
    assert r.status == 201, await r.text()
    vehicle = await r.json()
    # an operator has checked the registration certificate (consents wait for that check)
    r = await client.post(
        f"/v1/vehicles/{vehicle['id']}/ownership-checks", json=ownership_check(vehicle), headers=await make_token("operator")
    )
    assert r.status == 200, await r.text()
    r = await client.post(f"/v1/vehicles/{vehicle['id']}/consents", json={"provider": p.name}, headers=h)
    assert r.status == 201, await r.text()
    stranger = await make_token("citizen")
    r = await client.post(f"/v1/vehicles/{vehicle['id']}/consents", json={"provider": p.name}, headers=stranger)
    assert r.status == 403
    body = body_of([reading(vehicle["vin"], 5000, recent(1))])
    assert (await post(client, p, body))[1]["accepted"] == 1
    r = await client.get(f"/v1/vehicles/{vehicle['id']}/consents", headers=h)
    assert [c["provider"] for c in (await r.json())["consents"]] == [p.name]
    r = await client.delete(f"/v1/vehicles/{vehicle['id']}/consents/{p.name}", headers=h)
    assert r.status == 200
    _, answer = await post(client, p, body_of([reading(vehicle["vin"], 5001, recent(0.5))]))
    assert answer["quarantined"] == [{"index": 0, "reasons": ["consent_withdrawn"]}]
    audit = await pool.fetch(
        "select action from audit_log where entity = 'vehicle' and entity_id = $1 order by id", str(vehicle["id"])
    )
    assert [a["action"] for a in audit][-2:] == ["consent.grant", "consent.withdraw"]


async def test_metrics_and_openapi_describe_ingestion(client: TestClient, pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        p = await make_provider(conn)
        (car,) = await enrol_cars(conn, 1, [p])
    await post(client, p, body_of([reading(car, 1, recent(2)), reading(car, 0.5, recent(1))]))
    text = await (await client.get("/metrics")).text()
    assert f'carmileage_readings_accepted_total{{provider="{p.name}",transport="http"}} 1.0' in text
    assert (
        f'carmileage_readings_quarantined_total{{provider="{p.name}",reason="odometer_decreased",transport="http"}} 1.0'
        in text
    )
    assert "carmileage_ingest_lag_seconds_bucket" in text
    spec = await (await client.get("/openapi.json")).json()
    op = spec["paths"]["/v1/providers/{provider}/readings"]["post"]
    assert op["security"] == [{"providerSignature": []}]
    assert "409" in op["responses"] and "401" in op["responses"]
