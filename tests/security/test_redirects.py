"""The sign-in's `next` only ever leads to a page of this site (issue 18, item 5).

Judged as a browser reads a Location: tabs and newlines dropped, a backslash taken for a slash,
`//host` another site. Over HTTP for the probes of the attack run, and as a property for any text.
"""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

from aiohttp.test_utils import TestClient
from hypothesis import given
from hypothesis import strategies as st

from ingest.routes.pages.sessions import _safe_next
from tests.conftest import TokenFactory
from tests.photos.pagekit import _csrf

SITE = "https://mileage.example.go.kr"

HOSTILE = [
    "//evil.example",
    "//evil.example/",
    "///evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "/\\/evil.example",
    "https://evil.example",
    "http:evil.example",
    "javascript:alert(1)",
    "%2F%2Fevil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    "/\r\n/evil.example",
    "/\x00/evil.example",
    "/\x0b/evil.example",
    " //evil.example",
    "\t//evil.example",
    "evil.example",
    "",
]


def browser_resolves(location: str, base: str = SITE) -> str:
    """Where a browser goes for this Location (WHATWG URL: C0 controls and spaces trimmed at both
    ends, tabs and newlines removed anywhere, backslashes read as slashes in http(s) URLs)."""
    loc = location.strip("".join(chr(c) for c in range(0x21)))
    loc = re.sub(r"[\t\n\r]", "", loc)
    loc = loc.replace("\\", "/")
    return urljoin(base + "/", loc)


def same_origin(location: str) -> bool:
    there = urlsplit(browser_resolves(location))
    here = urlsplit(SITE)
    return (there.scheme, there.netloc) == (here.scheme, here.netloc)


def test_the_browser_model_sees_the_attacks() -> None:
    """The yardstick itself: the hostile targets do lead away when taken as they are."""
    for target in ("//evil.example", "/\\evil.example", "/\t/evil.example", "https://evil.example"):
        assert not same_origin(target), target


@given(st.text(alphabet=st.sampled_from(list("/\\\t\n\r :.%2Fevil@?#=&x\x00\x7f가")), max_size=24))
def test_any_next_stays_on_this_site(target: str) -> None:
    safe = _safe_next(target)
    assert same_origin(safe), (target, safe)
    assert safe.isascii() and safe.startswith("/") and not safe.startswith("//")
    assert not re.search(r"[\x00-\x20\x7f\\]", safe)


def test_paths_of_this_site_pass_unchanged_or_percent_encoded() -> None:
    assert _safe_next("/submissions/5?lang=en") == "/submissions/5?lang=en"
    assert _safe_next("/review?district=강남구&min_age_h=2") == "/review?district=%EA%B0%95%EB%82%A8%EA%B5%AC&min_age_h=2"
    assert _safe_next("/review/disputes/7") == "/review/disputes/7"
    assert _safe_next("/upload?x=a b") == "/upload?x=a%20b"


async def test_sign_in_never_redirects_off_site(client: TestClient, make_token: TokenFactory) -> None:
    headers = await make_token("citizen")
    token = headers["Authorization"].split(" ", 1)[1]
    for target in HOSTILE:
        page = await client.get("/sign-in", params={"next": target})
        html = await page.text()
        shown = re.search(r'name="next" value="([^"]*)"', html)
        assert shown and shown.group(1) == "/", (target, shown and shown.group(1))
        r = await client.post(
            "/sign-in", data={"token": token, "csrf": _csrf(html), "next": target}, allow_redirects=False
        )
        assert r.status == 303, (target, r.status)
        assert r.headers["Location"] == "/upload", (target, r.headers["Location"])
    # a page of this site is where sign-in leads
    page = await client.get("/sign-in", params={"next": "/submissions/5?lang=en"})
    html = await page.text()
    r = await client.post(
        "/sign-in", data={"token": token, "csrf": _csrf(html), "next": "/submissions/5?lang=en"}, allow_redirects=False
    )
    assert r.headers["Location"] == "/submissions/5?lang=en"
