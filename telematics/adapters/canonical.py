"""The canonical shape: `{"event_id", "vin", "odometer": {"value", "unit"}, "recorded_at"}`.

`unit` is km, mi or m; `recorded_at` is ISO 8601 and must carry its UTC offset.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from telematics import units
from telematics.reading import MAX_EVENT_ID_LENGTH, MIN_RECORDED_AT, OdometerReading

_ONE = Decimal(1)
MAX_M = units.MAX_M

SHAPE = "canonical"


def matches(obj: dict[str, Any]) -> bool:
    return "event_id" in obj or "recorded_at" in obj


def adapt(obj: dict[str, Any], path: str) -> OdometerReading:
    fast = quick(obj)
    return fast if fast is not None else _checked(obj, path)


def _checked(obj: dict[str, Any], path: str) -> OdometerReading:
    """Field by field, raising `ItemError` with the field's path at the first problem."""
    event_id = units.event_id(units.field(obj, "event_id", f"{path}.event_id"), f"{path}.event_id")
    vin = units.vin(units.field(obj, "vin", f"{path}.vin"), f"{path}.vin")
    odo = units.object_at(units.field(obj, "odometer", f"{path}.odometer"), f"{path}.odometer")
    value = units.odometer_value(units.field(odo, "value", f"{path}.odometer.value"), f"{path}.odometer.value")
    unit = units.unit(units.field(odo, "unit", f"{path}.odometer.unit"), f"{path}.odometer.unit")
    recorded_at = units.instant(units.field(obj, "recorded_at", f"{path}.recorded_at"), f"{path}.recorded_at")
    return OdometerReading(
        event_id=event_id,
        vin=vin,
        odometer_m=units.to_metres(value, unit, f"{path}.odometer.value"),
        recorded_at=recorded_at,
        original_value=value,
        original_unit=unit,
    )


_METRES = units.METRES_PER_UNIT
_MAX_VALUE = units.MAX_VALUE
_VIN = units.VIN_PATTERN


def quick(obj: dict[str, Any]) -> OdometerReading | None:
    """The common, well-formed reading, checked inline; None sends it through `adapt`'s field by
    field checks, which alone decide what is wrong with an item (and which shape it has)."""
    try:
        event_id = obj["event_id"]
        vin = obj["vin"]
        odometer = obj["odometer"]
        value = odometer["value"]
        unit = odometer["unit"]
        recorded_at = obj["recorded_at"]
    except (KeyError, TypeError):
        return None
    if not (
        type(event_id) is str
        and 0 < len(event_id) <= MAX_EVENT_ID_LENGTH
        and event_id.isascii()
        and event_id.isprintable()
        and type(vin) is str
        and _VIN.fullmatch(vin)
        and type(value) in (int, Decimal)
        and unit in _METRES
        and type(recorded_at) is str
        and len(recorded_at) <= 40
    ):
        return None
    if type(value) is int and unit != "mi":
        # Whole kilometres or metres: exact in integers.
        metres = value * 1000 if unit == "km" else value
        if value < 0 or metres > MAX_M:
            return None
        d = Decimal(value)
    else:
        d = value if type(value) is Decimal else Decimal(value)
        if not d.is_finite() or d < 0 or d > _MAX_VALUE:
            return None
        exact = (d * _METRES[unit]).quantize(_ONE, rounding=ROUND_HALF_UP)
        if exact > MAX_M:
            return None
        metres = int(exact)
    try:
        at = datetime.fromisoformat(recorded_at)
    except ValueError:
        return None
    if at.tzinfo is None:  # fromisoformat gives a fixed offset or none
        return None
    try:
        utc = at.astimezone(UTC)
    except OverflowError:
        return None
    if utc < MIN_RECORDED_AT:
        return None
    return OdometerReading(event_id, vin, metres, utc, d, unit)
