"""Hostile provider payloads: whatever bytes arrive, the MQTT parser answers with items (never an
exception, which would stop the consumer of every provider) and the HTTP parser with items or a
`PayloadError` (a 4xx). The shapes of issue 18's attack run first, then fuzzed."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telematics.adapters import raw_text
from telematics.payload import PayloadError, parse_http_batch, parse_mqtt_payload
from telematics.reading import MAX_ITEM_DEPTH, OdometerReading, Rejected

VIN = "KMHXX00XXXX000001"
GOOD = {
    "event_id": "evt-1",
    "vin": VIN,
    "odometer": {"value": 12345, "unit": "km"},
    "recorded_at": "2022-03-01T09:00:00+09:00",
}


def with_value(literal: bytes, unit: str = "km") -> bytes:
    return json.dumps({**GOOD, "odometer": {"value": "@", "unit": unit}}).encode().replace(b'"@"', literal)


def at(recorded_at: str) -> bytes:
    return json.dumps({**GOOD, "recorded_at": recorded_at}).encode()


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


ATTACKS = [
    (nested(3000), "too_deeply_nested"),
    (b"[" * 100_000, "too_deeply_nested"),
    (b'{"a":' * 5000 + b"1" + b"}" * 5000, "too_deeply_nested"),
    (with_value(b"1e30"), "odometer_too_large"),
    (with_value(b"1e999999999", "mi"), "odometer_too_large"),
    (with_value(b"-1e999999999"), "odometer_negative"),
    (with_value(b"9" * 5000), "malformed_json"),
    (at("0001-01-01T00:00:00+09:00"), "time_out_of_range"),
    (at("9999-12-31T23:59:59-09:00"), "time_out_of_range"),
    (at("1970-01-01T00:00:00Z"), "time_out_of_range"),
    (json.dumps({"vin": VIN, "odometer": {"value": 1, "unit": "km"}, "timestamp": 0}).encode(), "time_out_of_range"),
]


@pytest.mark.parametrize(("raw", "code"), ATTACKS, ids=[c for _, c in ATTACKS])
def test_attack_shapes_are_refused_with_their_reason(raw: bytes, code: str) -> None:
    (item,) = parse_mqtt_payload(raw)
    assert isinstance(item, Rejected)
    assert item.reasons == (code,)
    assert item.raw  # kept for quarantine
    with pytest.raises(PayloadError):
        # As an HTTP body these are not `{"readings": [...]}`; inside one they are items.
        parse_http_batch(raw)
    inside = b'{"readings": [' + raw + b"]}"
    try:
        items = parse_http_batch(inside)
    except PayloadError as e:
        assert e.problem.code == code
    else:
        assert [i.reasons for i in items if isinstance(i, Rejected)] == [(code,)]


def test_a_deep_item_in_a_batch_spoils_only_itself() -> None:
    deep: object = 1
    for _ in range(500):
        deep = [deep]
    bad = {"event_id": "x", "vin": VIN, "odometer": {"value": deep, "unit": "km"}, "recorded_at": "2022-03-01T00:00:00Z"}
    items = parse_mqtt_payload(json.dumps([GOOD, bad, GOOD]).encode())
    assert isinstance(items[0], OdometerReading) and isinstance(items[2], OdometerReading)
    assert isinstance(items[1], Rejected) and items[1].reasons == ("too_deeply_nested",)
    assert items[1].raw.startswith('{"event_id":"x"')


def test_raw_text_keeps_any_depth_without_recursion() -> None:
    deep: object = "end"
    for _ in range(50_000):
        deep = {"k": deep}
    text = raw_text(deep)
    assert text.count("{") == MAX_ITEM_DEPTH and text.endswith("}" * MAX_ITEM_DEPTH)


def test_the_earliest_and_largest_accepted_values() -> None:
    (first,) = parse_mqtt_payload(at("2000-01-01T09:00:00+09:00"))
    assert isinstance(first, OdometerReading)
    (largest,) = parse_mqtt_payload(with_value(b"10000000"))
    assert isinstance(largest, OdometerReading) and largest.odometer_m == 10_000_000_000
    (over,) = parse_mqtt_payload(with_value(b"10000000.001"))
    assert isinstance(over, Rejected) and over.reasons == ("odometer_too_large",)


# -- fuzzing -----------------------------------------------------------------------------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.decimals(allow_nan=False, allow_infinity=False).map(str).map(Decimal),
    st.text(max_size=30),
    st.sampled_from(["km", "mi", "m", VIN, "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"]),
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=30,
)
_keys = st.sampled_from(["event_id", "vin", "odometer", "value", "unit", "recorded_at", "timestamp", "signals"])
_near_readings = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=5),
    max_leaves=20,
)


def _encode(value: object) -> bytes:
    return json.dumps(value, default=str).encode()


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.binary(max_size=300),
        _json.map(_encode),
        _near_readings.map(_encode),
        st.builds(lambda d, v: nested(d)[:d] + v + nested(d)[d:], st.integers(0, 5000), _json.map(_encode)),
    )
)
def test_no_payload_raises(raw: bytes) -> None:
    items = parse_mqtt_payload(raw)
    assert items and all(isinstance(i, OdometerReading | Rejected) for i in items)
    for i in items:
        if isinstance(i, Rejected):
            assert i.reasons and "\x00" not in i.raw and "unparseable" not in i.reasons
    try:
        parse_http_batch(b'{"readings": [' + raw + b"]}")
    except PayloadError as e:
        assert e.problem.code != "unparseable"
