"""Provider payload shapes, one module each; every adapter produces the same `OdometerReading`.

An item's shape is recognised by its keys (`signals` -> webhook envelope, `event_id` or
`recorded_at` -> canonical, `timestamp` -> maker platform), so one batch may mix shapes.
"""

from __future__ import annotations

import json
from typing import Any

from telematics.adapters import canonical, maker_platform, webhook_envelope
from telematics.reading import Adapted, ItemError, Problem, Rejected

ADAPTERS = (webhook_envelope, canonical, maker_platform)


def storable(text: str) -> str:
    """Text PostgreSQL can hold: no NUL character, no lone surrogate (both are valid JSON escapes)."""
    return text.replace("\x00", "\\u0000").encode("utf-8", "backslashreplace").decode("utf-8")


def raw_text(obj: Any) -> str:
    """The item as JSON text, for quarantine (numbers keep their exact decimal digits)."""
    try:
        return storable(json.dumps(obj, ensure_ascii=False, default=str, separators=(",", ":")))
    except (TypeError, ValueError):
        return storable(repr(obj))


def adapt_items(items: list[Any], prefix: str) -> list[Adapted]:
    """The items of a batch, each adapted as by `adapt` (its path is `prefix[i]`).

    A well-formed canonical reading, as nearly every item of a large batch is, is taken at once,
    without building its path or looking for other shapes (only the webhook envelope's
    `signals` would take precedence over the canonical shape).
    """
    quick = canonical.quick
    out: list[Adapted] = []
    for i, obj in enumerate(items):
        reading = quick(obj) if type(obj) is dict and "signals" not in obj else None
        out.append(reading if reading is not None else adapt(obj, f"{prefix}[{i}]"))
    return out


def adapt(obj: Any, path: str = "reading") -> Adapted:
    """One parsed JSON item -> a canonical reading, or the reasons it is not one."""
    if not isinstance(obj, dict):
        return Rejected((Problem("not_an_object", f"{path} must be a JSON object.", path),), raw_text(obj))
    for adapter in ADAPTERS:
        if adapter.matches(obj):
            try:
                return adapter.adapt(obj, path)
            except ItemError as e:
                return Rejected((e.problem,), raw_text(obj))
    return Rejected(
        (
            Problem(
                "unknown_shape",
                f"{path} is neither a canonical reading (event_id, vin, odometer, recorded_at), a "
                "maker-platform reading (vin, odometer, timestamp) nor a webhook envelope (signals).",
                path,
            ),
        ),
        raw_text(obj),
    )
