"""Helpers for tests of the web pages over plain HTTP."""

from __future__ import annotations

import re

from aiohttp.test_utils import TestClient

from ingest.routes.pages.rendering import CSP

SCRIPT = "<script>alert('pwned')</script>"


def _csrf(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no CSRF field on the page"
    return m.group(1)


async def sign_in(client: TestClient, headers: dict[str, str], next_url: str = "/") -> None:
    token = headers["Authorization"].split(" ", 1)[1]
    page = await (await client.get("/sign-in")).text()
    r = await client.post(
        "/sign-in", data={"token": token, "csrf": _csrf(page), "next": next_url}, allow_redirects=False
    )
    assert r.status == 303, await r.text()


def assert_page_is_locked_down(resp_headers: dict[str, str] | object, html: str) -> None:
    headers = resp_headers  # CIMultiDictProxy
    assert headers["Content-Security-Policy"] == CSP  # type: ignore[index]
    assert headers["X-Frame-Options"] == "DENY"  # type: ignore[index]
    # nothing inline for the CSP to have to allow, nothing external
    assert not re.search(r"<script(?![^>]*\bsrc=\"/static/)", html)
    assert " style=" not in html
    assert "http://" not in html and "https://" not in html
