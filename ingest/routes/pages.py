"""The web pages: the citizens' photo upload and the reviewers' queue and dispute view.

Pages authenticate with the same API tokens: the sign-in form takes the token and keeps it in an
HttpOnly, SameSite=Strict cookie. Every form carries a CSRF token (an HMAC of the session with
the service secret; before sign-in, of a random pre-session cookie) and every POST also refuses a
foreign Origin. Templates are Jinja2 with autoescaping, so whatever a user typed is escaped on
every page, and a strict Content-Security-Policy lets nothing load or run that the service did
not serve itself (no inline scripts or styles, no CDN).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import asyncpg
from aiohttp import web
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from ingest.api import ApiError, read_small_form
from ingest.auth import Principal
from ingest.ingestion import limits_from
from ingest.pages.messages import Lang, reason_text, status_text, ui_text
from ingest.review_actions import (
    claim_dispute,
    claim_next_dispute,
    release_dispute,
    renew_dispute,
    resolve_dispute,
)
from ingest.routes.photos import (
    UPLOAD_SLOTS,
    check_participation,
    load_submission,
    read_upload_form,
    store_upload,
)
from ingest.routes.review import dispute_detail, photo_response
from ingest.state import POOL, REQUEST_ID, SETTINGS
from prorate.calendar import SEOUL
from storage.disputes import REJECTION_REASONS, QueueFilter, count_open, get_dispute, list_disputes
from storage.evaluation import current_results_of_owner
from storage.photos import submissions_of_owner
from storage.tokens import check_token, create_session, revoke_token, touch_session
from storage.vehicles import list_vehicles, participations_of

#: The sign-in and sign-out forms hold a token, a CSRF token and a path: a few hundred bytes.
#: Anyone may post them, so a larger body is refused before it is read.
SIGN_IN_FORM_LIMIT = 8 * 1024
#: The reviewers' forms: a note of at most 1,000 characters is the largest field.
PAGE_FORM_LIMIT = 64 * 1024

SESSION_COOKIE = "cm_session"
PRE_COOKIE = "cm_pre"
LANG_COOKIE = "cm_lang"

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
}

ENV = Environment(
    loader=PackageLoader("ingest.pages", "templates"),
    autoescape=select_autoescape(["html"], default_for_string=True, default=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


# -- sessions, language, CSRF -------------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    principal: Principal
    token: str
    csrf: str


def _hmac(request: web.Request, purpose: str, value: str) -> str:
    key = request.app[SETTINGS].secret_bytes()
    return hmac.new(key, f"{purpose}|{value}".encode(), hashlib.sha256).hexdigest()


def session_csrf(request: web.Request, token: str) -> str:
    """Tied to the session: a token from another session (or none) does not verify."""
    return _hmac(request, "csrf", hashlib.sha256(token.encode()).hexdigest())


async def current_session(request: web.Request) -> Session | None:
    """The page session of the cookie, when it is one that is neither expired nor revoked; its
    idle expiry slides forward once half of it has passed."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token or len(token) > 200:
        return None
    record = (await check_token(request.app[POOL], token, "session")).record
    if record is None:
        return None
    settings = request.app[SETTINGS]
    if record.expires_at is not None and (
        record.expires_at - datetime.now(UTC) < timedelta(seconds=settings.session_idle_s / 2)
    ):
        await touch_session(
            request.app[POOL], record, idle_s=settings.session_idle_s, max_s=settings.session_max_s
        )
    return Session(Principal(record.role, record.subject, record.id), token, session_csrf(request, token))


def lang_of(request: web.Request) -> Lang:
    chosen = request.query.get("lang") or request.cookies.get(LANG_COOKIE)
    if chosen in ("ko", "en"):
        return chosen  # type: ignore[return-value]
    accept = request.headers.get("Accept-Language", "").lower()
    return "ko" if accept.startswith("ko") or not accept else "en"


def _secure(request: web.Request) -> bool:
    url = request.app[SETTINGS].public_url or ""
    return url.startswith("https://") or request.secure


