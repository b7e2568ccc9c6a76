"""Smartcar webhook deliveries, exactly as Smartcar sends them (webhook payload version 4.0), and
its callback verification in both versions it documents (4.0 and 2.0).

One delivery is one event (https://smartcar.com/docs/api-reference/webhooks/delivery-behavior):

- `VERIFY` (4.0: `{"eventType": "VERIFY", "data": {"challenge": "…"}, "meta": {…}}`; 2.0:
  `{"version": "2.0", "eventName": "verify", "payload": {"challenge": "…"}}`) — answered with the
  HMAC of the challenge (https://smartcar.com/docs/integrations/webhooks/callback-verification);
- `VEHICLE_STATE` (https://smartcar.com/docs/api-reference/webhooks/events/vehicle-state):
  `{"eventId", "eventType", "vehicleId", "data": {"user", "vehicle": {"id", "make", "model",
  "year"}, "triggers": [...], "signals": [{"code", "name", "group", "body", "meta":
  {"oemUpdatedAt", "fetchedAt"}}]}, "meta": {"version": "4.0", "deliveryId", …}}`. Every
  subscribed signal is in every event; the odometer is the signal `odometer-traveleddistance`,
  whose body is `{"unit": "kilometers" | "miles", "value": …}`
  (https://smartcar.com/docs/api-reference/signals/odometer). A signal Smartcar could not read
  carries `status` instead of `body`;
- `VEHICLE_ERROR` (https://smartcar.com/docs/api-reference/webhooks/events/vehicle-error):
  Smartcar could not read the car (asleep, unreachable, a permission withdrawn); it carries no
  signal values, so no odometer.

The payload names the car by Smartcar's own vehicle id, never by VIN, unless the webhook also
subscribes the `vehicleidentification-vin` attribute
(https://smartcar.com/docs/api-reference/signals/vehicleidentification): the VIN is taken from
that signal when present, otherwise the service looks the vehicle id up in the provider's
vehicle links (`carmileage providers link`).

The event id is the same on every retry of an event (a retry has a new `meta.deliveryId`), so it
is the reading's provider event id: a retry is a duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from telematics import units
from telematics.adapters.webhook_envelope import ODOMETER_CODES, UNIT_ALIASES
from telematics.reading import ItemError, OdometerReading, Unit

VIN_CODE = "vehicleidentification-vin"
#: Smartcar's unit systems (its `SC-Unit-System`: metric is the default); used only when the
#: odometer signal's body names no unit.
UNIT_SYSTEMS: dict[str, Unit] = {"metric": "km", "imperial": "mi"}


@dataclass(frozen=True, slots=True)
class Challenge:
    """A callback verification: answer `{"challenge": HMAC(AMT, challenge)}` with 200."""

    challenge: str


@dataclass(frozen=True, slots=True)
class Ignored:
    """An event acknowledged without storing anything, and why."""

    event_id: str
    event_type: str
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class OdometerEvent:
    """A VEHICLE_STATE event's odometer; the VIN is None when the payload does not carry it."""

    event_id: str
    vehicle_id: str
    vin: str | None
    value: Decimal
    unit: Unit
    recorded_at: datetime

    def reading(self, vin: str) -> OdometerReading:
        return OdometerReading(
            event_id=self.event_id,
            vin=vin,
            odometer_m=units.to_metres(self.value, self.unit, "data.signals.body.value"),
            recorded_at=self.recorded_at,
            original_value=self.value,
            original_unit=self.unit,
        )


Event = Challenge | Ignored | OdometerEvent


