"""Vehicle enrolment and participations over HTTP: success paths, refusals, and nothing written
on bad input."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from prorate.calendar import seoul_today
from tests.conftest import TokenFactory, ownership_check, random_plate, random_vin, vehicle_payload


async def _count(pool: asyncpg.Pool, owner: str) -> tuple[int, int, int]:
    return (
        await pool.fetchval("select count(*) from vehicles where owner_id = $1", owner),
        await pool.fetchval(
            "select count(*) from participations p join vehicles v on v.id = p.vehicle_id where v.owner_id = $1",
            owner,
        ),
        await pool.fetchval("select count(*) from audit_log where actor_id = $1", owner),
    )


async def enrol_verified(
    client: TestClient, make_token: TokenFactory, headers: dict[str, str], body: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Enrol a car and have an operator verify its registration certificate (it takes part only then)."""
    r = await client.post("/v1/vehicles", json=body or vehicle_payload(), headers=headers)
    assert r.status == 201, await r.text()
    v = await r.json()
    r = await client.post(
        f"/v1/vehicles/{v['id']}/ownership-checks", json=ownership_check(v), headers=await make_token("operator")
    )
    assert r.status == 200, await r.text()
    verified: dict[str, Any] = await r.json()
    return verified


async def test_enrol_show_list(client: TestClient, make_token: TokenFactory) -> None:
    h = await make_token("citizen")
    body = vehicle_payload(plate="서울 12 가 3456".replace("12", str(10 + hash(h["X-Subject"]) % 60)))
    r = await client.post("/v1/vehicles", json=body, headers=h)
    assert r.status == 201, await r.text()
    v = await r.json()
    assert v["owner_id"] == h["X-Subject"]
    assert v["plate"] == body["plate"].replace(" ", "")
    assert r.headers["Location"] == f"/v1/vehicles/{v['id']}"
    r = await client.get(f"/v1/vehicles/{v['id']}", headers=h)
    assert (await r.json())["vin"] == body["vin"]
    r = await client.get("/v1/vehicles", headers=h)
    assert [x["id"] for x in (await r.json())["vehicles"]] == [v["id"]]


async def test_used_car_and_emission_certificate(client: TestClient, make_token: TokenFactory) -> None:
    h = await make_token("citizen")
    body = vehicle_payload(
        acquired_date="2021-06-01", acquired_odometer_km=45000, emission_certificate="GMY-HD-21-19"
    )
    r = await client.post("/v1/vehicles", json=body, headers=h)
    assert r.status == 201, await r.text()
    v = await r.json()
    assert v["acquired_odometer_km"] == 45000
    assert v["low_emission_class"] == 1


async def test_refusal_lists_every_failed_rule_and_writes_nothing(
    client: TestClient, make_token: TokenFactory, pool: asyncpg.Pool
) -> None:
    h = await make_token("citizen")
    body = vehicle_payload(
        plate="서울12바3456",
        use="commercial",
        seats=15,
        vehicle_type="van",
        owner_is_registered_owner=False,
        fuel="electric",
    )
    r = await client.post("/v1/vehicles", json=body, headers=h)
    assert r.status == 422
    err = (await r.json())["error"]
    assert err["code"] == "not_eligible"
    codes = {x["code"] for x in err["reasons"]}
    assert {
        "commercial_use",
        "too_many_seats",
        "not_registered_owner",
        "plate_commercial",
        "fuel_not_eligible",
    } <= codes
    assert all(x["message"] and x["message_ko"] for x in err["reasons"])
    assert await _count(pool, h["X-Subject"]) == (0, 0, 0)


@pytest.mark.parametrize(
    ("overrides", "status", "code", "reason"),
    [
        ({"plate": "12X3456"}, 422, "invalid_request", "plate_invalid_format"),
        ({"plate": "12갂3456"}, 422, "invalid_request", "plate_invalid_syllable"),
        ({"vin": "KMHD841CBLU12345I"}, 422, "invalid_request", "vin_invalid_character"),
        ({"vin": "KMH123"}, 422, "invalid_request", "vin_invalid_length"),
        ({"emission_certificate": "XX"}, 422, "invalid_request", "emission_certificate_invalid_format"),
        ({"first_registration_date": "2999-01-01"}, 422, "invalid_request", "date_in_future"),
        (
            {"acquired_date": "2999-01-01", "acquired_odometer_km": 1},
            422,
            "invalid_request",
            "date_in_future",
        ),
        ({"acquired_date": "2020-01-01"}, 422, "invalid_request", "acquisition_incomplete"),
        (
            {"acquired_date": "2010-01-01", "acquired_odometer_km": 5},
            422,
            "invalid_request",
            "acquired_before_registration",
        ),
        ({"seats": "five"}, 422, "invalid_request", "int_parsing"),
        ({"seats": 0}, 422, "invalid_request", "greater_than_equal"),
        ({"fuel": "coal"}, 422, "invalid_request", "literal_error"),
        ({"colour": "red"}, 422, "invalid_request", "extra_forbidden"),
        ({"district": "해운대구"}, 422, "invalid_request", "district_unknown"),
        ({"registration_region": "Tokyo"}, 422, "invalid_request", "region_unknown"),
        ({"owner_is_registered_owner": None}, 422, "invalid_request", "bool_type"),
    ],
)
async def test_bad_fields(
    client: TestClient,
    make_token: TokenFactory,
    pool: asyncpg.Pool,
    overrides: dict[str, Any],
    status: int,
    code: str,
    reason: str,
) -> None:
    h = await make_token("citizen")
    r = await client.post("/v1/vehicles", json=vehicle_payload(**overrides), headers=h)
    assert r.status == status, await r.text()
    err = (await r.json())["error"]
    assert err["code"] == code
    assert reason in {x["code"] for x in err["reasons"]}
    assert await _count(pool, h["X-Subject"]) == (0, 0, 0)


