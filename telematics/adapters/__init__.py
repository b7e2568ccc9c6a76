"""Provider payload shapes, one module each; every adapter produces the same `OdometerReading`.

An item's shape is recognised by its keys (`signals` -> webhook envelope, `event_id` or
`recorded_at` -> canonical, `timestamp` -> maker platform), so one batch may mix shapes.
"""

from __future__ import annotations

import json
from typing import Any

from telematics.adapters import canonical, maker_platform, webhook_envelope
from telematics.reading import MAX_ITEM_DEPTH, Adapted, ItemError, Problem, Rejected

ADAPTERS = (webhook_envelope, canonical, maker_platform)


def storable(text: str) -> str:
    """Text PostgreSQL can hold: no NUL character, no lone surrogate (both are valid JSON escapes)."""
    return text.replace("\x00", "\\u0000").encode("utf-8", "backslashreplace").decode("utf-8")


def raw_text(obj: Any) -> str:
    """The item as JSON text, for quarantine (numbers keep their exact decimal digits); an item
    nested too deeply to serialise by recursion is kept down to `MAX_ITEM_DEPTH` levels."""
    if nested_deeper_than(obj, MAX_ITEM_DEPTH):
        return storable(_shallow_json(obj, MAX_ITEM_DEPTH))
    try:
        return storable(json.dumps(obj, ensure_ascii=False, default=str, separators=(",", ":")))
    except (TypeError, ValueError, RecursionError):
        return storable(_shallow_json(obj, MAX_ITEM_DEPTH))


def nested_deeper_than(obj: Any, limit: int) -> bool:
    """True when arrays and objects nest more than `limit` levels; iterative, so any depth is safe."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _shallow_json(obj: Any, levels: int) -> str:
    """JSON text of `obj` with what lies deeper than `levels` replaced by "…"."""
    if levels <= 0 and isinstance(obj, dict | list):
        return '"…"'
    if isinstance(obj, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{_shallow_json(v, levels - 1)}" for k, v in obj.items()) + "}"
    if isinstance(obj, list):
        return "[" + ",".join(_shallow_json(v, levels - 1) for v in obj) + "]"
    try:
        return json.dumps(obj, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return json.dumps(repr(obj))


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
    if "signals" not in obj:
        reading = canonical.quick(obj)  # the common, well-formed reading, decided at once
        if reading is not None:
            return reading
    if nested_deeper_than(obj, MAX_ITEM_DEPTH):
        return Rejected(
            (Problem("too_deeply_nested", f"{path} nests more than {MAX_ITEM_DEPTH} levels.", path),),
            raw_text(obj),
        )
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
