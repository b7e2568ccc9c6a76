"""The dispute page's readings chart: the car's verified readings over time, with the values the
case is about (the citizen's claim, the OCR's read, the quarantined reading) marked on it.

Coordinates only: the template draws them as inline SVG, so the chart needs no script.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from ingest.routes.photos import SubmissionOut
from prorate.calendar import SEOUL


def dispute_marks(
    sub: SubmissionOut | None,
    decision: dict[str, Any],
    ocr: dict[str, Any],
    quarantined: asyncpg.Record | None,
) -> list[dict[str, Any]]:
    """The values under review: the citizen's claim and the OCR's read at the moment the decision
    recorded (the capture time, else the upload), the quarantined reading at its own time."""
    marks: list[dict[str, Any]] = []
    if sub is not None:
        at_raw = decision.get("recorded_at")
        at = datetime.fromisoformat(at_raw) if at_raw else sub.uploaded_at
        ocr_km = ((ocr.get("dashboard") or {}).get("read") or {}).get("value_km")
        marks = [
            {"kind": "claimed", "km": sub.claimed_km, "at": at},
            {"kind": "ocr", "km": ocr_km, "at": at},
        ]
    if quarantined is not None and quarantined["odometer_m"] is not None:
        marks.append({"kind": "quarantined", "km": quarantined["odometer_m"] / 1000, "at": quarantined["recorded_at"]})
    return marks


def timeline_svg(points: list[dict[str, Any]], marks: list[dict[str, Any]], width: int = 640, height: int = 200) -> dict[str, Any]:
    """Coordinates for the readings chart (drawn as inline SVG by the template, no script)."""
    items = [(p["recorded_at"], p["odometer_m"] / 1000) for p in points]
    items += [(m["at"], m["km"]) for m in marks if m["km"] is not None and m["at"] is not None]
    if not items:
        return {"points": [], "marks": [], "width": width, "height": height, "labels": {}}
    times = [t.timestamp() for t, _ in items]
    values = [v for _, v in items]
    t0, t1 = min(times), max(times)
    v0, v1 = min(values), max(values)
    if t1 - t0 < 1:
        t0, t1 = t0 - 86400, t1 + 86400
    if v1 - v0 < 1:
        v0, v1 = v0 - 10, v1 + 10
    pad_l, pad_r, pad_t, pad_b = 70, 20, 15, 30

    def xy(t: datetime, v: float) -> tuple[float, float]:
        x = pad_l + (t.timestamp() - t0) / (t1 - t0) * (width - pad_l - pad_r)
        y = height - pad_b - (v - v0) / (v1 - v0) * (height - pad_t - pad_b)
        return round(x, 1), round(y, 1)

    pts = [
        {"x": xy(p["recorded_at"], p["odometer_m"] / 1000)[0], "y": xy(p["recorded_at"], p["odometer_m"] / 1000)[1],
         "km": p["odometer_m"] / 1000, "at": p["recorded_at"], "source": p["source"]}
        for p in points
    ]
    mks = []
    for m in marks:
        if m["km"] is None or m["at"] is None:
            continue
        x, y = xy(m["at"], m["km"])
        mks.append({**m, "x": x, "y": y})
    return {
        "points": pts,
        "polyline": " ".join(f"{p['x']},{p['y']}" for p in pts),
        "marks": mks,
        "width": width,
        "height": height,
        "labels": {
            "v0": f"{v0:,.0f}",
            "v1": f"{v1:,.0f}",
            "t0": datetime.fromtimestamp(t0, SEOUL).strftime("%Y-%m-%d"),
            "t1": datetime.fromtimestamp(t1, SEOUL).strftime("%Y-%m-%d"),
            "x0": pad_l,
            "x1": width - pad_r,
            "y0": pad_t,
            "y1": height - pad_b,
        },
    }
