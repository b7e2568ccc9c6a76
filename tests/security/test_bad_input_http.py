"""Hostile JSON over real HTTP against a real service process (issue 18, item 4).

Whatever the body — 100,000 `[`, thousands of nesting levels, numbers beyond a double, NUL or
lone surrogates in strings, an odometer of 1e30 km, a reading from year 0001 with an offset —
every route answers a 4xx with a machine-readable reason and stores nothing. Deterministic probes
of the shapes the attack run used, then a hypothesis fuzz of the same shapes mixed together.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import LiveService, cli_token
from tests.telematics.conftest import Car, Provider, enrol_cars, make_provider, signed_headers

#: Tables whose row count must not move when a request is refused.
TABLES = (
    "owners",
    "vehicles",
    "participations",
    "vehicle_consents",
    "readings",
    "quarantined_readings",
    "provider_events",
    "provider_request_signatures",
    "disputes",
    "photo_submissions",
    "audit_log",
    "api_tokens",
    "outbox",
)
_COUNT_SQL = "select array[" + ", ".join(f"(select count(*) from {t})" for t in TABLES) + "]"

#: Every operation that reads a JSON body, with a role allowed to call it (ids need not exist:
#: the body is read and checked before the handler looks anything up).
JSON_ROUTES: list[tuple[str, str]] = [
    ("/v1/vehicles", "citizen"),
    ("/v1/vehicles/1/participations", "citizen"),
    ("/v1/participations/1/end", "citizen"),
    ("/v1/vehicles/1/consents", "citizen"),
    ("/v1/disputes/claim", "reviewer"),
    ("/v1/disputes/1/claim", "reviewer"),
    ("/v1/disputes/1/renew", "reviewer"),
    ("/v1/disputes/1/release", "reviewer"),
    ("/v1/disputes/1/resolve", "reviewer"),
    ("/v1/readings/1/corrections", "operator"),
]


@dataclass
class World:
    url: str
    database_url: str
    tokens: dict[str, str]
    provider: Provider
    car: Car

    def counts(self) -> list[int]:
        async def run() -> list[int]:
            conn = await asyncpg.connect(self.database_url)
            try:
                return list(await conn.fetchval(_COUNT_SQL))
            finally:
                await conn.close()

        return asyncio.run(run())

    def post_json(self, path: str, role: str, body: bytes) -> requests.Response:
        return requests.post(
            self.url + path,
            data=body,
            headers={"Authorization": f"Bearer {self.tokens[role]}", "Content-Type": "application/json"},
            timeout=30,
        )

    def post_signed(self, path: str, body: bytes) -> requests.Response:
        # The same body signed twice within a second is a replay (409): a 4xx like any other.
        return requests.post(
            f"{self.url}/v1/providers/{self.provider.name}/{path}",
            data=body,
            headers=signed_headers(self.provider.secret, body),
            timeout=30,
        )


@pytest.fixture(scope="module")
def world(live_service: LiveService) -> Iterator[World]:
    async def setup() -> tuple[Provider, Car]:
        conn = await asyncpg.connect(live_service.database_url)
        try:
            provider = await make_provider(conn)
            (car,) = await enrol_cars(conn, 1, [provider])
            return provider, car
        finally:
            await conn.close()

    provider, car = asyncio.run(setup())
    tokens = {
        role: cli_token(live_service.database_url, role, f"hostile-{role}-{uuid.uuid4().hex[:6]}")
        for role in ("citizen", "reviewer", "operator")
    }
    yield World(live_service.url, live_service.database_url, tokens, provider, car)


def _error(r: requests.Response) -> dict[str, Any]:
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:500])
    body: dict[str, Any] = r.json()["error"]
    assert body["code"], body
    return body


def _nested(depth: int, inner: str = "1") -> bytes:
    return ("[" * depth + inner + "]" * depth).encode()


#: (body, expected error code) for every JSON route.
HOSTILE_BODIES: list[tuple[bytes, str]] = [
    (b"[" * 100_000, "too_deeply_nested"),
    (_nested(5000), "too_deeply_nested"),
    (b'{"a": ' + _nested(40) + b"}", "too_deeply_nested"),
    (b'{"value_km": 1e400}', "number_out_of_range"),
    (b'{"value_km": ' + b"9" * 5000 + b"}", "number_out_of_range"),
    (b'{"value_km": NaN}', "malformed_json"),
    (b'{"note": "a\\u0000b"}', "nul_in_string"),
    (b'{"a\\u0000": 1}', "nul_in_string"),
    (b'{"note": "\\ud800"}', "malformed_json"),
    (b'{"note": "\xff\xfe"}', "malformed_json"),
    (b"", "malformed_json"),
]


def test_hostile_json_on_every_route_is_a_4xx_with_its_reason(world: World) -> None:
    before = world.counts()
    for path, role in JSON_ROUTES:
        for body, code in HOSTILE_BODIES:
            r = world.post_json(path, role, body)
            assert r.status_code == 400, (path, body[:40], r.status_code, r.text[:300])
            err = _error(r)
            assert err["code"] == code, (path, body[:40], err)
            assert err["reasons"][0]["code"] == code
    assert world.counts() == before


def _reading(world: World, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": uuid.uuid4().hex,
        "vin": world.car.vin,
        "odometer": {"value": 1234.5, "unit": "km"},
        "recorded_at": "2026-01-02T03:04:05+09:00",
    }
    body.update(overrides)
    return body


def _batch(*readings: dict[str, Any]) -> bytes:
    return json.dumps({"readings": list(readings)}).encode()


def test_hostile_provider_batches_are_a_4xx_and_store_nothing(world: World) -> None:
    before = world.counts()
    cases: list[tuple[str, bytes]] = [
        ("too_deeply_nested", b"[" * 100_000),
        ("too_deeply_nested", b'{"readings": ' + _nested(5000) + b"}"),
        ("odometer 1e30 km", _batch(_reading(world, odometer={"value": 1e30, "unit": "km"}))),
        ("odometer 1e30 as text", b'{"readings": [' + json.dumps(_reading(world)).replace('1234.5', "1e30").encode() + b"]}"),
        ("odometer 1e400", b'{"readings": [' + json.dumps(_reading(world)).replace('1234.5', "1e400").encode() + b"]}"),
        ("year 0001 with an offset", _batch(_reading(world, recorded_at="0001-01-01T00:00:00+09:00"))),
        ("year 9999 with a negative offset", _batch(_reading(world, recorded_at="9999-12-31T23:59:59-14:00"))),
        ("deep inside a reading", _batch(_reading(world, odometer=json.loads(_nested(200).decode())))),
        ("NaN", b'{"readings": [{"odometer": NaN}]}'),
    ]
    for name, body in cases:
        r = world.post_signed("readings", body)
        err = _error(r)
        assert err["reasons"], (name, err)
        assert r.status_code in (400, 413, 422), (name, r.status_code, err)
    for body in (b"[" * 100_000, b'{"vins": ' + _nested(5000, '"X"') + b"}"):
        r = world.post_signed("consent-withdrawals", body)
        assert r.status_code == 400, r.text[:300]
        assert _error(r)["code"] == "too_deeply_nested"
    assert world.counts() == before


# -- the fuzz -----------------------------------------------------------------------------------

_scalars = st.one_of(
    st.sampled_from(
        ["1e30", "1e400", "-1e400", "NaN", "Infinity", "-0", "1" * 400, "0.1e-400", '"\\u0000"', '"\\ud800"',
         '"0001-01-01T00:00:00+09:00"', '"9999-12-31T23:59:59-14:00"', '"2026-02-30T00:00:00Z"', "null", "true",
         '"km"', '"mi"', '"m"', "{}", "[]"]
    ),
    st.integers().map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.text(max_size=20).map(json.dumps),
)


@st.composite
def _json_text(draw: st.DrawFn, depth: int = 0) -> str:
    """JSON-ish text: mostly valid structure, hostile leaves, sometimes very deep or cut short."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        n = draw(st.sampled_from([33, 200, 1000, 5000, 100_000]))
        opener = draw(st.sampled_from(["[", '{"a":']))
        closer = "]" if opener == "[" else "}"
        return opener * n + (draw(_scalars) + closer * n if draw(st.booleans()) else "")
    if depth > 3 or kind < 4:
        return str(draw(_scalars))
    if kind < 7:
        items = draw(st.lists(_json_text(depth + 1), max_size=4))
        return "[" + ", ".join(items) + "]"
    keys = draw(
        st.lists(
            st.sampled_from(["readings", "odometer", "value", "unit", "recorded_at", "vin", "event_id", "value_km",
                             "action", "note", "plate", "provider", "timestamp", "vehicle", "signals", "body"]),
            max_size=4,
            unique=True,
        )
    )
    return "{" + ", ".join(f'"{k}": {draw(_json_text(depth + 1))}' for k in keys) + "}"


