"""The pages' own CSS and scripts (the Content-Security-Policy lets nothing else load)."""

from __future__ import annotations

import functools
from importlib import resources

from aiohttp import web

from ingest.routes.pages.rendering import SECURITY_HEADERS

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
