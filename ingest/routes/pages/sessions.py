"""Page sessions, CSRF and sign-in.

Pages authenticate with the same API tokens: the sign-in form takes the token and the cookie then
holds a session token of its own (short-lived, revoked at sign-out; HttpOnly, SameSite=Strict),
never the API token itself. Every form carries a CSRF token (an HMAC of the session with the
service secret; before sign-in, of a random pre-session cookie) and every POST also refuses a
foreign Origin.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlencode, urlsplit

from aiohttp import web

from ingest.api import read_small_form
from ingest.auth import Principal
from ingest.oidc import RELYING_PARTY, OidcError
from ingest.pages.messages import ui_text
from ingest.routes.pages.rendering import (
    PageStop,
    is_secure,
    lang_of,
    message_page,
    redirect,
    render,
    wants_json,
)
from ingest.state import POOL, SETTINGS
from storage.tokens import check_token, create_session, revoke_token, touch_session

#: The sign-in and sign-out forms hold a token, a CSRF token and a path: a few hundred bytes.
#: Anyone may post them, so a larger body is refused before it is read.
SIGN_IN_FORM_LIMIT = 8 * 1024

SESSION_COOKIE = "cm_session"
PRE_COOKIE = "cm_pre"


@dataclass(frozen=True)
class Session:
    principal: Principal
    token: str
    csrf: str
    #: The identity provider's issuer when signed in with OpenID Connect (routes/pages/oidc_sign_in.py).
    idp: str | None = None


class CsrfRefused(Exception):
    pass


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
    return Session(
        Principal(record.role, record.subject, record.id), token, session_csrf(request, token), record.idp
    )


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


def csrf_failure(request: web.Request, session: Session | None) -> web.Response:
    return message_page(request, "csrf.bad", 403, session)


def csrf_failure_json(request: web.Request) -> web.Response:
    return web.json_response({"error": {"code": "csrf", "message": ui_text("csrf.bad", lang_of(request))}}, status=403)


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
            if wants_json(request):
                return csrf_failure_json(request)
            return csrf_failure(request, session)

    return wrapped


async def require(request: web.Request, *roles: str) -> Session:
    """The signed-in session of one of these roles; else to the sign-in page, or forbidden."""
    session = await current_session(request)
    if session is None:
        raise redirect("/sign-in?" + urlencode({"next": request.rel_url.path_qs}))
    if session.principal.role not in roles:
        raise PageStop(message_page(request, "forbidden", 403, session))
    return session


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


# -- sign in and out ----------------------------------------------------------------------------


#: Where each role starts after signing in (or at `/`).
LANDING_PAGES = {"citizen": "/upload", "reviewer": "/review", "operator": "/operator"}


async def home(request: web.Request) -> web.StreamResponse:
    session = await current_session(request)
    if session is None:
        raise redirect("/sign-in")
    landing = LANDING_PAGES.get(session.principal.role)
    if landing is not None:
        raise redirect(landing)
    return message_page(request, "forbidden", 403, session)


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
        oidc_label=settings.oidc_label if (settings := request.app[SETTINGS]).oidc_enabled() else None,
    )
    resp.set_cookie(PRE_COOKIE, nonce, httponly=True, samesite="Strict", secure=is_secure(request), path="/sign-in")
    return resp


async def sign_in_page(request: web.Request) -> web.Response:
    return await sign_in_form(request)


#: Why a token was refused at sign-in, in the page's words.
_SIGN_IN_PROBLEMS = {"token_expired": "sign_in.expired", "token_revoked": "sign_in.revoked"}


async def sign_in(request: web.Request) -> web.StreamResponse:
    form = await read_small_form(request, SIGN_IN_FORM_LIMIT)
    nonce = request.cookies.get(PRE_COOKIE, "")
    try:
        check_csrf(request, _hmac(request, "pre", nonce) if nonce else "-", str(form.get("csrf", "")))
    except CsrfRefused:
        return csrf_failure(request, None)
    token = str(form.get("token", "")).strip()
    checked = await check_token(request.app[POOL], token) if 0 < len(token) <= 200 else None
    if checked is None or checked.record is None:
        problem = checked.problem if checked is not None else None
        message = ui_text(_SIGN_IN_PROBLEMS.get(problem or "", "sign_in.bad"), lang_of(request))
        return await sign_in_form(request, message, status=401)
    record = checked.record
    settings = request.app[SETTINGS]
    async with request.app[POOL].acquire() as conn:
        _, session_token = await create_session(
            conn, record, idle_s=settings.session_idle_s, max_s=settings.session_max_s
        )
    target = _safe_next(str(form.get("next", "")))
    if target == "/":
        target = LANDING_PAGES.get(record.role, "/")
    resp = redirect(target)
    resp.set_cookie(
        SESSION_COOKIE, session_token, httponly=True, samesite="Strict", secure=is_secure(request), path="/"
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
            return csrf_failure(request, session)
        # the session ends on the server too: a copied cookie is worthless from now on
        async with request.app[POOL].acquire() as conn:
            await revoke_token(conn, session.principal.token_id, "sign_out")
    rp = request.app.get(RELYING_PARTY)
    if session is not None and session.idp is not None and rp is not None and session.idp == rp.issuer:
        # RP-initiated logout: the provider ends its own session too, then sends the browser back.
        # A page of ours goes there (CSP form-action would stop a form's redirect to another site).
        logout = None
        with contextlib.suppress(OidcError):
            logout = rp.logout_url(await rp.discovery(), _own_origin(request) + "/sign-in")
        if logout is not None:
            page_resp = render(request, "oidc_signed_out.html", target=logout)
            page_resp.del_cookie(SESSION_COOKIE, path="/")
            return page_resp
    resp = redirect("/sign-in")
    resp.del_cookie(SESSION_COOKIE, path="/")
    raise resp
