"""Sign-in at the identity provider (OpenID Connect, authorization code + PKCE) for the pages.

`GET /sign-in/oidc` starts a sign-in: a random state, nonce and PKCE verifier are kept server-side
(storage/oidc_logins.py, single use, expiring) and the state also in a cookie of this browser, then
the browser goes to the provider. `GET /auth/callback` takes the login back by its state exactly
once, checks that this browser started it, trades the code for tokens, verifies the ID token
(ingest/oidc.py), matches the person to an owner id by a claim and a role by a claim or a
mapping, and opens an ordinary page session (same expiry and sign-out as token sign-in). Every
refusal is a 4xx page (or JSON) naming its reason.
"""

from __future__ import annotations

import secrets

from aiohttp import web

from ingest.oidc import RELYING_PARTY, OidcError, RelyingParty, new_pkce, owner_of, role_for
from ingest.pages.messages import ui_text
from ingest.routes.pages.rendering import is_secure, lang_of, message_page, redirect, render, wants_json
from ingest.routes.pages.sessions import SESSION_COOKIE, _own_origin, _safe_next
from ingest.state import POOL, SETTINGS
from storage.oidc_logins import start_login, take_login
from storage.tokens import create_idp_session

#: Binds a started sign-in to the browser that started it (login CSRF). SameSite=Lax: the
#: provider's redirect back is a cross-site top-level navigation.
STATE_COOKIE = "cm_oidc"
CALLBACK_PATH = "/auth/callback"

#: Refusals that concern the state (the request itself is wrong): 400; the rest are 401/403.
_STATE_PROBLEMS = {"state_unknown", "state_replayed", "state_expired", "state_mismatch"}


def install_oidc(app: web.Application) -> None:
    """The routes always exist; without configuration they say sign-in is by token only."""
    settings = app[SETTINGS]
    if settings.oidc_enabled():
        app[RELYING_PARTY] = RelyingParty(settings)

        async def _close(app: web.Application) -> None:
            await app[RELYING_PARTY].close()

        app.on_cleanup.append(_close)
    app.router.add_get("/sign-in/oidc", start)
    app.router.add_get(CALLBACK_PATH, callback)


def _redirect_uri(request: web.Request) -> str:
    configured = request.app[SETTINGS].oidc_redirect_url
    return configured or _own_origin(request) + CALLBACK_PATH


def refusal(request: web.Request, error: OidcError) -> web.Response:
    """A 4xx page (or JSON) with the reason a machine can read: `data-reason` and `#reason`."""
    status = 400 if error.reason in _STATE_PROBLEMS else error.status
    if wants_json(request):
        resp: web.Response = web.json_response(
            {
                "error": {
                    "code": "sign_in_refused",
                    "message": ui_text("oidc.refused", lang_of(request)),
                    "reasons": [{"code": error.reason, "message": error.detail}],
                }
            },
            status=status,
        )
    else:
        resp = render(request, "oidc_refused.html", status=status, refused_reason=error.reason, detail=error.detail)
    resp.del_cookie(STATE_COOKIE, path=CALLBACK_PATH)
    return resp


async def start(request: web.Request) -> web.StreamResponse:
    rp = request.app.get(RELYING_PARTY)
    if rp is None:
        return message_page(request, "oidc.not_configured", 404)
    settings = request.app[SETTINGS]
    try:
        disc = await rp.discovery()
    except OidcError as e:
        return refusal(request, e)
    state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    verifier, challenge = new_pkce()
    redirect_uri = _redirect_uri(request)
    async with request.app[POOL].acquire() as conn:
        await start_login(
            conn,
            state=state,
            nonce=nonce,
            code_verifier=verifier,
            redirect_uri=redirect_uri,
            next_path=_safe_next(request.query.get("next")),
            ttl_s=settings.oidc_login_ttl_s,
        )
    resp = redirect(rp.authorization_url(disc, state=state, nonce=nonce, challenge=challenge, redirect_uri=redirect_uri))
    resp.set_cookie(
        STATE_COOKIE,
        state,
        httponly=True,
        samesite="Lax",
        secure=is_secure(request),
        path=CALLBACK_PATH,
        max_age=settings.oidc_login_ttl_s,
    )
    raise resp


async def callback(request: web.Request) -> web.StreamResponse:
    rp = request.app.get(RELYING_PARTY)
    if rp is None:
        return message_page(request, "oidc.not_configured", 404)
    settings = request.app[SETTINGS]
    state = request.query.get("state", "")
    try:
        if "error" in request.query and not state:
            # some providers drop the state when the person declines: nothing to take back
            raise OidcError("provider_refused", request.query.get("error", "")[:100])
        if not state or len(state) > 200:
            raise OidcError("state_unknown", "the provider sent no state back")
        async with request.app[POOL].acquire() as conn:
            taken = await take_login(conn, state)
        if taken.login is None:
            problem = taken.problem or "state_unknown"
            raise OidcError(problem, ui_text(f"oidc.{problem}", "en"))
        login = taken.login
        cookie = request.cookies.get(STATE_COOKIE, "")
        if not secrets.compare_digest(cookie.encode(), state.encode()):
            raise OidcError("state_mismatch", "this sign-in was not started in this browser")
        if "error" in request.query:
            raise OidcError("provider_refused", request.query.get("error", "")[:100])
        code = request.query.get("code", "")
        if not code or len(code) > 2000:
            raise OidcError("code_refused", "the provider sent no code")
        id_token = await rp.exchange(code, login.code_verifier, login.redirect_uri)
        claims = await rp.verify(id_token, login.nonce)
        owner_id = owner_of(claims, settings)
        role = role_for(claims, owner_id, settings)
    except OidcError as e:
        return refusal(request, e)
    async with request.app[POOL].acquire() as conn:
        _, session_token = await create_idp_session(
            conn, role, owner_id, rp.issuer, idle_s=settings.session_idle_s, max_s=settings.session_max_s
        )
    # A page of ours moves on to the target: a redirect straight from the provider's site would
    # be a cross-site navigation, on which browsers do not send the SameSite=Strict session cookie.
    resp = render(request, "oidc_signed_in.html", target=login.next_path, role=role)
    resp.set_cookie(
        SESSION_COOKIE, session_token, httponly=True, samesite="Strict", secure=is_secure(request), path="/"
    )
    resp.del_cookie(STATE_COOKIE, path=CALLBACK_PATH)
    return resp