@st.composite
def _provider_batch(draw: st.DrawFn) -> str:
    """A batch of canonical-looking readings whose fields are hostile."""
    readings = []
    for _ in range(draw(st.integers(1, 3))):
        fields = {
            "event_id": json.dumps(uuid.uuid4().hex),
            "vin": draw(st.sampled_from(['"KMHXX00XXXX000001"', '"X"', '""'])),
            "odometer": '{"value": ' + draw(_scalars) + ', "unit": ' + draw(_scalars) + "}",
            "recorded_at": draw(_scalars),
        }
        if draw(st.booleans()):
            fields[draw(st.sampled_from(list(fields)))] = draw(_json_text())
        readings.append("{" + ", ".join(f'"{k}": {v}' for k, v in fields.items()) + "}")
    return '{"readings": [' + ", ".join(readings) + "]}"


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
@given(
    target=st.sampled_from([*JSON_ROUTES, ("readings", "provider"), ("consent-withdrawals", "provider")]),
    text=st.one_of(_json_text(), _provider_batch()),
    truncate=st.booleans(),
)
def test_fuzzed_json_never_answers_5xx(world: World, target: tuple[str, str], text: str, truncate: bool) -> None:
    body = text.encode("utf-8", "surrogatepass")
    if truncate and len(body) > 2:
        body = body[: len(body) // 2]
    before = world.counts()
    path, role = target
    r = world.post_signed(path, body) if role == "provider" else world.post_json(path, role, body)
    assert r.status_code < 500, (path, body[:200], r.status_code, r.text[:300])
    if r.status_code >= 400:
        _error(r)
        assert world.counts() == before, (path, body[:200])
