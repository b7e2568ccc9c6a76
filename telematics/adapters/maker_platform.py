"""The maker-platform shape (MyHyundai / MyKia / MyGenesis style):
`{"vin", "odometer": {"value", "unit"}, "timestamp"}`.

`timestamp` is ISO 8601 with an offset, or Unix epoch milliseconds. The shape has no event id, so
one is derived from the reading itself (`mp-` + SHA-256 of VIN, instant and metres): a resent
reading gets the same id and counts as a duplicate.
"""

from __future__ import annotations

import hashlib
from typing import Any

from telematics import units
from telematics.reading import OdometerReading

SHAPE = "maker_platform"


def matches(obj: dict[str, Any]) -> bool:
    return "timestamp" in obj


def derived_event_id(vin: str, recorded_at_iso: str, odometer_m: int) -> str:
    digest = hashlib.sha256(f"{vin}|{recorded_at_iso}|{odometer_m}".encode()).hexdigest()
    return f"mp-{digest[:40]}"


def adapt(obj: dict[str, Any], path: str) -> OdometerReading:
    vin = units.vin(units.field(obj, "vin", f"{path}.vin"), f"{path}.vin")
    odo = units.object_at(units.field(obj, "odometer", f"{path}.odometer"), f"{path}.odometer")
    value = units.odometer_value(units.field(odo, "value", f"{path}.odometer.value"), f"{path}.odometer.value")
    unit = units.unit(units.field(odo, "unit", f"{path}.odometer.unit"), f"{path}.odometer.unit")
    ts = units.field(obj, "timestamp", f"{path}.timestamp")
    recorded_at = (
        units.instant(ts, f"{path}.timestamp") if isinstance(ts, str) else units.epoch_ms(ts, f"{path}.timestamp")
    )
    odometer_m = units.to_metres(value, unit, f"{path}.odometer.value")
    return OdometerReading(
        event_id=derived_event_id(vin, recorded_at.isoformat(), odometer_m),
        vin=vin,
        odometer_m=odometer_m,
        recorded_at=recorded_at,
        original_value=value,
        original_unit=unit,
    )