def parse(obj: Any, unit_system: str | None = None) -> Event:
    """One delivery's parsed JSON -> what to do with it; raises `ItemError` when it cannot be read.

    `unit_system` is the delivery's `SC-Unit-System` header, if any: it decides the unit only when
    the odometer's body names none (then metric, Smartcar's default, unless it says imperial).
    """
    obj = units.object_at(obj, "body")
    if "eventName" in obj:  # webhook payload version 2.0
        name = obj["eventName"]
        if name == "verify":
            payload = units.object_at(units.field(obj, "payload", "payload"), "payload")
            return Challenge(units.text_at(units.field(payload, "challenge", "payload.challenge"), "payload.challenge"))
        raise ItemError(
            "unsupported_event",
            f"Webhook payload version 2.0 is supported only for verification, not eventName {str(name)[:40]!r}: "
            "deliver vehicle data with payload version 4.0 (eventType VEHICLE_STATE).",
            "eventName",
        )
    event_type = units.text_at(units.field(obj, "eventType", "eventType"), "eventType")
    data = units.object_at(units.field(obj, "data", "data"), "data")
    if event_type == "VERIFY":
        return Challenge(units.text_at(units.field(data, "challenge", "data.challenge"), "data.challenge"))
    event_id = units.event_id(units.field(obj, "eventId", "eventId"), "eventId")
    if event_type == "VEHICLE_ERROR":
        return Ignored(
            event_id,
            event_type,
            "no_odometer_in_event",
            "A VEHICLE_ERROR event says Smartcar could not read the car; it carries no odometer value.",
        )
    if event_type != "VEHICLE_STATE":
        raise ItemError(
            "unsupported_event",
            f"eventType {event_type[:40]!r} is not one of VERIFY, VEHICLE_STATE, VEHICLE_ERROR.",
            "eventType",
        )
    return _vehicle_state(obj, data, event_id, unit_system)


def _vehicle_state(obj: dict[str, Any], data: dict[str, Any], event_id: str, unit_system: str | None) -> Event:
    vehicle = units.object_at(units.field(data, "vehicle", "data.vehicle"), "data.vehicle")
    vehicle_id = vehicle.get("id", obj.get("vehicleId"))
    vehicle_id = units.event_id(vehicle_id, "data.vehicle.id") if vehicle_id is not None else None
    if vehicle_id is None:
        raise ItemError("missing_field", "data.vehicle.id is required.", "data.vehicle.id")
    signals = units.field(data, "signals", "data.signals")
    if not isinstance(signals, list):
        raise ItemError("wrong_type", "data.signals must be an array.", "data.signals")
    odometers = [(i, s) for i, s in enumerate(signals) if isinstance(s, dict) and s.get("code") in ODOMETER_CODES]
    if not odometers:
        return Ignored(
            event_id,
            "VEHICLE_STATE",
            "no_odometer_signal",
            "The event's signals hold no odometer: the webhook does not subscribe Odometer.TraveledDistance.",
        )
    if len(odometers) > 1:
        raise ItemError("ambiguous_odometer_signal", "data.signals holds more than one odometer signal.", "data.signals")
    i, signal = odometers[0]
    at = f"data.signals[{i}]"
    if "body" not in signal:
        return Ignored(
            event_id,
            "VEHICLE_STATE",
            "odometer_unavailable",
            "Smartcar could not read this car's odometer for this event (the signal carries a status, no value).",
        )
    body = units.object_at(signal["body"], f"{at}.body")
    value = units.odometer_value(units.field(body, "value", f"{at}.body.value"), f"{at}.body.value")
    if "unit" in body:
        unit = units.unit(body["unit"], f"{at}.body.unit", UNIT_ALIASES)
    else:
        unit = UNIT_SYSTEMS.get((unit_system or "metric").strip().lower(), "km")
    meta = units.object_at(units.field(signal, "meta", f"{at}.meta"), f"{at}.meta")
    when = units.field(meta, "oemUpdatedAt", f"{at}.meta.oemUpdatedAt")
    path = f"{at}.meta.oemUpdatedAt"
    recorded_at = units.instant(when, path) if isinstance(when, str) else units.epoch_ms(when, path)
    return OdometerEvent(event_id, vehicle_id, _vin(signals), value, unit, recorded_at)


def _vin(signals: list[Any]) -> str | None:
    for i, s in enumerate(signals):
        if isinstance(s, dict) and s.get("code") == VIN_CODE and isinstance(s.get("body"), dict):
            value = s["body"].get("value")
            if value is not None:
                return units.vin(value, f"data.signals[{i}].body.value")
    return None
