"""The reviewers' pages: the queue, claiming the next dispute, and the dispute page where a
reviewer accepts, corrects or rejects (the actions are `ingest.review_actions`, as for the API).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from ingest.api import ApiError, parse_id, read_small_form
from ingest.ingestion import limits_from
from ingest.pages.messages import reason_text
from ingest.review_actions import (
    ReviewRefused,
    claim_dispute,
    claim_next_dispute,
    release_dispute,
    renew_dispute,
    resolve_dispute,
)
from ingest.routes.pages.chart import dispute_marks, timeline_svg
from ingest.routes.pages.rendering import (
    SECURITY_HEADERS,
    lang_of,
    message_page,
    page_id,
    redirect,
    render,
)
from ingest.routes.pages.sessions import (
    CsrfRefused,
    Session,
    check_csrf,
    csrf_failure,
    current_session,
    require,
)
from ingest.routes.review import dispute_detail, photo_response, refusal_status
from ingest.state import POOL, REQUEST_ID, SETTINGS
from storage.disputes import (
    REJECTION_REASONS,
    QueueFilter,
    count_open,
    get_dispute,
    list_disputes,
    open_districts,
    open_reasons,
)
from storage.quarantine import get_quarantined

#: The reviewers' forms: a note of at most 1,000 characters is the largest field.
PAGE_FORM_LIMIT = 64 * 1024


def _refusal_text(e: ReviewRefused) -> str:
    """The refusal and the reasons behind it, as the page shows them."""
    detail = "; ".join(reason_text(r) for r in e.reasons)
    return e.message + (f" ({detail})" if detail else "")


def _digits(text: str, most: int) -> bool:
    """A whole number of at most `most` ASCII digits (int() takes other scripts' digits too)."""
    return text.isascii() and text.isdigit() and len(text) <= most


# -- the queue ----------------------------------------------------------------------------------


def _filter_from(values: Any) -> tuple[QueueFilter, dict[str, str]]:
    reason = str(values.get("reason", "") or "")[:80]
    district = str(values.get("district", "") or "")[:40]
    hours = str(values.get("min_age_h", "") or "")
    min_age = int(hours) * 3600 if _digits(hours, 5) else None
    shown = {"reason": reason, "district": district, "min_age_h": hours if min_age is not None else ""}
    return QueueFilter(reason=reason or None, district=district or None, min_age_s=min_age), shown


async def queue_page(request: web.Request) -> web.Response:
    session = await require(request, "reviewer")
    f, shown = _filter_from(request.query)
    pool = request.app[POOL]
    rows = await list_disputes(pool, f, limit=100)
    done = request.query.get("done", "")
    return render(
        request,
        "queue.html",
        session=session,
        disputes=rows,
        open_total=await count_open(pool, f),
        shown=shown,
        districts=await open_districts(pool),
        reasons=await open_reasons(pool),
        empty=request.query.get("empty") == "1",
        done=parse_id(done),
        me=session.principal.subject,
    )


async def claim_next_page(request: web.Request) -> web.StreamResponse:
    session = await require(request, "reviewer")
    form = await read_small_form(request, PAGE_FORM_LIMIT)
    try:
        check_csrf(request, session.csrf, str(form.get("csrf", "")))
    except CsrfRefused:
        return csrf_failure(request, session)
    f, shown = _filter_from(form)
    async with request.app[POOL].acquire() as conn:
        d = await claim_next_dispute(
            conn, session.principal.subject, request.app[SETTINGS].review_lease_s, f, request.get(REQUEST_ID)
        )
    if d is None:
        raise redirect("/review?" + urlencode({**{k: v for k, v in shown.items() if v}, "empty": "1"}))
    raise redirect(f"/review/disputes/{d['id']}")


# -- a dispute ----------------------------------------------------------------------------------


async def dispute_page(request: web.Request, error: str | None = None, status: int = 200) -> web.Response:
    session = await require(request, "reviewer")
    pool = request.app[POOL]
    d = await get_dispute(pool, page_id(request))
    if d is None:
        return message_page(request, "not_found", 404, session)
    detail = await dispute_detail(pool, d, "/review/photos/{}")
    me = session.principal.subject
    decision = detail.decision or {}
    quarantined = None
    if d["quarantined_reading_id"] is not None:
        quarantined = await get_quarantined(pool, d["quarantined_reading_id"])
    marks = dispute_marks(detail.submission, decision, detail.ocr, quarantined)
    return render(
        request,
        "dispute.html",
        status=status,
        session=session,
        d=d,
        detail=detail,
        sub=detail.submission,
        ocr=detail.ocr,
        evidence=decision.get("evidence") or {},
        decision=decision,
        chart=timeline_svg([p.model_dump() for p in detail.readings], marks),
        mine=d["status"] == "open" and d["claimed_by"] == me,
        held_by_other=d["status"] == "open" and d["claimed_by"] not in (None, me) and bool(d["held"]),
        rejection_reasons=REJECTION_REASONS,
        quarantined=quarantined,
        error=error,
        lease_s=request.app[SETTINGS].review_lease_s,
    )


async def dispute_page_get(request: web.Request) -> web.Response:
    return await dispute_page(request)


async def _dispute_post(request: web.Request) -> tuple[Session, int, Any]:
    session = await require(request, "reviewer")
    form = await read_small_form(request, PAGE_FORM_LIMIT)
    check_csrf(request, session.csrf, str(form.get("csrf", "")))
    return session, page_id(request), form


async def dispute_claim(request: web.Request) -> web.StreamResponse:
    try:
        session, did, _ = await _dispute_post(request)
    except CsrfRefused:
        return csrf_failure(request, await current_session(request))
    try:
        async with request.app[POOL].acquire() as conn:
            await claim_dispute(conn, did, session.principal.subject, request.app[SETTINGS].review_lease_s, request.get(REQUEST_ID))
    except ReviewRefused as e:
        return await dispute_page(request, error=e.message, status=refusal_status(e))
    raise redirect(f"/review/disputes/{did}")


async def dispute_release(request: web.Request) -> web.StreamResponse:
    try:
        session, did, _ = await _dispute_post(request)
    except CsrfRefused:
        return csrf_failure(request, await current_session(request))
    try:
        async with request.app[POOL].acquire() as conn:
            await release_dispute(conn, did, session.principal.subject, request.get(REQUEST_ID))
    except ReviewRefused as e:
        return await dispute_page(request, error=e.message, status=refusal_status(e))
    raise redirect("/review")


async def dispute_renew(request: web.Request) -> web.Response:
    """Called by the dispute page's script while it is open (JSON, CSRF in a header)."""
    session = await require(request, "reviewer")
    try:
        check_csrf(request, session.csrf, None)
    except CsrfRefused:
        return web.json_response({"error": {"code": "csrf"}}, status=403)
    try:
        async with request.app[POOL].acquire() as conn:
            d = await renew_dispute(conn, page_id(request), session.principal.subject, request.app[SETTINGS].review_lease_s)
    except ReviewRefused as e:
        return web.json_response({"error": {"code": e.code, "message": e.message}}, status=refusal_status(e))
    return web.json_response({"lease_until": d["lease_until"].isoformat()}, headers={"Cache-Control": "no-store"})


async def dispute_resolve(request: web.Request) -> web.StreamResponse:
    try:
        session, did, form = await _dispute_post(request)
    except CsrfRefused:
        return csrf_failure(request, await current_session(request))
    action = str(form.get("action", ""))
    raw_value = str(form.get("value_km", "")).strip().replace(",", "")
    note = str(form.get("note", "")).strip()[:1000] or None
    reason = str(form.get("reason", "")) or None
    if action not in ("accept", "correct", "reject"):
        return await dispute_page(request, error="Choose accept, correct or reject.", status=422)
    value_km = None
    if action == "correct":
        if not _digits(raw_value, 7):
            return await dispute_page(request, error=reason_text("invalid_claimed_km", lang_of(request)), status=422)
        value_km = int(raw_value)
    try:
        async with request.app[POOL].acquire() as conn:
            await resolve_dispute(
                conn,
                did,
                session.principal.subject,
                action=action,  # type: ignore[arg-type]
                value_km=value_km,
                reason=reason if action == "reject" else None,
                note=note,
                request_id=request.get(REQUEST_ID),
                limits=limits_from(request.app[SETTINGS]),
            )
    except ReviewRefused as e:
        return await dispute_page(request, error=_refusal_text(e), status=refusal_status(e))
    raise redirect(f"/review?done={did}")


async def review_photo(request: web.Request) -> web.StreamResponse:
    await require(request, "reviewer")
    try:
        return await photo_response(request, request.match_info["sha256"])
    except ApiError as e:
        return web.Response(status=e.status, text=e.message, headers=SECURITY_HEADERS)
