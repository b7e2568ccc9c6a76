"""How a page answers: Jinja2 templates (autoescaped), the security headers every page carries,
the language, redirects, and the early stop that turns an error into a page.

The Content-Security-Policy lets nothing load or run that the service did not serve itself (no
inline scripts or styles, no CDN), so whatever a user typed cannot run even if it got through.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from aiohttp import web
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from ingest.api import parse_id
from ingest.pages.messages import Lang, reason_text, status_text, ui_text
from ingest.state import SETTINGS
from prorate.calendar import SEOUL

if TYPE_CHECKING:
    from ingest.routes.pages.sessions import Session

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


class PageStop(Exception):
    """Stop a page handler with this response (errors are pages here, not JSON)."""

    def __init__(self, response: web.StreamResponse) -> None:
        super().__init__(response.status)
        self.response = response


def lang_of(request: web.Request) -> Lang:
    chosen = request.query.get("lang") or request.cookies.get(LANG_COOKIE)
    if chosen in ("ko", "en"):
        return chosen  # type: ignore[return-value]
    accept = request.headers.get("Accept-Language", "").lower()
    return "ko" if accept.startswith("ko") or not accept else "en"


def is_secure(request: web.Request) -> bool:
    """Whether cookies must be Secure: the service is reached over HTTPS."""
    url = request.app[SETTINGS].public_url or ""
    return url.startswith("https://") or request.secure


def wants_json(request: web.Request) -> bool:
    """The pages' scripts ask for JSON; a plain form post gets a page."""
    return "application/json" in request.headers.get("Accept", "")


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
        resp.set_cookie(LANG_COOKIE, lang, httponly=True, samesite="Strict", secure=is_secure(request), path="/")
    return resp


def message_page(request: web.Request, key: str, status: int, session: Session | None = None) -> web.Response:
    """A page that only says one thing (forbidden, not found, a refused CSRF token)."""
    return render(request, "message.html", status=status, session=session, message=ui_text(key, lang_of(request)))


def redirect(location: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(location, headers=SECURITY_HEADERS)


def page_id(request: web.Request, name: str = "id") -> int:
    """The id in a page's path (the API's parser); anything else is the not-found page."""
    value = parse_id(request.match_info[name])
    if value is None:
        raise PageStop(message_page(request, "not_found", 404))
    return value
