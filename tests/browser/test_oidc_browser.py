"""OpenID Connect sign-in in real headless Chromium: the service (`carmileage serve`) on
127.0.0.1 and a real provider (tests/oidc_provider.py) on `localhost`, another site, so the
browser treats the round trip as the cross-site navigation it is in production."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest
import requests

from storage.db import drop_database
from tests.browser.conftest import db
from tests.conftest import LiveService, cli_token, clone_database
from tests.oidc_provider import Provider, oidc_env, person, running_provider
from tests.security.conftest import insert_active_car

pytestmark = [
    pytest.mark.browser,
    # the provider package's own deprecation notices (authlib's legacy hooks it implements)
    pytest.mark.filterwarnings("ignore::DeprecationWarning:authlib.*"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:oidc_provider_mock.*"),
]


@dataclass
class Setup:
    provider: Provider
    service: LiveService

    @property
    def url(self) -> str:
        return self.service.url

    @property
    def database_url(self) -> str:
        return self.service.database_url


@pytest.fixture(scope="module")
def oidc(template_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    database_url = clone_database(template_database_url, "ob" + uuid.uuid4().hex[:6])
    with running_provider() as provider:
        live = LiveService(database_url, tmp_path_factory.mktemp("oidc-browser") / "data", **oidc_env(provider))
        live.start()
        try:
            yield Setup(provider, live)
        finally:
            live.kill()
            asyncio.run(drop_database(database_url))


async def citizen_with_car(oidc: Setup) -> tuple[str, str]:
    """An owner with an active car and a participation; returns (owner id, plate)."""
    owner = f"owner-{uuid.uuid4().hex[:8]}"
    vid, plate = await insert_active_car(oidc.database_url, owner)
    token = await asyncio.to_thread(cli_token, oidc.database_url, "citizen", owner)
    r = await asyncio.to_thread(
        requests.post,
        f"{oidc.url}/v1/vehicles/{vid}/participations",
        json={},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert r.status_code == 201, r.text
    return owner, plate


async def at_provider(page: Any, oidc: Setup, sub: str) -> None:
    """On the provider's authorization page: sign in as `sub`."""
    await page.wait_for_url(oidc.provider.issuer + "/oauth2/authorize**")
    await page.fill("input[name=sub]", sub)
    await page.click("button:has-text('Authorize')")


async def provider_sign_in(page: Any, oidc: Setup, sub: str, start: str = "/sign-in?lang=en") -> None:
    """From the sign-in page through the provider and back; waits until the callback answered."""
    await page.goto(oidc.url + start)
    await page.click("#sign-in-oidc")
    await at_provider(page, oidc, sub)
    await page.wait_for_url(oidc.url + "/**")
    await page.wait_for_selector("#oidc-signed-in, #oidc-refused, main")


async def refusal_reason(page: Any) -> str:
    await page.wait_for_selector("#oidc-refused")
    return str(await page.text_content("#reason"))


async def test_a_citizen_signs_in_lands_on_their_own_page_and_signs_out(oidc: Setup, browser: Any) -> None:
    owner, plate = await citizen_with_car(oidc)
    context = await browser.new_context(locale="en-GB")
    page = await context.new_page()
    await provider_sign_in(page, oidc, person(oidc.provider, owner), "/sign-in?lang=en&next=/upload")
    await page.wait_for_url(oidc.url + "/upload")
    assert await page.text_content(".who") == owner
    assert plate in await page.content()
    cookie = next(c["value"] for c in await context.cookies() if c["name"] == "cm_session")
    # signing out ends the session here and sends the browser to the provider's end_session
    await page.click("header form[action='/sign-out'] button")
    await page.wait_for_url(oidc.provider.issuer + "/oauth2/end_session**")
    await page.click("button:has-text('End session')")
    await page.wait_for_url(oidc.url + "/sign-in")
    await page.goto(oidc.url + "/upload")
    assert urlsplit(page.url).path == "/sign-in"
    # the old cookie is refused in any browser that still holds it
    other = await browser.new_context()
    await other.add_cookies([{"name": "cm_session", "value": cookie, "url": oidc.url}])
    p2 = await other.new_page()
    await p2.goto(oidc.url + "/upload")
    assert urlsplit(p2.url).path == "/sign-in"
    await other.close()
    await context.close()


