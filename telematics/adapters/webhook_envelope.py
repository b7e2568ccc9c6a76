"""The webhook-envelope shape (connected-car aggregator style): one event about one vehicle
carrying a list of signals, of which exactly one is the odometer.

    {"eventId": "...", "eventType": "VEHICLE_STATE", "vehicle": {"vin": "..."},
     "signals": [{"code": "odometer-traveleddistance",
                  "body": {"value": 12345.6, "unit": "kilometers"},
                  "meta": {"oemUpdatedAt": "2022-03-01T00:00:00.000Z"}}, ...]}

The odometer is recorded when the car (the OEM) updated it — `meta.oemUpdatedAt` — not when the
aggregator fetched it. Other signals are ignored.
"""

from __future__ import annotations

from typing import Any

from telematics import units
from telematics.reading import ItemError, OdometerReading, Unit

SHAPE = "webhook_envelope"
ODOMETER_CODES = frozenset({"odometer-traveleddistance", "odometer"})
UNIT_ALIASES: dict[str, Unit] = {
    "kilometers": "km",
    "kilometres": "km",
    "miles": "mi",
    "meters": "m",
    "metres": "m",
}


def matches(obj: dict[str, Any]) -> bool:
    return "signals" in obj


def adapt(obj: dict[str, Any], path: str) -> OdometerReading:
    event_id = units.event_id(units.field(obj, "eventId", f"{path}.eventId"), f"{path}.eventId")
    vehicle = units.object_at(units.field(obj, "vehicle", f"{path}.vehicle"), f"{path}.vehicle")
    vin = units.vin(units.field(vehicle, "vin", f"{path}.vehicle.vin"), f"{path}.vehicle.vin")
    signals = units.field(obj, "signals", f"{path}.signals")
    if not isinstance(signals, list):
        raise ItemError("wrong_type", f"{path}.signals must be an array.", f"{path}.signals")
    odometers = [
        (i, s) for i, s in enumerate(signals) if isinstance(s, dict) and s.get("code") in ODOMETER_CODES
    ]
    if not odometers:
        raise ItemError("no_odometer_signal", f"{path}.signals holds no odometer signal.", f"{path}.signals")
    if len(odometers) > 1:
        raise ItemError(
            "ambiguous_odometer_signal", f"{path}.signals holds more than one odometer signal.", f"{path}.signals"
        )
    i, signal = odometers[0]
    at = f"{path}.signals[{i}]"
    body = units.object_at(units.field(signal, "body", f"{at}.body"), f"{at}.body")
    value = units.odometer_value(units.field(body, "value", f"{at}.body.value"), f"{at}.body.value")
    unit = units.unit(units.field(body, "unit", f"{at}.body.unit"), f"{at}.body.unit", UNIT_ALIASES)
    meta = units.object_at(units.field(signal, "meta", f"{at}.meta"), f"{at}.meta")
    recorded_at = units.instant(units.field(meta, "oemUpdatedAt", f"{at}.meta.oemUpdatedAt"), f"{at}.meta.oemUpdatedAt")
    return OdometerReading(
        event_id=event_id,
        vin=vin,
        odometer_m=units.to_metres(value, unit, f"{at}.body.value"),
        recorded_at=recorded_at,
        original_value=value,
        original_unit=unit,
    )
