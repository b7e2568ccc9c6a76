"""Smartcar webhook deliveries, exactly as Smartcar documents and sends them, signed and answered
with Smartcar's own SDK (`smartcar` on PyPI), against a real `carmileage serve` and PostgreSQL.

The SDK's `verify_payload(amt, signature, body)` is `hash_challenge(amt, body) == signature`, so
`hash_challenge(amt, body)` is what Smartcar puts in `SC-Signature`; each test also asks the SDK
whether it would accept what it sends, so a test cannot pass on a signature the SDK disowns.
Payload shapes: https://smartcar.com/docs/api-reference/webhooks/events/vehicle-state,
…/events/vehicle-error, https://smartcar.com/docs/integrations/webhooks/callback-verification.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import smartcar
from hypothesis import given
from hypothesis import strategies as st

from telematics import signatures
from tests.conftest import ROOT, LiveService, cli_token, service_url
from tests.telematics.conftest import Car, Provider, enrol_cars

# -- payloads as Smartcar documents them ------------------------------------------------------------


def amt() -> str:
    """An Application Management Token (Smartcar's are UUID-like strings)."""
    return str(uuid.uuid4())


def signal(code: str, group: str, name: str, body: dict[str, Any], at_ms: int) -> dict[str, Any]:
    return {"code": code, "name": name, "group": group, "body": body,
            "meta": {"oemUpdatedAt": at_ms, "fetchedAt": at_ms + 2000}}


def vehicle_state(
    vehicle_id: str,
    odometer: dict[str, Any] | None,
    at: datetime,
    *,
    vin: str | None = None,
    event_id: str | None = None,
    odometer_status: bool = False,
) -> dict[str, Any]:
    """A VEHICLE_STATE event (webhook payload version 4.0) with the odometer among other signals."""
    ms = int(at.timestamp() * 1000)
    signals = [
        signal("tractionbattery-stateofcharge", "TractionBattery", "StateOfCharge", {"unit": "percent", "value": 78}, ms),
        signal("location-preciselocation", "Location", "PreciseLocation",
               {"latitude": 37.5665, "longitude": 126.978, "heading": 0, "direction": "N"}, ms),
    ]
    if odometer is not None:
        signals.append(signal("odometer-traveleddistance", "Odometer", "TraveledDistance", odometer, ms))
    if odometer_status:
        signals.append({"code": "odometer-traveleddistance", "name": "TraveledDistance", "group": "Odometer",
                        "status": {"error": {"code": "VEHICLE_NOT_CAPABLE", "type": "COMPATIBILITY"},
                                   "value": "ERROR"}})
    if vin is not None:
        signals.append(signal("vehicleidentification-vin", "VehicleIdentification", "VIN", {"value": vin}, ms))
    return {
        "eventId": event_id or str(uuid.uuid4()),
        "eventType": "VEHICLE_STATE",
        "vehicleId": vehicle_id,
        "data": {
            "user": {"id": str(uuid.uuid4())},
            "vehicle": {"id": vehicle_id, "make": "HYUNDAI", "model": "IONIQ 5", "year": 2023},
            "triggers": [{"code": "odometer-traveleddistance", "name": "TraveledDistance", "group": "Odometer"}],
            "signals": signals,
        },
        "meta": _meta(signal_count=len(signals)),
    }


def vehicle_error(vehicle_id: str) -> dict[str, Any]:
    return {
        "eventId": str(uuid.uuid4()),
        "eventType": "VEHICLE_ERROR",
        "vehicleId": vehicle_id,
        "data": {
            "user": {"id": str(uuid.uuid4())},
            "vehicle": {"id": vehicle_id, "make": "HYUNDAI", "model": "IONIQ 5", "year": 2023},
            "errors": [{
                "type": "VEHICLE_STATE", "code": "UNREACHABLE", "state": "ERROR",
                "description": "The vehicle is not connected to the internet.",
                "suggestedUserMessage": "Your car is offline.",
                "resolution": {"type": "RETRY_LATER"},
                "signals": [{"code": "odometer-traveleddistance", "name": "TraveledDistance", "group": "Odometer"}],
            }],
        },
        "meta": _meta(),
    }


def _meta(**extra: Any) -> dict[str, Any]:
    return {"version": "4.0", "deliveryId": str(uuid.uuid4()),
            "deliveredAt": int(datetime.now(UTC).timestamp() * 1000),
            "webhookId": "abde94ff-d57d-43b9-8d09-6020db2d977a", "webhookName": "Odometer", "mode": "LIVE", **extra}


def redelivered(event: dict[str, Any]) -> dict[str, Any]:
    """Smartcar's retry of an event: the same eventId, a new deliveryId and deliveredAt."""
    return {**event, "meta": {**event["meta"], "deliveryId": str(uuid.uuid4()),
                              "deliveredAt": event["meta"]["deliveredAt"] + 25_000}}


def sign(key: str, body: str) -> str:
    """`SC-Signature` as Smartcar computes it: the SDK's own HMAC helper over the body."""
    sig = smartcar.hash_challenge(key, body)
    assert smartcar.verify_payload(key, sig, body)
    return sig


# -- the running service and an onboarded aggregator -------------------------------------------------


@dataclass
class Aggregator:
    provider: Provider
    key: str
    url: str


def cli(live: LiveService, tmp: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """The real CLI against the live service's database (no broker of the developer's touched)."""
    return subprocess.run(
        [sys.executable, "-m", "ingest.cli", *args],
        env={**os.environ, "CARMILEAGE_DATABASE_URL": service_url(live.database_url),
             "CARMILEAGE_BROKER_DIR": str(tmp), "CARMILEAGE_PUBLIC_URL": live.url},
        cwd=ROOT, input=stdin, capture_output=True, text=True, timeout=60,
    )


@pytest.fixture
async def db(live_service: LiveService) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(service_url(live_service.database_url), min_size=1, max_size=2)
    yield pool
    await pool.close()


@pytest.fixture
def aggregator(live_service: LiveService, tmp_path: Path) -> Iterator[Aggregator]:
    """Onboarded as docs/providers.md says: `providers add NAME --webhook smartcar --webhook-key-file -`."""
    name, key = f"smartcar-{uuid.uuid4().hex[:8]}", amt()
    out = cli(live_service, tmp_path, "providers", "add", name, "--webhook", "smartcar",
              "--webhook-key-file", "-", "--json", stdin=key + "\n")
    assert out.returncode == 0, out.stderr
    created = json.loads(out.stdout)
    url = f"{live_service.url}/v1/providers/{name}/webhooks/smartcar"
    assert created["webhook"] == {"scheme": "smartcar", "url": url}
    assert key not in out.stdout  # the key is the operator's to keep, never echoed
    yield Aggregator(Provider(created["id"], name, created["http"]["secret"], created["mqtt"]["password"]), key, url)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
        yield s


async def deliver(
    http: aiohttp.ClientSession, agg: Aggregator, event: dict[str, Any] | str, signature: str | None = "sign"
) -> tuple[int, Any]:
    body = event if isinstance(event, str) else json.dumps(event)
    headers = {"Content-Type": "application/json", "User-Agent": "Smartcar/4.0"}
    if signature == "sign":
        headers["SC-Signature"] = sign(agg.key, body)
    elif signature is not None:
        headers["SC-Signature"] = signature
    async with http.post(agg.url, data=body.encode(), headers=headers) as r:
        return r.status, await r.json()


async def stored(db: asyncpg.Pool, agg: Aggregator, event_id: str) -> dict[str, Any]:
    """What the database holds for this provider event: its reading, quarantine row, event row."""
    return {
        "readings": await db.fetchval(
            "select count(*) from readings where provider_id = $1 and provider_event_id = $2", agg.provider.id, event_id),
        "events": await db.fetchval(
            "select count(*) from provider_events where provider_id = $1 and event_id = $2", agg.provider.id, event_id),
        "quarantined": await db.fetchval(
            "select count(*) from quarantined_readings where provider_id = $1 and provider_event_id = $2",
            agg.provider.id, event_id),
    }


NOTHING = {"readings": 0, "events": 0, "quarantined": 0}


async def car_for(db: asyncpg.Pool, agg: Aggregator) -> Car:
    async with db.acquire() as conn:
        (car,) = await enrol_cars(conn, 1, [agg.provider])
    return car


def an_hour_ago() -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


# -- the tests ----------------------------------------------------------------------------------------


async def test_the_verification_challenge_is_answered_as_the_sdk_computes_it(
    http: aiohttp.ClientSession, aggregator: Aggregator
) -> None:
    challenge = secrets.token_urlsafe(24)
    v4 = {"eventId": str(uuid.uuid4()), "eventType": "VERIFY", "data": {"challenge": challenge}, "meta": _meta()}
    v2 = {"version": "2.0", "webhookId": str(uuid.uuid4()), "eventName": "verify", "payload": {"challenge": challenge}}
    expected = {"challenge": smartcar.hash_challenge(aggregator.key, challenge)}
    for event in (v4, v2):
        for signature in (None, "sign"):  # Smartcar's docs do not say a VERIFY is signed: both work
            assert await deliver(http, aggregator, event, signature) == (200, expected)
    # A wrongly signed challenge is refused, and so is an unsigned one that is not a plain token:
    # its answer would be a valid SC-Signature for a body of the sender's choosing.
    status, answer = await deliver(http, aggregator, v4, sign(amt(), json.dumps(v4)))
    assert (status, answer["error"]["reasons"][0]["code"]) == (401, "signature_invalid")
    forged = json.dumps(vehicle_state("x", {"unit": "kilometers", "value": 1}, an_hour_ago()))
    trick = {**v4, "data": {"challenge": forged}}
    status, answer = await deliver(http, aggregator, trick, None)
    assert (status, answer["error"]["reasons"][0]["code"]) == (401, "signature_missing")


async def test_a_signed_vehicle_state_is_stored_after_commit_and_readable(
    http: aiohttp.ClientSession, aggregator: Aggregator, db: asyncpg.Pool, live_service: LiveService
) -> None:
    car = await car_for(db, aggregator)
    at = an_hour_ago()
    event = vehicle_state(str(uuid.uuid4()), {"unit": "kilometers", "value": 12345.6}, at, vin=car.vin)
    status, answer = await deliver(http, aggregator, event)
    assert (status, answer) == (200, {"event_id": event["eventId"], "accepted": 1, "duplicates": 0,
                                      "quarantined": [], "ignored": None})
    # The 200 came after the commit: the reading is there, readable through the API.
    headers = {"Authorization": "Bearer " + cli_token(live_service.database_url, "operator", "op-smartcar")}
    async with http.get(f"{live_service.url}/v1/vehicles/{car.id}/readings", headers=headers) as r:
        assert r.status == 200
        (reading,) = (await r.json())["readings"]
    assert reading["odometer_m"] == 12_345_600
    assert reading["status"] == "verified"
    assert datetime.fromisoformat(reading["recorded_at"]) == at  # meta.oemUpdatedAt, when the car recorded it
    row = await db.fetchrow(
        "select original_value, original_unit from readings where provider_id = $1 and provider_event_id = $2",
        aggregator.provider.id, event["eventId"])
    assert row is not None
    assert (row["original_value"], row["original_unit"]) == (Decimal("12345.6"), "km")


async def test_miles_are_converted_with_the_international_mile(
    http: aiohttp.ClientSession, aggregator: Aggregator, db: asyncpg.Pool
) -> None:
    car = await car_for(db, aggregator)
    event = vehicle_state("v-miles", {"unit": "miles", "value": 7671.3}, an_hour_ago(), vin=car.vin)
    assert (await deliver(http, aggregator, event))[1]["accepted"] == 1
    metres = await db.fetchval("select odometer_m from readings where provider_id = $1 and provider_event_id = $2",
                               aggregator.provider.id, event["eventId"])
    assert metres == 12_345_761  # 7671.3 × 1609.344 = 12,345,760.6272 m, rounded half up to whole metres


async def test_without_a_unit_the_odometer_is_metric_unless_the_unit_system_says_imperial(
    http: aiohttp.ClientSession, aggregator: Aggregator, db: asyncpg.Pool
) -> None:
    """Smartcar's odometer is in kilometres by default (its `SC-Unit-System` is metric unless
    imperial is asked for); the body's own unit, when present, always decides."""
    cases = [({}, "km", 100_000), ({"SC-Unit-System": "imperial"}, "mi", 160_934)]
    for extra, unit, metres in cases:
        car = await car_for(db, aggregator)  # a car each: 100 km and 100 mi are not one car's readings
        event = vehicle_state("v-unit", {"value": 100}, an_hour_ago(), vin=car.vin)
        body = json.dumps(event)
        headers = {"Content-Type": "application/json", "SC-Signature": sign(aggregator.key, body), **extra}
        async with http.post(aggregator.url, data=body.encode(), headers=headers) as r:
            assert r.status == 200, await r.text()
        row = await db.fetchrow(
            "select odometer_m, original_unit from readings where provider_id = $1 and provider_event_id = $2",
            aggregator.provider.id, event["eventId"])
        assert row is not None
        assert (row["original_unit"], row["odometer_m"]) == (unit, metres)


async def test_the_webhook_key_is_sealed_at_rest(aggregator: Aggregator, db: asyncpg.Pool) -> None:
    sealed = await db.fetchval("select key_sealed from provider_webhook_keys where provider_id = $1",
                               aggregator.provider.id)
    assert sealed.startswith("v1.")
    assert aggregator.key not in sealed


async def test_a_tampered_body_is_refused_401_with_its_reason_and_nothing_is_stored(
    http: aiohttp.ClientSession, aggregator: Aggregator, db: asyncpg.Pool
) -> None:
    car = await car_for(db, aggregator)
    event = vehicle_state("v-tamper", {"unit": "kilometers", "value": 20000}, an_hour_ago(), vin=car.vin)
    body = json.dumps(event)
    signature = sign(aggregator.key, body)
    tampered = body.replace('"value": 20000', '"value": 2000')
    assert tampered != body
    assert not smartcar.verify_payload(aggregator.key, signature, tampered)  # the SDK refuses it too
    status, answer = await deliver(http, aggregator, tampered, signature)
    assert status == 401
    assert answer["error"]["code"] == "unauthenticated"
    assert [r["code"] for r in answer["error"]["reasons"]] == ["signature_invalid"]
    assert await stored(db, aggregator, event["eventId"]) == NOTHING


async def test_a_wrong_key_a_missing_or_malformed_signature_and_an_unknown_provider_are_refused(
    http: aiohttp.ClientSession, aggregator: Aggregator, db: asyncpg.Pool, live_service: LiveService
) -> None:
    car = await car_for(db, aggregator)
    event = vehicle_state("v-keys", {"unit": "kilometers", "value": 30000}, an_hour_ago(), vin=car.vin)
    body = json.dumps(event)
    other_key = amt()
    assert smartcar.verify_payload(other_key, sign(other_key, body), body)
    cases = {
        "signature_invalid": sign(other_key, body),  # signed by another application's token
        "signature_missing": None,
        "signature_malformed": "sha256=" + sign(aggregator.key, body),  # our own batches' format, not Smartcar's
    }
    for code, signature in cases.items():
        status, answer = await deliver(http, aggregator, body, signature)
        assert (status, [r["code"] for r in answer["error"]["reasons"]]) == (401, [code]), code
    nobody = Aggregator(aggregator.provider, aggregator.key, f"{live_service.url}/v1/providers/nosuchprovider/webhooks/smartcar")
    status, answer = await deliver(http, nobody, body)
    assert (status, answer["error"]["reasons"][0]["code"]) == (401, "unknown_provider")
    assert await stored(db, aggregator, event["eventId"]) == NOTHING


async def test_retries_and_replays_of_an_event_are_stored_once(
    http: aiohttp.ClientSession, aggregator: Aggregator, db: asyncpg.Pool
) -> None:
    car = await car_for(db, aggregator)
    event = vehicle_state("v-retry", {"unit": "kilometers", "value": 40000}, an_hour_ago(), vin=car.vin)
    body = json.dumps(event)
    assert (await deliver(http, aggregator, body))[1]["accepted"] == 1
    # The same bytes again (a replay: Smartcar's signature has no timestamp) and Smartcar's retry
    # (same eventId, new deliveryId, so another body and signature): both duplicates.
    for again in (body, json.dumps(redelivered(event))):
        status, answer = await deliver(http, aggregator, again)
        assert (status, answer["accepted"], answer["duplicates"]) == (200, 0, 1)
    assert await stored(db, aggregator, event["eventId"]) == {"readings": 1, "events": 1, "quarantined": 0}


async def test_events_without_an_odometer_value_are_acknowledged_and_store_nothing(
    http: aiohttp.ClientSession, aggregator: Aggregator, db: asyncpg.Pool
) -> None:
    car = await car_for(db, aggregator)
    cases = {
        "no_odometer_signal": vehicle_state("v-none", None, an_hour_ago(), vin=car.vin),
        "odometer_unavailable": vehicle_state("v-none", None, an_hour_ago(), vin=car.vin, odometer_status=True),
        "no_odometer_in_event": vehicle_error("v-none"),
    }
    for reason, event in cases.items():
        status, answer = await deliver(http, aggregator, event)
        assert status == 200, answer  # a 2xx: Smartcar would otherwise retry an event that never has one
        assert (answer["accepted"], answer["duplicates"], answer["ignored"]["code"]) == (0, 0, reason)
        assert await stored(db, aggregator, event["eventId"]) == NOTHING


async def test_a_smartcar_vehicle_id_is_mapped_through_the_providers_links(
    http: aiohttp.ClientSession, aggregator: Aggregator, db: asyncpg.Pool, live_service: LiveService, tmp_path: Path
) -> None:
    car = await car_for(db, aggregator)
    vehicle_id = str(uuid.uuid4())
    event = vehicle_state(vehicle_id, {"unit": "kilometers", "value": 50000}, an_hour_ago())  # no VIN signal
    status, answer = await deliver(http, aggregator, event)
    assert (status, answer["error"]["code"]) == (422, "vehicle_not_linked")
    assert await stored(db, aggregator, event["eventId"]) == NOTHING
    out = cli(live_service, tmp_path, "providers", "link", aggregator.provider.name, vehicle_id, car.vin)
    assert out.returncode == 0, out.stderr
    # Smartcar's retry after the refusal is stored against the linked car.
    status, answer = await deliver(http, aggregator, redelivered(event))
    assert (status, answer["accepted"]) == (200, 1), answer
    vehicle = await db.fetchval("select vehicle_id from readings where provider_id = $1 and provider_event_id = $2",
                                aggregator.provider.id, event["eventId"])
    assert vehicle == car.id


async def test_without_consent_the_reading_is_quarantined_not_verified(
    http: aiohttp.ClientSession, aggregator: Aggregator, db: asyncpg.Pool
) -> None:
    async with db.acquire() as conn:
        (car,) = await enrol_cars(conn, 1)  # no consent to this provider
    event = vehicle_state("v-consent", {"unit": "kilometers", "value": 60000}, an_hour_ago(), vin=car.vin)
    status, answer = await deliver(http, aggregator, event)
    assert (status, answer["accepted"], answer["quarantined"]) == (200, 0, ["consent_missing"])


# -- our verification against the SDK's, without a server -------------------------------------------


@given(key=st.text(min_size=1, max_size=60), body=st.text(max_size=300), other=st.text(min_size=1, max_size=60))
def test_our_verification_accepts_exactly_what_the_sdk_accepts(key: str, body: str, other: str) -> None:
    sdk_signature = smartcar.hash_challenge(key, body)
    raw = body.encode()
    assert signatures.smartcar_signature(key, raw) == sdk_signature
    assert signatures.verify_smartcar([key], sdk_signature, raw).ok
    forged = smartcar.hash_challenge(other, body)
    assert signatures.verify_smartcar([key], forged, raw).ok == smartcar.verify_payload(key, forged, body)
    assert signatures.smartcar_challenge_answer(key, body) == smartcar.hash_challenge(key, body)


async def test_a_provider_without_a_webhook_key_is_refused_until_the_operator_sets_one(
    http: aiohttp.ClientSession, live_service: LiveService, tmp_path: Path
) -> None:
    name = f"agg-{uuid.uuid4().hex[:8]}"
    out = cli(live_service, tmp_path, "providers", "add", name, "--json")
    assert out.returncode == 0, out.stderr
    created = json.loads(out.stdout)
    assert created["webhook"] is None
    agg = Aggregator(Provider(created["id"], name, "", ""), amt(),
                     f"{live_service.url}/v1/providers/{name}/webhooks/smartcar")
    challenge = secrets.token_hex(16)
    verify = {"eventId": str(uuid.uuid4()), "eventType": "VERIFY", "data": {"challenge": challenge}, "meta": _meta()}
    status, answer = await deliver(http, agg, verify)
    assert (status, answer["error"]["reasons"][0]["code"]) == (401, "webhook_not_configured")
    key_file = tmp_path / "amt"
    key_file.write_text(agg.key + "\n")
    out = cli(live_service, tmp_path, "providers", "webhook-key", name, "--scheme", "smartcar", "--key-file", str(key_file))
    assert out.returncode == 0, out.stderr
    assert agg.url in out.stdout
    assert await deliver(http, agg, verify) == (200, {"challenge": smartcar.hash_challenge(agg.key, challenge)})
    # Vehicle data in webhook payload version 2.0 is refused, visibly, rather than guessed at.
    v2 = {"version": "2.0", "webhookId": str(uuid.uuid4()), "eventName": "schedule", "mode": "live",
          "payload": {"vehicles": []}}
    status, answer = await deliver(http, agg, v2)
    assert (status, answer["error"]["code"]) == (422, "unsupported_event")