async def test_staff_gets_the_role_from_the_claim(oidc: Setup, browser: Any) -> None:
    context = await browser.new_context(locale="en-GB")
    page = await context.new_page()
    await provider_sign_in(page, oidc, person(oidc.provider, roles=["mileage-reviewers"]))
    await page.wait_for_url(oidc.url + "/review")
    assert urlsplit(page.url).path == "/review"
    await context.close()


async def test_an_expired_session_is_refused(oidc: Setup, browser: Any) -> None:
    owner, _ = await citizen_with_car(oidc)
    context = await browser.new_context(locale="en-GB")
    page = await context.new_page()
    await provider_sign_in(page, oidc, person(oidc.provider, owner), "/sign-in?lang=en&next=/upload")
    await page.wait_for_url(oidc.url + "/upload")
    cookie = next(c["value"] for c in await context.cookies() if c["name"] == "cm_session")
    async with db(oidc.service) as conn:  # type: ignore[arg-type]
        done = await conn.execute(
            "update api_tokens set expires_at = now() - interval '1 second' where token_hash = $1 and idp is not null",
            hashlib.sha256(cookie.encode()).digest(),
        )
        assert done == "UPDATE 1"
    await page.reload()
    assert urlsplit(page.url).path == "/sign-in"
    await context.close()


async def test_a_replayed_callback_is_refused(oidc: Setup, browser: Any) -> None:
    context = await browser.new_context(locale="en-GB")
    page = await context.new_page()
    callbacks: list[str] = []
    page.on("request", lambda r: callbacks.append(r.url) if r.url.startswith(oidc.url + "/auth/callback") else None)
    await provider_sign_in(page, oidc, person(oidc.provider))
    await page.wait_for_selector("#oidc-signed-in, .who")
    assert len(callbacks) == 1
    await page.goto(callbacks[0])
    assert await refusal_reason(page) == "state_replayed"
    await context.close()


async def test_a_wrong_nonce_is_refused(oidc: Setup, browser: Any) -> None:
    """The authorization request is altered on its way to the provider (as an attacker in the
    middle would): the provider then really issues an ID token with another nonce."""
    context = await browser.new_context(locale="en-GB")
    started = await context.request.get(oidc.url + "/sign-in/oidc", max_redirects=0)
    assert started.status == 303
    parts = urlsplit(started.headers["location"])
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query["nonce"] = "an-attackers-nonce"
    page = await context.new_page()
    await page.goto(urlunsplit(parts._replace(query=urlencode(query))))
    await at_provider(page, oidc, person(oidc.provider))
    assert await refusal_reason(page) == "wrong_nonce"
    assert not any(c["name"] == "cm_session" for c in await context.cookies())
    await context.close()


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [({"aud": "someone-else"}, "wrong_audience"), ({"exp": 1_700_000_000, "iat": 1_699_990_000}, "id_token_expired")],
)
async def test_a_bad_id_token_is_refused(oidc: Setup, browser: Any, tamper: dict[str, Any], expected: str) -> None:
    context = await browser.new_context(locale="en-GB")
    page = await context.new_page()
    oidc.provider.tamper_next(**tamper)
    await provider_sign_in(page, oidc, person(oidc.provider))
    assert await refusal_reason(page) == expected
    await page.goto(oidc.url + "/upload")
    assert urlsplit(page.url).path == "/sign-in"
    await context.close()


async def test_sign_in_still_works_after_the_provider_rotates_its_key(oidc: Setup, browser: Any) -> None:
    for rotate in (False, True):
        if rotate:
            before = oidc.provider.jwks_requests
            oidc.provider.rotate_key()
        context = await browser.new_context(locale="en-GB")
        page = await context.new_page()
        await provider_sign_in(page, oidc, person(oidc.provider))
        await page.wait_for_url(oidc.url + "/upload")
        await context.close()
    assert oidc.provider.jwks_requests > before