async def test_missing_field(client: TestClient, make_token: TokenFactory) -> None:
    h = await make_token("citizen")
    body = vehicle_payload()
    del body["vin"]
    r = await client.post("/v1/vehicles", json=body, headers=h)
    assert r.status == 422
    reasons = (await r.json())["error"]["reasons"]
    assert {"code": "missing", "field": "vin"}.items() <= reasons[0].items()


@pytest.mark.parametrize(
    ("data", "content_type", "status", "code"),
    [
        (b"{not json", "application/json", 400, "malformed_json"),
        (b'{"seats": NaN}', "application/json", 400, "malformed_json"),
        (b'{"seats": Infinity}', "application/json", 400, "malformed_json"),
        (b"\xff\xfe", "application/json", 400, "malformed_json"),
        (b"[]", "application/json", 422, "invalid_request"),
        (b"null", "application/json", 422, "invalid_request"),
        (b"plate=1", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        (b"{}", "text/plain", 415, "unsupported_media_type"),
    ],
)
async def test_malformed_bodies(
    client: TestClient, make_token: TokenFactory, data: bytes, content_type: str, status: int, code: str
) -> None:
    h = await make_token("citizen")
    r = await client.post("/v1/vehicles", data=data, headers={**h, "Content-Type": content_type})
    assert r.status == status
    assert (await r.json())["error"]["code"] == code


async def test_body_over_one_megabyte(
    client: TestClient, make_token: TokenFactory, pool: asyncpg.Pool
) -> None:
    h = await make_token("citizen")
    big = vehicle_payload(model="x" * (1024 * 1024))
    r = await client.post("/v1/vehicles", json=big, headers=h)
    assert r.status == 413
    assert (await r.json())["error"]["code"] == "body_too_large"
    assert await _count(pool, h["X-Subject"]) == (0, 0, 0)


async def test_same_plate_or_vin_twice_by_the_same_member(client: TestClient, make_token: TokenFactory) -> None:
    """A member's own second enrolment of a car is refused (their own data: no oracle); another
    member's enrolment of the same car is a claim of its own (tests/foundation/test_ownership.py)."""
    h = await make_token("citizen")
    body = vehicle_payload()
    assert (await client.post("/v1/vehicles", json=body, headers=h)).status == 201
    r = await client.post("/v1/vehicles", json={**body, "vin": random_vin()}, headers=h)
    assert r.status == 409
    assert (await r.json())["error"]["code"] == "plate_already_enrolled"
    # the region prefix does not make it another car
    r = await client.post(
        "/v1/vehicles", json={**body, "plate": "서울" + body["plate"], "vin": random_vin()}, headers=h
    )
    if len(body["plate"]) == 7:  # regional form exists only for 2-digit plates
        assert r.status == 409
    r = await client.post("/v1/vehicles", json={**body, "plate": random_plate()}, headers=h)
    assert r.status == 409
    assert (await r.json())["error"]["code"] == "vin_already_enrolled"


async def test_participation_lifecycle_and_re_enrolment(client: TestClient, make_token: TokenFactory) -> None:
    h = await make_token("citizen")
    body = vehicle_payload()
    v = await enrol_verified(client, make_token, h, body)
    r = await client.post(f"/v1/vehicles/{v['id']}/participations", json={"program": "annual"}, headers=h)
    assert r.status == 201, await r.text()
    p = await r.json()
    assert p["rule_set"] == "seoul-2026"
    assert p["status"] == "active"
    r = await client.post(f"/v1/vehicles/{v['id']}/participations", json={}, headers=h)
    assert r.status == 409
    assert (await r.json())["error"]["code"] == "participation_exists"

    r = await client.post(
        f"/v1/participations/{p['id']}/end", json={"reason": "ownership_transfer"}, headers=h
    )
    assert r.status == 200
    assert (await r.json())["end_reason"] == "ownership_transfer"
    r = await client.post(f"/v1/participations/{p['id']}/end", json={"reason": "withdrawn"}, headers=h)
    assert r.status == 409
    assert (await r.json())["error"]["code"] == "participation_already_ended"
    v2 = await (await client.get(f"/v1/vehicles/{v['id']}", headers=h)).json()
    assert v2["status"] == "retired"
    r = await client.post(f"/v1/vehicles/{v['id']}/participations", json={}, headers=h)
    assert r.status == 409

    # the next owner enrols the same car, and is verified without any transfer to make
    buyer = await make_token("citizen")
    assert (await enrol_verified(client, make_token, buyer, body))["status"] == "active"


@pytest.mark.parametrize("reason", ["moved_out_of_seoul", "scrapped", "withdrawn"])
async def test_end_reasons(client: TestClient, make_token: TokenFactory, reason: str) -> None:
    h = await make_token("citizen")
    v = await enrol_verified(client, make_token, h)
    p = await (await client.post(f"/v1/vehicles/{v['id']}/participations", json={}, headers=h)).json()
    r = await client.post(f"/v1/participations/{p['id']}/end", json={"reason": reason}, headers=h)
    assert r.status == 200
    v2 = await (await client.get(f"/v1/vehicles/{v['id']}", headers=h)).json()
    assert v2["status"] == ("active" if reason == "withdrawn" else "retired")


async def test_end_reason_and_date_validated(client: TestClient, make_token: TokenFactory) -> None:
    h = await make_token("citizen")
    v = await enrol_verified(client, make_token, h)
    p = await (await client.post(f"/v1/vehicles/{v['id']}/participations", json={}, headers=h)).json()
    r = await client.post(f"/v1/participations/{p['id']}/end", json={"reason": "bored"}, headers=h)
    assert r.status == 422
    future = (seoul_today() + timedelta(days=3)).isoformat()
    r = await client.post(
        f"/v1/participations/{p['id']}/end", json={"reason": "withdrawn", "date": future}, headers=h
    )
    assert (await r.json())["error"]["reasons"][0]["code"] == "date_in_future"
    r = await client.post(
        f"/v1/participations/{p['id']}/end", json={"reason": "withdrawn", "date": "2020-01-01"}, headers=h
    )
    assert (await r.json())["error"]["code"] == "end_before_start"


async def test_season_participation(client: TestClient, make_token: TokenFactory) -> None:
    h = await make_token("citizen")
    v = await enrol_verified(client, make_token, h)
    today = seoul_today()
    closed_year = today.year - 1 if today.month < 12 else today.year
    r = await client.post(
        f"/v1/vehicles/{v['id']}/participations",
        json={"program": "season", "season_year": closed_year},
        headers=h,
    )
    assert r.status == 422
    assert (await r.json())["error"]["code"] == "season_enrolment_closed"
    r = await client.post(
        f"/v1/vehicles/{v['id']}/participations",
        json={"program": "season", "season_year": today.year + 1},
        headers=h,
    )
    assert r.status == 201
    assert (await r.json())["season_year"] == today.year + 1


async def test_baseline_override_is_for_operators(client: TestClient, make_token: TokenFactory) -> None:
    h = await make_token("citizen")
    op = await make_token("operator")
    v = await enrol_verified(client, make_token, h)
    r = await client.post(
        f"/v1/vehicles/{v['id']}/participations", json={"baseline_daily_km": "31.5"}, headers=h
    )
    assert r.status == 403
    r = await client.post(
        f"/v1/vehicles/{v['id']}/participations", json={"baseline_daily_km": "31.5"}, headers=op
    )
    assert r.status == 201
    assert (await r.json())["baseline_daily_km"] == "31.5000"


async def test_operator_enrols_for_an_owner(client: TestClient, make_token: TokenFactory) -> None:
    op = await make_token("operator")
    r = await client.post("/v1/vehicles", json=vehicle_payload(), headers=op)
    assert r.status == 422
    r = await client.post("/v1/vehicles", json=vehicle_payload(owner_id="owner-by-operator-1"), headers=op)
    assert r.status == 201
    assert (await r.json())["owner_id"] == "owner-by-operator-1"


async def test_enrolment_is_audited(client: TestClient, make_token: TokenFactory, pool: asyncpg.Pool) -> None:
    h = await make_token("citizen")
    v = await (
        await client.post(
            "/v1/vehicles",
            json=vehicle_payload(),
            headers=h,
        )
    ).json()
    row = await pool.fetchrow(
        "select * from audit_log where entity = 'vehicle' and entity_id = $1", str(v["id"])
    )
    assert row is not None
    assert row["action"] == "vehicle.enrol"
    assert row["actor_role"] == "citizen"
    assert row["after"]["vin"] == v["vin"]
    # the service's role may only add to the log (tests/foundation/test_least_privilege.py)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await pool.execute("update audit_log set action = 'x' where id = $1", row["id"])
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await pool.execute("delete from audit_log where id = $1", row["id"])
