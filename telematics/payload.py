"""Payload bytes -> adapted items, for both transports.

JSON is parsed strictly (NaN and Infinity refused, UTF-8 only) with numbers as `Decimal`, so an
odometer of 12345.6 km is exactly 12,345,600 m.

- MQTT: one reading or an array of at most 1,000; a payload that cannot be read at all becomes a
  single `Rejected` holding the raw text, quarantined with its reason.
- HTTP: `{"readings": [...]}` with at most 10,000; `parse_http_batch` raises `PayloadError` for
  the whole body (the route answers 4xx) and returns per-item results otherwise.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import msgspec

from telematics.adapters import adapt, adapt_items
from telematics.reading import MAX_ITEM_DEPTH, Adapted, Problem, Rejected

MQTT_MAX_BYTES = 256 * 1024
MQTT_MAX_READINGS = 1000
HTTP_MAX_BYTES = 5 * 1024 * 1024
HTTP_MAX_READINGS = 10_000
#: Raw payloads are kept in quarantine up to this many characters.
RAW_KEEP_CHARS = 64 * 1024


class PayloadError(ValueError):
    """A whole payload refused; `problem.code` is the reason."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.problem = Problem(code, message, field)


class _NonFinite(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _NonFinite(name)


_fast = msgspec.json.Decoder(float_hook=Decimal)
_decoder = json.JSONDecoder(parse_float=Decimal, parse_constant=_refuse_constant)


def decode_json(raw: bytes | bytearray) -> Any:
    """msgspec decodes (strict JSON, UTF-8 checked, numbers with a fraction or exponent as exact
    `Decimal`); only when it refuses does the standard library say precisely why."""
    try:
        return _fast.decode(raw)
    except msgspec.DecodeError:
        pass
    except RecursionError:
        raise _too_deep() from None
    try:
        text = bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadError("malformed_json", "The payload is not UTF-8 text.") from None
    try:
        return _decoder.decode(text)
    except _NonFinite as e:
        raise PayloadError("non_finite_number", f"JSON does not allow {e}: send finite numbers.") from None
    except ValueError as e:
        raise PayloadError("malformed_json", f"The payload is not valid JSON: {e}") from None
    except RecursionError:
        raise _too_deep() from None
    raise PayloadError("malformed_json", "The payload is not valid JSON.")


def _too_deep() -> PayloadError:
    return PayloadError(
        "too_deeply_nested", f"The payload nests arrays or objects too deeply (a reading needs {MAX_ITEM_DEPTH})."
    )


def raw_for_quarantine(raw: bytes | bytearray) -> str:
    """Raw bytes as text PostgreSQL can hold (no NUL), cut to `RAW_KEEP_CHARS`."""
    text = raw[: RAW_KEEP_CHARS * 4].decode("utf-8", "backslashreplace")[:RAW_KEEP_CHARS]
    return text.replace("\x00", "\\x00")


def parse_mqtt_payload(raw: bytes | bytearray) -> list[Adapted]:
    """One MQTT message -> its items; unreadable payloads become one raw `Rejected`.

    Never raises: one message must never stop the consumer that reads every provider's. What no
    rule below foresaw is kept raw as `unparseable` (a defect of ours, to be found in quarantine).
    """
    try:
        return _parse_mqtt(raw)
    except Exception as e:
        return [Rejected((_unforeseen(e),), raw_for_quarantine(raw))]


def _unforeseen(e: Exception) -> Problem:
    return Problem("unparseable", f"The payload could not be read ({type(e).__name__}); kept raw for review.")


def _parse_mqtt(raw: bytes | bytearray) -> list[Adapted]:
    if len(raw) > MQTT_MAX_BYTES:
        return [
            Rejected(
                (Problem("payload_too_large", f"An MQTT payload is at most {MQTT_MAX_BYTES} bytes."),),
                raw_for_quarantine(raw),
            )
        ]
    try:
        data = decode_json(raw)
    except PayloadError as e:
        return [Rejected((e.problem,), raw_for_quarantine(raw))]
    if isinstance(data, list):
        if not data:
            return [Rejected((Problem("empty_batch", "The array holds no readings."),), raw_for_quarantine(raw))]
        if len(data) > MQTT_MAX_READINGS:
            return [
                Rejected(
                    (Problem("too_many_readings", f"An MQTT message holds at most {MQTT_MAX_READINGS} readings."),),
                    raw_for_quarantine(raw),
                )
            ]
        return adapt_items(data, "")
    return [adapt(data, "reading")]


def parse_http_batch(raw: bytes) -> list[Adapted]:
    """A signed HTTP body -> its items; raises `PayloadError` (and nothing else) when the body
    itself is wrong, so bad input is always a 4xx."""
    try:
        return _parse_http(raw)
    except PayloadError:
        raise
    except Exception as e:
        problem = _unforeseen(e)
        raise PayloadError(problem.code, problem.message) from e


def _parse_http(raw: bytes) -> list[Adapted]:
    if len(raw) > HTTP_MAX_BYTES:
        raise PayloadError("payload_too_large", f"The body is larger than {HTTP_MAX_BYTES} bytes.")
    data = decode_json(raw)
    if not isinstance(data, dict):
        raise PayloadError("wrong_type", 'The body must be an object: {"readings": [...]}.')
    readings = data.get("readings")
    if readings is None:
        raise PayloadError("missing_field", "readings is required.", "readings")
    if not isinstance(readings, list):
        raise PayloadError("wrong_type", "readings must be an array.", "readings")
    if not readings:
        raise PayloadError("empty_batch", "readings holds no readings.", "readings")
    if len(readings) > HTTP_MAX_READINGS:
        raise PayloadError(
            "too_many_readings", f"A batch holds at most {HTTP_MAX_READINGS} readings.", "readings"
        )
    extra = sorted(set(data) - {"readings"})
    if extra:
        raise PayloadError("unknown_field", f"Unknown field {extra[0]!r}.", extra[0])
    return adapt_items(readings, "readings")