def _own_origin(request: web.Request) -> str:
    public = request.app[SETTINGS].public_url
    if public:
        return public.rstrip("/")
    return f"{request.scheme}://{request.host}"


def check_origin(request: web.Request) -> None:
    """Browsers send Origin on every POST: one that is not ours is a cross-site request."""
    origin = request.headers.get("Origin")
    if origin is not None and origin.rstrip("/") != _own_origin(request):
        raise CsrfRefused()


def check_csrf(request: web.Request, expected: str, submitted: str | None) -> None:
    check_origin(request)
    header = request.headers.get("X-CSRF-Token")
    given = submitted or header or ""
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise CsrfRefused()


class CsrfRefused(Exception):
    pass


class PageStop(Exception):
    """Stop a page handler with this response (errors are pages here, not JSON)."""

    def __init__(self, response: web.StreamResponse) -> None:
        super().__init__(response.status)
        self.response = response


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def page(handler: Handler) -> Handler:
    """Every page handler: refused CSRF and early stops become pages with their status."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except PageStop as stop:
            return stop.response
        except CsrfRefused:
            session = await current_session(request)
            if _wants_json(request):
                return web.json_response(
                    {"error": {"code": "csrf", "message": ui_text("csrf.bad", lang_of(request))}}, status=403
                )
            return _csrf_failure(request, session)

    return wrapped


# -- rendering ----------------------------------------------------------------------------------


def _fmt_dt(value: datetime | None, lang: Lang) -> str:
    if value is None:
        return "–"
    local = value.astimezone(SEOUL)
    return local.strftime("%Y-%m-%d %H:%M")


def _fmt_age(seconds: int, lang: Lang) -> str:
    if seconds < 3600:
        n, unit = seconds // 60, ("min", "분")
    elif seconds < 86400:
        n, unit = seconds // 3600, ("h", "시간")
    else:
        n, unit = seconds // 86400, ("d", "일")
    return f"{n} {unit[0] if lang == 'en' else unit[1]}"


def render(
    request: web.Request, template: str, *, status: int = 200, session: Session | None = None, **ctx: Any
) -> web.Response:
    lang = lang_of(request)
    here = request.rel_url.path
    other: Lang = "en" if lang == "ko" else "ko"
    html = ENV.get_template(template).render(
        lang=lang,
        t=lambda key: ui_text(key, lang),
        reason=lambda code: reason_text(code, lang),
        status_text=lambda s: status_text(s, lang),
        when=lambda v: _fmt_dt(v, lang),
        age=lambda s: _fmt_age(int(s), lang),
        session=session,
        csrf=session.csrf if session else "",
        lang_url=here + "?" + urlencode({**{k: v for k, v in request.query.items() if k != "lang"}, "lang": other}),
        **ctx,
    )
    resp = web.Response(text=html, content_type="text/html", status=status, headers=SECURITY_HEADERS)
    if request.query.get("lang") in ("ko", "en"):
        resp.set_cookie(LANG_COOKIE, lang, httponly=True, samesite="Strict", secure=_secure(request), path="/")
    return resp


def _redirect(location: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(location, headers=SECURITY_HEADERS)


#: Characters a redirect target keeps as they are; anything else is percent-encoded.
_PATH_SAFE = "/?&=%-._~!$'()*+,;:@"


def _safe_next(target: str | None) -> str:
    """Only a path on this site, whatever a browser would make of it: browsers drop tabs and
    newlines from URLs, read a backslash as a slash and `//host` as another site, so any control
    character or backslash, a second leading slash, or a scheme or host is refused. What passes
    goes out percent-encoded (ASCII only)."""
    if not target or len(target) > 2000 or not target.startswith("/") or target.startswith("//"):
        return "/"
    if any(c < " " or c in "\\\x7f" for c in target):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/") or parts.path.startswith("//"):
        return "/"
    return quote(target, safe=_PATH_SAFE + "#")


async def _require(request: web.Request, *roles: str) -> Session:
    session = await current_session(request)
    if session is None:
        raise _redirect("/sign-in?" + urlencode({"next": request.rel_url.path_qs}))
    if session.principal.role not in roles:
        raise PageStop(
            render(request, "message.html", status=403, session=session, message=ui_text("forbidden", lang_of(request)))
        )
    return session


def _csrf_failure(request: web.Request, session: Session | None) -> web.Response:
    return render(request, "message.html", status=403, session=session, message=ui_text("csrf.bad", lang_of(request)))


def _wants_json(request: web.Request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


# -- sign in and out ----------------------------------------------------------------------------


async def home(request: web.Request) -> web.StreamResponse:
    session = await current_session(request)
    if session is None:
        raise _redirect("/sign-in")
    if session.principal.role == "reviewer":
        raise _redirect("/review")
    if session.principal.role == "citizen":
        raise _redirect("/upload")
    return render(request, "message.html", status=403, session=session, message=ui_text("forbidden", lang_of(request)))


async def sign_in_form(request: web.Request, error: str | None = None, status: int = 200) -> web.Response:
    nonce = request.cookies.get(PRE_COOKIE)
    if not nonce or len(nonce) != 43:
        nonce = secrets.token_urlsafe(32)
    resp = render(
        request,
        "sign_in.html",
        status=status,
        pre_csrf=_hmac(request, "pre", nonce),
        next=_safe_next(request.query.get("next")),
        error=error,
    )
    resp.set_cookie(PRE_COOKIE, nonce, httponly=True, samesite="Strict", secure=_secure(request), path="/sign-in")
    return resp


async def sign_in_page(request: web.Request) -> web.Response:
    return await sign_in_form(request)


async def sign_in(request: web.Request) -> web.StreamResponse:
    form = await read_small_form(request, SIGN_IN_FORM_LIMIT)
    nonce = request.cookies.get(PRE_COOKIE, "")
    try:
        check_csrf(request, _hmac(request, "pre", nonce) if nonce else "-", str(form.get("csrf", "")))
    except CsrfRefused:
        return _csrf_failure(request, None)
    token = str(form.get("token", "")).strip()
    checked = await check_token(request.app[POOL], token) if 0 < len(token) <= 200 else None
    if checked is None or checked.record is None:
        problem = checked.problem if checked is not None else None
        message = ui_text(_SIGN_IN_PROBLEMS.get(problem or "", "sign_in.bad"), lang_of(request))
        return await sign_in_form(request, message, status=401)
    record = checked.record
    # The cookie holds a session token of its own (short-lived, revoked at sign-out), never the
    # API token itself.
    settings = request.app[SETTINGS]
    async with request.app[POOL].acquire() as conn:
        _, session_token = await create_session(
            conn, record, idle_s=settings.session_idle_s, max_s=settings.session_max_s
        )
    target = _safe_next(str(form.get("next", "")))
    if target == "/":
        target = "/review" if record.role == "reviewer" else "/upload"
    resp = _redirect(target)
    resp.set_cookie(
        SESSION_COOKIE, session_token, httponly=True, samesite="Strict", secure=_secure(request), path="/"
    )
    resp.del_cookie(PRE_COOKIE, path="/sign-in")
    raise resp


async def sign_out(request: web.Request) -> web.StreamResponse:
    session = await current_session(request)
    if session is not None:
        form = await read_small_form(request, SIGN_IN_FORM_LIMIT)
        try:
            check_csrf(request, session.csrf, str(form.get("csrf", "")))
        except CsrfRefused:
            return _csrf_failure(request, session)
        # the session ends on the server too: a copied cookie is worthless from now on
        async with request.app[POOL].acquire() as conn:
            await revoke_token(conn, session.principal.token_id, "sign_out")
    resp = _redirect("/sign-in")
    resp.del_cookie(SESSION_COOKIE, path="/")
    raise resp


#: Why a token was refused at sign-in, in the page's words.
_SIGN_IN_PROBLEMS = {"token_expired": "sign_in.expired", "token_revoked": "sign_in.revoked"}


# -- citizens -----------------------------------------------------------------------------------


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
    session = await _require(request, "citizen")
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
    session = await _require(request, "citizen")
    lang = lang_of(request)
    check_origin(request)
    try:
        async with request.app[UPLOAD_SLOTS]:
            form = await read_upload_form(request, frozenset({"csrf", "participation_id"}))
            check_csrf(request, session.csrf, form.extra.get("csrf"))
            raw_pid = form.extra.get("participation_id", "")
            if not raw_pid.isdigit() or len(raw_pid) > 18:
                raise ApiError(404, "participation_not_found", "No participation has this id.")
            pid = int(raw_pid)
            await check_participation(request, session.principal, pid, form.stage)
            row, _ = await store_upload(request, session.principal, pid, form)
    except CsrfRefused:
        if _wants_json(request):
            return web.json_response({"error": {"code": "csrf", "message": ui_text("csrf.bad", lang)}}, status=403)
        return _csrf_failure(request, session)
    except ApiError as e:
        message = e.reasons[0].message_ko if (lang == "ko" and e.reasons and e.reasons[0].message_ko) else (
            e.reasons[0].message if e.reasons else e.message
        )
        if _wants_json(request):
            return web.json_response({"error": {"code": e.code, "message": message}}, status=e.status)
        return await upload_page(request, error=message, status=e.status)
    url = f"/submissions/{row['id']}"
    if _wants_json(request):
        return web.json_response(
            {"id": row["id"], "url": url, "status_url": f"{url}/status"}, status=202, headers=SECURITY_HEADERS
        )
    raise _redirect(url)


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
    session = await _require(request, "citizen")
    sid = _page_id(request)
    try:
        row = await load_submission(request, session.principal, sid)
    except ApiError:
        return render(request, "message.html", status=404, session=session, message=ui_text("not_found", lang_of(request)))
    return render(request, "submission.html", session=session, s=row, view=_status_json(row, lang_of(request)))


async def submission_status(request: web.Request) -> web.Response:
    session = await _require(request, "citizen")
    try:
        row = await load_submission(request, session.principal, _page_id(request))
    except ApiError as e:
        return web.json_response({"error": {"code": e.code}}, status=404)
    return web.json_response(_status_json(row, lang_of(request)), headers={"Cache-Control": "no-store"})


def _page_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 18:
        raise PageStop(render(request, "message.html", status=404, message=ui_text("not_found", lang_of(request))))
    return int(raw)


# -- reviewers ----------------------------------------------------------------------------------


def _filter_from(values: Any) -> tuple[QueueFilter, dict[str, str]]:
    reason = str(values.get("reason", "") or "")[:80]
    district = str(values.get("district", "") or "")[:40]
    hours = str(values.get("min_age_h", "") or "")
    min_age = int(hours) * 3600 if hours.isdigit() and len(hours) < 6 else None
    shown = {"reason": reason, "district": district, "min_age_h": hours if min_age is not None else ""}
    return QueueFilter(reason=reason or None, district=district or None, min_age_s=min_age), shown


async def queue_page(request: web.Request) -> web.Response:
    session = await _require(request, "reviewer")
    f, shown = _filter_from(request.query)
    pool = request.app[POOL]
    rows = await list_disputes(pool, f, limit=100)
    districts = [r["district"] for r in await pool.fetch(
        "select distinct district from disputes where status = 'open' and district is not null order by 1 limit 100"
    )]
    reasons = [r["reason"] for r in await pool.fetch(
        "select distinct unnest(reasons) as reason from disputes where status = 'open' order by 1 limit 100"
    )]
    done = request.query.get("done", "")
    return render(
        request,
        "queue.html",
        session=session,
        disputes=rows,
        open_total=await count_open(pool, f),
        shown=shown,
        districts=districts,
        reasons=reasons,
        empty=request.query.get("empty") == "1",
        done=int(done) if done.isdigit() and len(done) < 18 else None,
        me=session.principal.subject,
    )


async def claim_next_page(request: web.Request) -> web.StreamResponse:
    session = await _require(request, "reviewer")
    form = await read_small_form(request, PAGE_FORM_LIMIT)
    try:
        check_csrf(request, session.csrf, str(form.get("csrf", "")))
    except CsrfRefused:
        return _csrf_failure(request, session)
    f, shown = _filter_from(form)
    async with request.app[POOL].acquire() as conn:
        d = await claim_next_dispute(
            conn, session.principal.subject, request.app[SETTINGS].review_lease_s, f, request.get(REQUEST_ID)
        )
    if d is None:
        raise _redirect("/review?" + urlencode({**{k: v for k, v in shown.items() if v}, "empty": "1"}))
    raise _redirect(f"/review/disputes/{d['id']}")


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


async def dispute_page(request: web.Request, error: str | None = None, status: int = 200) -> web.Response:
    session = await _require(request, "reviewer")
    pool = request.app[POOL]
    d = await get_dispute(pool, _page_id(request))
    if d is None:
        return render(request, "message.html", status=404, session=session, message=ui_text("not_found", lang_of(request)))
    detail = await dispute_detail(pool, d, "/review/photos/{}")
    me = session.principal.subject
    mine = d["status"] == "open" and d["claimed_by"] == me
    held_by_other = d["status"] == "open" and d["claimed_by"] not in (None, me) and bool(d["held"])
    decision = detail.decision or {}
    evidence = decision.get("evidence") or {}
    sub = detail.submission
    marks: list[dict[str, Any]] = []
    if sub is not None:
        at_raw = decision.get("recorded_at")
        at = datetime.fromisoformat(at_raw) if at_raw else sub.uploaded_at
        ocr_km = ((detail.ocr.get("dashboard") or {}).get("read") or {}).get("value_km")
        marks = [
            {"kind": "claimed", "km": sub.claimed_km, "at": at},
            {"kind": "ocr", "km": ocr_km, "at": at},
        ]
    quarantined = None
    if d["quarantined_reading_id"] is not None:
        quarantined = await pool.fetchrow("select * from quarantined_readings where id = $1", d["quarantined_reading_id"])
        if quarantined is not None and quarantined["odometer_m"] is not None:
            marks.append({"kind": "quarantined", "km": quarantined["odometer_m"] / 1000, "at": quarantined["recorded_at"]})
    chart = timeline_svg([p.model_dump() for p in detail.readings], marks)
    return render(
        request,
        "dispute.html",
        status=status,
        session=session,
        d=d,
        detail=detail,
        sub=sub,
        ocr=detail.ocr,
        evidence=evidence,
        decision=decision,
        chart=chart,
        mine=mine,
        held_by_other=held_by_other,
        rejection_reasons=REJECTION_REASONS,
        quarantined=quarantined,
        error=error,
        lease_s=request.app[SETTINGS].review_lease_s,
    )


async def dispute_page_get(request: web.Request) -> web.Response:
    return await dispute_page(request)


async def _dispute_post(request: web.Request) -> tuple[Session, int, Any]:
    session = await _require(request, "reviewer")
    form = await read_small_form(request, PAGE_FORM_LIMIT)
    check_csrf(request, session.csrf, str(form.get("csrf", "")))
    return session, _page_id(request), form


async def dispute_claim(request: web.Request) -> web.StreamResponse:
    try:
        session, did, _ = await _dispute_post(request)
    except CsrfRefused:
        return _csrf_failure(request, await current_session(request))
    try:
        async with request.app[POOL].acquire() as conn:
            await claim_dispute(conn, did, session.principal.subject, request.app[SETTINGS].review_lease_s, request.get(REQUEST_ID))
    except ApiError as e:
        return await dispute_page(request, error=e.message, status=e.status)
    raise _redirect(f"/review/disputes/{did}")


async def dispute_release(request: web.Request) -> web.StreamResponse:
    try:
        session, did, _ = await _dispute_post(request)
    except CsrfRefused:
        return _csrf_failure(request, await current_session(request))
    try:
        async with request.app[POOL].acquire() as conn:
            await release_dispute(conn, did, session.principal.subject, request.get(REQUEST_ID))
    except ApiError as e:
        return await dispute_page(request, error=e.message, status=e.status)
    raise _redirect("/review")


async def dispute_renew(request: web.Request) -> web.Response:
    """Called by the dispute page's script while it is open (JSON, CSRF in a header)."""
    session = await _require(request, "reviewer")
    try:
        check_csrf(request, session.csrf, None)
    except CsrfRefused:
        return web.json_response({"error": {"code": "csrf"}}, status=403)
    try:
        async with request.app[POOL].acquire() as conn:
            d = await renew_dispute(conn, _page_id(request), session.principal.subject, request.app[SETTINGS].review_lease_s)
    except ApiError as e:
        return web.json_response({"error": {"code": e.code, "message": e.message}}, status=e.status)
    return web.json_response({"lease_until": d["lease_until"].isoformat()}, headers={"Cache-Control": "no-store"})


