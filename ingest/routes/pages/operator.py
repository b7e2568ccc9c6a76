"""The operators' dashboard (`/operator`): members and verified readings per district, reductions
and points by round, ingestion per day and quarantine reasons, the OCR's auto-accept rate, the
review backlog and its age, and the outbox's delivery state with retry buttons for dead letters.

Read-only figures come from `storage.dashboard`; the one action, retrying a dead-lettered event,
is `ingest.outbox_actions` (audited). Charts are inline SVG drawn from `bars` (no script).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from aiohttp import web

from ingest.api import read_small_form
from ingest.outbox_actions import retry_all_dead, retry_dead_event
from ingest.routes.pages.bars import hbars, stacked_columns
from ingest.routes.pages.rendering import page_id, redirect, render
from ingest.routes.pages.sessions import check_csrf, require
from ingest.state import POOL, REQUEST_ID
from prorate.calendar import SEOUL
from storage.dashboard import (
    IngestDay,
    RoundFigures,
    district_figures,
    ingest_days,
    ocr_figures,
    outbox_state,
    quarantine_reasons,
    review_backlog,
    round_figures,
)
from storage.outbox import list_items

#: The retry forms hold a CSRF token only.
OPERATOR_FORM_LIMIT = 4 * 1024
#: Quarantine reasons and OCR figures are counted over this many days.
WINDOW_DAYS = 30
#: Verified readings per district are counted over this many days (the costliest figure).
READINGS_DAYS = 7
#: Days of ingestion shown.
INGEST_DAYS = 14
DEAD_SHOWN = 20


def _days(rows: list[IngestDay], today: date, n: int) -> list[IngestDay]:
    """Every one of the last `n` days up to `today`, zeros where nothing was counted."""
    by_day = {r.day: r for r in rows}
    out = []
    for i in range(n - 1, -1, -1):
        d = today - timedelta(days=i)
        out.append(by_day.get(d, IngestDay(d, 0, 0, 0)))
    return out


def _rounds(rows: list[RoundFigures]) -> list[dict[str, Any]]:
    """Totals per round (oldest first) with their per-district rows."""
    rounds: dict[str, dict[str, Any]] = {}
    for r in rows:
        t = rounds.setdefault(
            r.round, {"round": r.round, "results": 0, "reduction_km": 0, "points": 0, "special_points": 0, "districts": []}
        )
        t["results"] += r.results
        t["reduction_km"] += r.reduction_km
        t["points"] += r.points
        t["special_points"] += r.special_points
        t["districts"].append(r)
    return list(rounds.values())


async def dashboard_page(request: web.Request) -> web.Response:
    session = await require(request, "operator")
    pool = request.app[POOL]
    districts = await district_figures(pool, READINGS_DAYS)
    rounds = _rounds(await round_figures(pool))
    days = _days(await ingest_days(pool, INGEST_DAYS), datetime.now(SEOUL).date(), INGEST_DAYS)
    reasons = await quarantine_reasons(pool, WINDOW_DAYS)
    ocr = await ocr_figures(pool, WINDOW_DAYS)
    backlog = await review_backlog(pool)
    outbox = await outbox_state(pool)
    dead = await list_items(pool, "dead", DEAD_SHOWN)
    retried = request.query.get("retried", "")
    return render(
        request,
        "operator.html",
        session=session,
        window_days=WINDOW_DAYS,
        readings_days=READINGS_DAYS,
        districts=districts,
        members_chart=hbars([(d.district, d.members) for d in districts]),
        readings_chart=hbars([(d.district, d.verified_readings) for d in districts]),
        rounds=rounds,
        reduction_chart=hbars([(r["round"], float(r["reduction_km"])) for r in rounds]),
        points_chart=hbars([(r["round"], r["points"] + r["special_points"]) for r in rounds]),
        days=days,
        ingest_chart=stacked_columns(
            [(d.day.strftime("%m-%d"), (d.accepted, d.quarantined)) for d in days], ("accepted", "quarantined")
        ),
        ingest_total={
            "accepted": sum(d.accepted for d in days),
            "duplicates": sum(d.duplicates for d in days),
            "quarantined": sum(d.quarantined for d in days),
        },
        reasons=reasons,
        reasons_chart=hbars(reasons, label_w=170),
        ocr=ocr,
        backlog=backlog,
        backlog_chart=hbars(list(backlog.by_age.items())),
        outbox=outbox,
        outbox_chart=hbars([("pending", outbox.pending), ("delivered", outbox.delivered), ("dead", outbox.dead)]),
        dead=dead,
        retried=retried if retried.isdigit() or retried in ("none", "all") else "",
        retried_n=request.query.get("n", "") if request.query.get("n", "").isdigit() else "",
    )


async def outbox_retry(request: web.Request) -> web.StreamResponse:
    session = await require(request, "operator")
    form = await read_small_form(request, OPERATOR_FORM_LIMIT)
    check_csrf(request, session.csrf, str(form.get("csrf", "")))
    item_id = page_id(request)
    async with request.app[POOL].acquire() as conn:
        done = await retry_dead_event(conn, item_id, session.principal.subject, request.get(REQUEST_ID))
    raise redirect(f"/operator?retried={item_id if done else 'none'}#outbox")


async def outbox_retry_all(request: web.Request) -> web.StreamResponse:
    session = await require(request, "operator")
    form = await read_small_form(request, OPERATOR_FORM_LIMIT)
    check_csrf(request, session.csrf, str(form.get("csrf", "")))
    async with request.app[POOL].acquire() as conn:
        n = await retry_all_dead(conn, session.principal.subject, request.get(REQUEST_ID))
    raise redirect(f"/operator?retried=all&n={n}#outbox")
