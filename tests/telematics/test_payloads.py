"""Provider payloads -> canonical readings: three shapes, exact units, strict JSON, signatures."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telematics import signatures
from telematics.adapters import adapt
from telematics.payload import PayloadError, parse_http_batch, parse_mqtt_payload
from telematics.reading import OdometerReading, Rejected
from telematics.units import METRES_PER_UNIT

VIN = "KMHXX00XXXX000001"
WHEN = datetime(2022, 3, 1, 0, 0, tzinfo=UTC)


def canonical(**over: object) -> dict[str, object]:
    body: dict[str, object] = {
        "event_id": "evt-1",
        "vin": VIN,
        "odometer": {"value": 12345.6, "unit": "km"},
        "recorded_at": "2022-03-01T09:00:00+09:00",
    }
    body.update(over)
    return body


def reasons(raw: bytes) -> list[tuple[str, ...]]:
    return [a.reasons if isinstance(a, Rejected) else () for a in parse_mqtt_payload(raw)]


def test_the_three_shapes_give_the_same_reading() -> None:
    maker = {"vin": VIN, "odometer": {"value": 12345.6, "unit": "km"}, "timestamp": "2022-03-01T00:00:00Z"}
    webhook = {
        "eventId": "evt-1",
        "eventType": "VEHICLE_STATE",
        "vehicle": {"vin": VIN, "make": "HYUNDAI"},
        "signals": [
            {"code": "location-preciselocation", "body": {"latitude": 37.5, "longitude": 127.0}},
            {
                "code": "odometer-traveleddistance",
                "body": {"value": 12345.6, "unit": "kilometers"},
                "meta": {"oemUpdatedAt": "2022-03-01T00:00:00.000Z", "retrievedAt": "2022-03-01T00:05:00Z"},
            },
        ],
    }
    readings = [a for a in parse_mqtt_payload(json.dumps([canonical(), maker, webhook]).encode())]
    assert all(isinstance(r, OdometerReading) for r in readings)
    assert {(r.vin, r.odometer_m, r.recorded_at) for r in readings} == {(VIN, 12_345_600, WHEN)}  # type: ignore[union-attr]
    assert readings[0].event_id == readings[2].event_id == "evt-1"  # type: ignore[union-attr]
    # The maker shape has no event id: it is derived from the reading, the same on every resend.
    assert readings[1].event_id.startswith("mp-")  # type: ignore[union-attr]
    assert adapt(maker) == readings[1]


def test_maker_platform_epoch_milliseconds() -> None:
    r = adapt({"vin": VIN, "odometer": {"value": 100, "unit": "mi"}, "timestamp": 1646092800000})
    assert isinstance(r, OdometerReading)
    assert r.recorded_at == WHEN
    assert r.odometer_m == 160_934  # 160,934.4 m, rounded half up


def test_units_are_exact() -> None:
    r = adapt(canonical(odometer={"value": Decimal("0.0005"), "unit": "km"}))
    assert isinstance(r, OdometerReading) and r.odometer_m == 1  # 0.5 m rounds half up
    r = adapt(canonical(odometer={"value": 1, "unit": "mi"}))
    assert isinstance(r, OdometerReading) and r.odometer_m == 1609 and r.original_unit == "mi"
    r = adapt(canonical(odometer={"value": 42, "unit": "m"}))
    assert isinstance(r, OdometerReading) and r.odometer_m == 42


@given(st.decimals(min_value=0, max_value=10_000_000, places=3, allow_nan=False), st.sampled_from(["km", "m"]))
def test_json_numbers_keep_their_decimal_digits(value: Decimal, unit: str) -> None:
    raw = json.dumps(canonical(odometer={"value": "X", "unit": unit})).replace('"X"', str(value)).encode()
    (r,) = parse_mqtt_payload(raw)
    assert isinstance(r, OdometerReading)
    assert r.original_value == value
    exact = value * METRES_PER_UNIT[unit]
    assert abs(r.odometer_m - exact) <= Decimal("0.5")


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"{not json", "malformed_json"),
        (b"\xff\xfe", "malformed_json"),
        (json.dumps(canonical()).replace("12345.6", "NaN").encode(), "non_finite_number"),
        (json.dumps(canonical()).replace("12345.6", "Infinity").encode(), "non_finite_number"),
        (json.dumps(canonical()).replace("12345.6", "-1").encode(), "odometer_negative"),
        (json.dumps(canonical()).replace("12345.6", "10000000.001").encode(), "odometer_too_large"),
        (json.dumps(canonical()).replace("12345.6", '"12345.6"').encode(), "wrong_type"),
        (json.dumps(canonical()).replace("12345.6", "true").encode(), "wrong_type"),
        (json.dumps(canonical(recorded_at="2022-03-01T09:00:00")).encode(), "time_without_offset"),
        (json.dumps(canonical(recorded_at="yesterday")).encode(), "invalid_time"),
        (json.dumps(canonical(odometer={"value": 1, "unit": "furlong"})).encode(), "unit_unknown"),
        (json.dumps(canonical(vin="KMHXX00XXXX00000")).encode(), "invalid_vin"),
        (json.dumps(canonical(event_id="")).encode(), "invalid_event_id"),
        (json.dumps({k: v for k, v in canonical().items() if k != "vin"}).encode(), "missing_field"),
        (json.dumps({"hello": "world"}).encode(), "unknown_shape"),
        (b"[]", "empty_batch"),
        (b"42", "not_an_object"),
        (json.dumps([canonical()] * 1001).encode(), "too_many_readings"),
        (b" " * (256 * 1024 + 1), "payload_too_large"),
    ],
)
def test_bad_mqtt_payloads_are_refused_with_a_reason(raw: bytes, code: str) -> None:
    (item,) = parse_mqtt_payload(raw)
    assert isinstance(item, Rejected)
    assert item.reasons == (code,)
    assert item.raw  # kept for quarantine
    assert "\x00" not in item.raw


def test_bad_items_do_not_spoil_the_good_ones_around_them() -> None:
    raw = json.dumps([canonical(event_id="a"), canonical(recorded_at="2022-03-01"), canonical(event_id="c")]).encode()
    assert reasons(raw) == [(), ("time_without_offset",), ()]


def test_http_batch_envelope() -> None:
    items = parse_http_batch(json.dumps({"readings": [canonical(), {"x": 1}]}).encode())
    assert isinstance(items[0], OdometerReading) and isinstance(items[1], Rejected)
    for body, code in [
        (b"[]", "wrong_type"),
        (b"{}", "missing_field"),
        (b'{"readings": {}}', "wrong_type"),
        (b'{"readings": []}', "empty_batch"),
        (json.dumps({"readings": [canonical()] * 10_001}).encode(), "too_many_readings"),
        (json.dumps({"readings": [canonical()], "extra": 1}).encode(), "unknown_field"),
        (b'{"readings": [NaN]}', "non_finite_number"),
    ]:
        with pytest.raises(PayloadError) as e:
            parse_http_batch(body)
        assert e.value.problem.code == code, body[:40]


def test_webhook_envelope_needs_exactly_one_odometer() -> None:
    base = {"eventId": "e", "vehicle": {"vin": VIN}}
    assert adapt({**base, "signals": []}).reasons == ("no_odometer_signal",)  # type: ignore[union-attr]
    odo = {"code": "odometer", "body": {"value": 1, "unit": "km"}, "meta": {"oemUpdatedAt": "2022-03-01T00:00:00Z"}}
    assert adapt({**base, "signals": [odo, odo]}).reasons == ("ambiguous_odometer_signal",)  # type: ignore[union-attr]


# -- signatures ----------------------------------------------------------------------------------


def test_signature_round_trip_and_rotation() -> None:
    body = b'{"readings": []}'
    header = signatures.signature("new-secret", 1_700_000_000, body)
    ok = signatures.verify(["old-secret", "new-secret"], "1700000000", header, body, now=1_700_000_100)
    assert ok.ok and len(ok.digest) == 32


@pytest.mark.parametrize(
    ("timestamp", "header", "now", "code"),
    [
        (None, "sha256=" + "0" * 64, 1_700_000_000, "timestamp_missing"),
        ("soon", "sha256=" + "0" * 64, 1_700_000_000, "timestamp_invalid"),
        ("1700000000", "sha256=" + "0" * 64, 1_700_000_301, "timestamp_stale"),
        ("1700000000", "sha256=" + "0" * 64, 1_699_999_699, "timestamp_stale"),
        ("1700000000", None, 1_700_000_000, "signature_missing"),
        ("1700000000", "md5=abc", 1_700_000_000, "signature_malformed"),
        ("1700000000", "sha256=" + "0" * 64, 1_700_000_000, "signature_invalid"),
    ],
)
def test_signature_refusals(timestamp: str | None, header: str | None, now: float, code: str) -> None:
    v = signatures.verify(["secret"], timestamp, header, b"{}", now=now)
    assert not v.ok and v.code == code


def test_a_signature_covers_timestamp_and_body() -> None:
    header = signatures.signature("s", 1_700_000_000, b"{}")
    assert not signatures.verify(["s"], "1700000001", header, b"{}", now=1_700_000_000).ok
    assert not signatures.verify(["s"], "1700000000", header, b"{ }", now=1_700_000_000).ok


@given(
    st.fixed_dictionaries(
        {
            "event_id": st.one_of(st.text(max_size=210), st.integers()),
            "vin": st.one_of(st.just(VIN), st.just(VIN.lower()), st.text(min_size=17, max_size=17)),
            "odometer": st.fixed_dictionaries(
                {
                    "value": st.one_of(
                        st.integers(-10, 10**11),
                        st.decimals(allow_nan=True, allow_infinity=True),
                        st.booleans(),
                    ),
                    "unit": st.sampled_from(["km", "mi", "m", "KM", "furlong"]),
                }
            ),
            "recorded_at": st.one_of(
                st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
                st.datetimes().map(lambda d: d.isoformat()),
                st.text(max_size=45),
            ),
        }
    )
)
def test_the_fast_path_agrees_with_the_field_by_field_checks(item: dict[str, object]) -> None:
    """The inline check of well-formed readings only ever says what the careful path says."""
    from telematics.adapters import canonical
    from telematics.reading import ItemError

    fast = canonical.quick(item)
    try:
        careful: object = canonical._checked(item, "reading")
    except ItemError:
        careful = None
    if fast is not None:
        assert fast == careful


def test_a_batch_is_adapted_item_by_item_whatever_its_shapes() -> None:
    """The batch path takes well-formed canonical readings at once; every other item (another
    shape, a canonical one with a problem, a webhook envelope that also has canonical keys) gets
    exactly what `adapt` gives it, with its own path."""
    from telematics.adapters import adapt_items

    envelope_with_canonical_keys = {**canonical(), "signals": []}
    items = [
        canonical(),
        {"vin": VIN, "odometer": {"value": 7, "unit": "mi"}, "timestamp": "2022-03-01T00:00:00Z"},
        envelope_with_canonical_keys,
        canonical(vin="nope"),
        canonical(odometer={"value": 12, "unit": "mi"}),
        canonical(odometer={"value": -1, "unit": "km"}),
        [1, 2],
        canonical(recorded_at="2022-03-01T09:00:00"),
    ]
    adapted = adapt_items(items, "readings")
    assert adapted == [adapt(item, f"readings[{i}]") for i, item in enumerate(items)]
    assert isinstance(adapted[2], Rejected) and adapted[2].problems[0].field == "readings[2].eventId"
    assert isinstance(adapted[3], Rejected) and adapted[3].problems[0].field == "readings[3].vin"