async def dispute_resolve(request: web.Request) -> web.StreamResponse:
    try:
        session, did, form = await _dispute_post(request)
    except CsrfRefused:
        return _csrf_failure(request, await current_session(request))
    action = str(form.get("action", ""))
    raw_value = str(form.get("value_km", "")).strip().replace(",", "")
    note = str(form.get("note", "")).strip()[:1000] or None
    reason = str(form.get("reason", "")) or None
    if action not in ("accept", "correct", "reject"):
        return await dispute_page(request, error="Choose accept, correct or reject.", status=422)
    value_km = None
    if action == "correct":
        if not raw_value.isdigit() or len(raw_value) > 7:
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
    except ApiError as e:
        detail = "; ".join(r.message for r in e.reasons)
        return await dispute_page(request, error=e.message + (f" ({detail})" if detail else ""), status=e.status)
    raise _redirect(f"/review?done={did}")


async def review_photo(request: web.Request) -> web.StreamResponse:
    await _require(request, "reviewer")
    try:
        return await photo_response(request, request.match_info["sha256"])
    except ApiError as e:
        return web.Response(status=e.status, text=e.message, headers=SECURITY_HEADERS)


# -- static files -------------------------------------------------------------------------------

_STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}


@functools.cache
def _static_names() -> frozenset[str]:
    """The files shipped in ingest/pages/static (read once): nothing else is ever looked up."""
    folder = resources.files("ingest.pages") / "static"
    return frozenset(
        p.name for p in folder.iterdir() if p.is_file() and any(p.name.endswith(s) for s in _STATIC_TYPES)
    )


