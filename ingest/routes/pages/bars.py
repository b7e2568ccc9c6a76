"""The operator dashboard's bar charts, as coordinates: the template draws them as inline SVG
(classes only, styled by operator.css), like the dispute page's timeline, so they need no script
and no external asset.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def _number(v: float) -> str:
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.1f}"


def hbars(
    items: Sequence[tuple[str, float]],
    *,
    width: int = 420,
    bar_h: int = 20,
    gap: int = 6,
    label_w: int = 110,
    value_w: int = 70,
    fmt: Callable[[float], str] = _number,
) -> dict[str, Any]:
    """One horizontal bar per (label, value); bar lengths proportional to the values (the
    largest spans the plot), a zero or negative value draws no bar."""
    top = max((float(v) for _, v in items), default=0.0)
    plot = width - label_w - value_w
    bars = []
    for i, (label, value) in enumerate(items):
        y = gap + i * (bar_h + gap)
        w = round(plot * float(value) / top, 1) if top > 0 and value > 0 else 0.0
        bars.append(
            {
                "label": label,
                "value": value,
                "shown": fmt(float(value)),
                "x": label_w,
                "y": y,
                "w": w,
                "h": bar_h,
                "label_x": label_w - 6,
                "text_y": y + bar_h * 0.72,
                "value_x": label_w + w + 6,
            }
        )
    return {"width": width, "height": gap + len(items) * (bar_h + gap), "bars": bars, "x0": label_w}


def stacked_columns(
    items: Sequence[tuple[str, Sequence[float]]],
    series: Sequence[str],
    *,
    width: int = 420,
    height: int = 200,
) -> dict[str, Any]:
    """Vertical columns, one per (label, values): each column stacks its values in `series`
    order from the axis up, on one scale whose top is the tallest column."""
    pad_l, pad_r, pad_t, pad_b = 50, 10, 12, 28
    plot_w, plot_h = width - pad_l - pad_r, height - pad_t - pad_b
    top = max((sum(float(v) for v in values) for _, values in items), default=0.0)
    n = max(1, len(items))
    step = plot_w / n
    col_w = round(max(2.0, step * 0.7), 1)
    columns = []
    for i, (label, values) in enumerate(items):
        x = round(pad_l + i * step + (step - col_w) / 2, 1)
        base = float(height - pad_b)
        parts = []
        for name, v in zip(series, values, strict=True):
            h = round(plot_h * float(v) / top, 1) if top > 0 and v > 0 else 0.0
            base -= h
            parts.append({"series": name, "value": v, "y": round(base, 1), "h": h})
        columns.append({"label": label, "x": x, "w": col_w, "parts": parts, "total": sum(float(v) for v in values)})
    every = max(1, n // 7)
    return {
        "width": width,
        "height": height,
        "columns": columns,
        "ticks": [c for i, c in enumerate(columns) if i % every == 0],
        "x0": pad_l,
        "x1": width - pad_r,
        "y0": pad_t,
        "y1": height - pad_b,
        "top": _number(top),
    }
