"""Unit and time normalisation shared by the adapters: exact metres, UTC instants.

Odometer values are decimals (JSON numbers are parsed as `Decimal`), converted with the exact
international mile (1,609.344 m) and rounded half up to whole metres.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from telematics.reading import MAX_EVENT_ID_LENGTH, MAX_ODOMETER_KM, MIN_RECORDED_AT, ItemError, Unit

METRES_PER_UNIT: dict[str, Decimal] = {"km": Decimal(1000), "mi": Decimal("1609.344"), "m": Decimal(1)}
MAX_M = MAX_ODOMETER_KM * 1000
#: No value above this is an odometer in any unit (the largest is metres). Compared before any
#: arithmetic: a value such as 1e30 overflows the decimal context once multiplied.
MAX_VALUE = Decimal(MAX_M)
_ONE = Decimal(1)
VIN_PATTERN = re.compile(r"[A-HJ-NPR-Z0-9]{17}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def field(obj: dict[str, Any], name: str, path: str) -> Any:
    try:
        return obj[name]
    except KeyError:
        raise ItemError("missing_field", f"{path} is required.", path) from None


def object_at(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ItemError("wrong_type", f"{path} must be an object.", path)
    return value


def text_at(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise ItemError("wrong_type", f"{path} must be a string.", path)
    return value


def _encodable(s: str) -> bool:
    """False for text with lone surrogates (JSON escapes allow them; UTF-8 and PostgreSQL do not)."""
    if s.isascii():
        return True
    try:
        s.encode()
    except UnicodeEncodeError:
        return False
    return True


def event_id(value: Any, path: str) -> str:
    s = text_at(value, path)
    if not 1 <= len(s) <= MAX_EVENT_ID_LENGTH or _CONTROL.search(s) or not _encodable(s):
        raise ItemError(
            "invalid_event_id",
            f"{path} must be 1 to {MAX_EVENT_ID_LENGTH} printable characters.",
            path,
        )
    return s


def vin(value: Any, path: str) -> str:
    s = text_at(value, path)
    if VIN_PATTERN.fullmatch(s):
        return s
    s = unicodedata.normalize("NFKC", s).strip().upper()
    if VIN_PATTERN.fullmatch(s):
        return s
    raise ItemError("invalid_vin", f"{path} is not a VIN (17 characters, no I, O or Q).", path)


def unit(value: Any, path: str, aliases: dict[str, Unit] | None = None) -> Unit:
    s = text_at(value, path)
    if s in ("km", "mi", "m"):
        return s  # type: ignore[return-value]
    if aliases and s in aliases:
        return aliases[s]
    raise ItemError("unit_unknown", f"{path} must be km, mi or m, not {s[:20]!r}.", path)


def odometer_value(value: Any, path: str) -> Decimal:
    """A JSON number (parsed as int or Decimal): finite, not negative, at most 10,000,000 km."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal | float):
        raise ItemError("wrong_type", f"{path} must be a number.", path)
    try:
        # A float (from a caller that parsed JSON itself) counts as its shortest decimal form.
        d = value if isinstance(value, Decimal) else Decimal(repr(value) if isinstance(value, float) else value)
    except (InvalidOperation, ValueError):
        raise ItemError("wrong_type", f"{path} must be a number.", path) from None
    if not d.is_finite():
        raise ItemError("odometer_not_finite", f"{path} must be a finite number.", path)
    if d < 0:
        raise ItemError("odometer_negative", f"{path} cannot be negative.", path)
    if d > MAX_VALUE:
        raise ItemError("odometer_too_large", f"{path} is over {MAX_ODOMETER_KM:,} km.", path)
    return d


def to_metres(value: Decimal, unit_: Unit, path: str) -> int:
    metres = (value * METRES_PER_UNIT[unit_]).quantize(_ONE, rounding=ROUND_HALF_UP)
    if metres > MAX_M:
        raise ItemError(
            "odometer_too_large", f"{path} is over {MAX_ODOMETER_KM:,} km.", path
        )
    return int(metres)


def instant(value: Any, path: str) -> datetime:
    """An ISO 8601 date-time that carries its UTC offset, as a UTC datetime."""
    s = text_at(value, path)
    if len(s) > 40:
        raise ItemError("invalid_time", f"{path} is not an ISO 8601 date-time.", path)
    try:
        t = datetime.fromisoformat(s)
    except ValueError:
        raise ItemError("invalid_time", f"{path} is not an ISO 8601 date-time.", path) from None
    if t.tzinfo is None or t.utcoffset() is None:
        raise ItemError(
            "time_without_offset",
            f"{path} must carry its UTC offset (e.g. +09:00 or Z): without it the instant is unknown.",
            path,
        )
    return in_range(t, path)


def in_range(t: datetime, path: str) -> datetime:
    """An aware instant as UTC, refused when it is before `MIN_RECORDED_AT` or cannot be one in
    UTC at all (year 1 with a positive offset, year 9999 with a negative one)."""
    try:
        utc = t.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or utc < MIN_RECORDED_AT:
        raise ItemError(
            "time_out_of_range", f"{path} must lie between {MIN_RECORDED_AT:%Y-%m-%d} and 9999-12-31 (UTC).", path
        )
    return utc


def epoch_ms(value: Any, path: str) -> datetime:
    """Unix epoch milliseconds (an integer), as a UTC datetime."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ItemError("wrong_type", f"{path} must be epoch milliseconds or an ISO 8601 string.", path)
    if not 0 <= value <= 253_402_300_799_999:  # up to 9999-12-31T23:59:59.999Z
        raise ItemError("invalid_time", f"{path} is out of range.", path)
    seconds, ms = divmod(value, 1000)
    return in_range(datetime.fromtimestamp(seconds, UTC).replace(microsecond=ms * 1000), path)