@functools.lru_cache(maxsize=64)
def _static_file(name: str) -> tuple[bytes, str]:
    path = resources.files("ingest.pages") / "static" / name
    return path.read_bytes(), _STATIC_TYPES[name[name.rindex(".") :]]


def _static(name: str) -> tuple[bytes, str] | None:
    """A shipped static file, cached; any other name is refused before it is cached or looked up,
    so requests for made-up names cannot grow the cache."""
    if name not in _static_names():
        return None
    return _static_file(name)


async def static(request: web.Request) -> web.Response:
    found = _static(request.match_info["name"])
    if found is None:
        return web.Response(status=404, text="not found", headers=SECURITY_HEADERS)
    body, ctype = found
    return web.Response(
        body=body,
        content_type=ctype,
        charset="utf-8",
        headers={**SECURITY_HEADERS, "Cache-Control": "public, max-age=300"},
    )


# -- wiring -------------------------------------------------------------------------------------


def install_plain_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/", page(home))
    r.add_get("/sign-in", page(sign_in_page))
    r.add_post("/sign-in", page(sign_in))
    r.add_post("/sign-out", page(sign_out))
    r.add_get("/upload", page(upload_page_get))
    r.add_post("/upload", page(upload_post))
    r.add_get("/submissions/{id}", page(submission_page))
    r.add_get("/submissions/{id}/status", page(submission_status))
    r.add_get("/review", page(queue_page))
    r.add_post("/review/claim", page(claim_next_page))
    r.add_get("/review/disputes/{id}", page(dispute_page_get))
    r.add_post("/review/disputes/{id}/claim", page(dispute_claim))
    r.add_post("/review/disputes/{id}/release", page(dispute_release))
    r.add_post("/review/disputes/{id}/renew", page(dispute_renew))
    r.add_post("/review/disputes/{id}/resolve", page(dispute_resolve))
    r.add_get("/review/photos/{sha256}", page(review_photo))
    r.add_get("/static/{name}", static)

