"""The citizens' pages: upload a dashboard and a plate photo, then follow the submission.

The upload form (and its script) post the same multipart body as the API and go through the same
checks (`ingest.routes.photos`), plus CSRF; refusals come back in the citizen's language.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web

from ingest.api import ApiError, parse_id
from ingest.pages.messages import Lang, reason_text, status_text
from ingest.routes.pages.rendering import (
    SECURITY_HEADERS,
    lang_of,
    message_page,
    page_id,
    redirect,
    render,
    wants_json,
)
from ingest.routes.pages.sessions import (
    CsrfRefused,
    check_csrf,
    check_origin,
    csrf_failure,
    csrf_failure_json,
    require,
)
from ingest.routes.photos import (
    UPLOAD_SLOTS,
    check_participation,
    load_submission,
    read_upload_form,
    store_upload,
)
from ingest.state import POOL
from storage.evaluation import current_results_of_owner
from storage.photos import submissions_of_owner
from storage.vehicles import list_vehicles, participations_of


async def _participations(request: web.Request, owner: str) -> list[dict[str, Any]]:
    pool = request.app[POOL]
    vehicles = {v["id"]: v for v in await list_vehicles(pool, owner)}
    parts = await participations_of(pool, list(vehicles))
    return [
        {
            "id": p["id"],
            "plate": vehicles[p["vehicle_id"]]["plate"],
            "program": p["program"],
            "season_year": p["season_year"],
            "start_done": p["start_reading_id"] is not None,
            "end_done": p["end_reading_id"] is not None,
        }
        for p in parts
        if p["status"] == "active"
    ]


async def upload_page(request: web.Request, error: str | None = None, status: int = 200) -> web.Response:
    session = await require(request, "citizen")
    owner = session.principal.subject
    return render(
        request,
        "upload.html",
        status=status,
        session=session,
        participations=await _participations(request, owner),
        recent=await submissions_of_owner(request.app[POOL], owner, 10),
        results=await current_results_of_owner(request.app[POOL], owner, 10),
        error=error,
    )


async def upload_page_get(request: web.Request) -> web.Response:
    return await upload_page(request)


async def upload_post(request: web.Request) -> web.StreamResponse:
    """The page's form (and its script) post here: same checks as the API, plus CSRF."""
    session = await require(request, "citizen")
    lang = lang_of(request)
    check_origin(request)
    try:
        async with request.app[UPLOAD_SLOTS]:
            form = await read_upload_form(request, frozenset({"csrf", "participation_id"}))
            check_csrf(request, session.csrf, form.extra.get("csrf"))
            pid = parse_id(form.extra.get("participation_id", ""))
            if pid is None:
                raise ApiError(404, "participation_not_found", "No participation has this id.")
            await check_participation(request, session.principal, pid, form.stage)
            row, _ = await store_upload(request, session.principal, pid, form)
    except CsrfRefused:
        if wants_json(request):
            return csrf_failure_json(request)
        return csrf_failure(request, session)
    except ApiError as e:
        message = _refusal_text(e, lang)
        if wants_json(request):
            return web.json_response({"error": {"code": e.code, "message": message}}, status=e.status)
        return await upload_page(request, error=message, status=e.status)
    url = f"/submissions/{row['id']}"
    if wants_json(request):
        return web.json_response(
            {"id": row["id"], "url": url, "status_url": f"{url}/status"}, status=202, headers=SECURITY_HEADERS
        )
    raise redirect(url)


def _refusal_text(e: ApiError, lang: Lang) -> str:
    """The first reason, in the citizen's language when it has one; else the error's message."""
    if not e.reasons:
        return e.message
    first = e.reasons[0]
    return first.message_ko if lang == "ko" and first.message_ko else first.message


def _status_json(row: asyncpg.Record, lang: Lang) -> dict[str, Any]:
    reasons = list(row["reasons"]) if row["status"] != "accepted" else []
    if row["rejection_reason"]:
        reasons = [row["rejection_reason"]]
    return {
        "id": row["id"],
        "status": row["status"],
        "message": status_text(row["status"], lang),
        "reasons": [reason_text(r, lang) for r in reasons],
        "final": row["status"] != "processing",
    }


async def submission_page(request: web.Request) -> web.Response:
    session = await require(request, "citizen")
    sid = page_id(request)
    try:
        row = await load_submission(request, session.principal, sid)
    except ApiError:
        return message_page(request, "not_found", 404, session)
    return render(request, "submission.html", session=session, s=row, view=_status_json(row, lang_of(request)))


async def submission_status(request: web.Request) -> web.Response:
    """Polled by the submission page's script until the machine (or a reviewer) decided."""
    session = await require(request, "citizen")
    try:
        row = await load_submission(request, session.principal, page_id(request))
    except ApiError as e:
        return web.json_response({"error": {"code": e.code}}, status=404)
    return web.json_response(_status_json(row, lang_of(request)), headers={"Cache-Control": "no-store"})
