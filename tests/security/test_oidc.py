"""OpenID Connect sign-in against a real provider (tests/oidc_provider.py: oidc-provider-mock, an
authlib authorization server, in a thread) and a real `carmileage serve`, over HTTP without a
browser (tests/browser/test_oidc_browser.py drives the same in Chromium).

Every refusal is checked by its machine-readable reason, and each negative case differs from a
good sign-in in the one thing it tests."""

from __future__ import annotations

import asyncio
import hashlib
import html
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest
import requests

from storage.db import drop_database
from tests.conftest import LiveService, cli_token, clone_database
from tests.oidc_provider import CLIENT_ID, Provider, oidc_env, person, running_provider
from tests.security.conftest import insert_active_car

#: The provider package's own deprecation notices (authlib's legacy hooks it implements).
pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:authlib.*"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:oidc_provider_mock.*"),
]

@dataclass
class Setup:
    provider: Provider
    service: LiveService


@pytest.fixture(scope="module")
def oidc(template_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    database_url = clone_database(template_database_url, "oi" + uuid.uuid4().hex[:6])
    with running_provider() as provider:
        live = LiveService(database_url, tmp_path_factory.mktemp("oidc") / "data", **oidc_env(provider))
        live.start()
        try:
            yield Setup(provider, live)
        finally:
            live.kill()
            asyncio.run(drop_database(database_url))


def start(s: requests.Session, base: str, next_path: str = "/") -> str:
    r = s.get(f"{base}/sign-in/oidc", params={"next": next_path}, allow_redirects=False, timeout=30)
    assert r.status_code == 303, r.text
    return str(r.headers["Location"])


def authorize(s: requests.Session, authorize_url: str, sub: str) -> str:
    """The person signs in at the provider; returns where it sends the browser back."""
    r = s.post(authorize_url, data={"sub": sub}, allow_redirects=False, timeout=30)
    assert r.status_code == 302, r.text
    return str(r.headers["Location"])


def sign_in(base: str, provider: Provider, sub: str, next_path: str = "/") -> tuple[requests.Session, requests.Response]:
    s = requests.Session()
    back = authorize(s, start(s, base, next_path), sub)
    return s, s.get(back, allow_redirects=False, timeout=30)


def reason(r: requests.Response) -> str:
    m = re.search(r'data-reason="([^"]+)"', r.text)
    assert m, r.text
    return m.group(1)


def test_authorization_request_uses_pkce_s256_state_and_nonce(oidc: Setup) -> None:
    s = requests.Session()
    url = start(s, oidc.service.url)
    q = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert url.startswith(oidc.provider.issuer + "/oauth2/authorize?")
    assert q["response_type"] == "code" and q["client_id"] == CLIENT_ID
    assert q["code_challenge_method"] == "S256" and len(q["code_challenge"]) == 43
    assert len(q["state"]) >= 32 and len(q["nonce"]) >= 32
    assert q["redirect_uri"] == oidc.service.url + "/auth/callback"
    # the state is bound to this browser by a cookie that only the callback sees
    assert any(c.name == "cm_oidc" and c.path == "/auth/callback" for c in s.cookies)
    # and the provider front door really checks PKCE: a wrong verifier is refused
    back = authorize(s, url, person(oidc.provider))
    code = parse_qs(urlsplit(back).query)["code"][0]
    r = requests.post(
        oidc.provider.issuer + "/oauth2/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": q["redirect_uri"],
              "client_id": CLIENT_ID, "code_verifier": "not-the-verifier-" + "x" * 40},
        timeout=30,
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_citizen_signs_in_and_is_matched_to_their_owner_id_by_claim(oidc: Setup) -> None:
    owner = f"owner-{uuid.uuid4().hex[:8]}"
    vid, plate = asyncio.run(insert_active_car(oidc.service.database_url, owner))
    # the car's participation, made over the API by the same owner holding an API token
    api_token = cli_token(oidc.service.database_url, "citizen", owner)
    made = requests.post(f"{oidc.service.url}/v1/vehicles/{vid}/participations", json={},
                         headers={"Authorization": f"Bearer {api_token}"}, timeout=30)
    assert made.status_code == 201, made.text
    sub = person(oidc.provider, owner)
    refusals = oidc.provider.pkce_refusals
    s, r = sign_in(oidc.service.url, oidc.provider, sub, "/upload")
    assert r.status_code == 200, r.text
    assert 'data-role="citizen"' in r.text
    assert oidc.provider.pkce_refusals == refusals
    page = s.get(f"{oidc.service.url}/upload", allow_redirects=False, timeout=30)
    assert page.status_code == 200
    assert plate in page.text and owner in page.text
    # the session is a citizen's: the reviewers' queue is not theirs
    assert s.get(f"{oidc.service.url}/review", allow_redirects=False, timeout=30).status_code == 403


def test_staff_roles_come_from_the_role_claim_or_the_subject_mapping(oidc: Setup) -> None:
    reviewer = person(oidc.provider, roles=["staff", "mileage-reviewers"])
    s, r = sign_in(oidc.service.url, oidc.provider, reviewer)
    assert r.status_code == 200 and 'data-role="reviewer"' in r.text
    assert s.get(f"{oidc.service.url}/review", allow_redirects=False, timeout=30).status_code == 200
    # a role name in the claim stands for itself
    other = person(oidc.provider, roles="reviewer")
    _, r = sign_in(oidc.service.url, oidc.provider, other)
    assert 'data-role="reviewer"' in r.text
    # no role claim and no mapping: a citizen; a mapped owner id: its role
    operator = person(oidc.provider, "ops-kim")
    _, r = sign_in(oidc.service.url, oidc.provider, operator)
    assert 'data-role="operator"' in r.text


def test_a_replayed_state_is_refused(oidc: Setup) -> None:
    s = requests.Session()
    back = authorize(s, start(s, oidc.service.url), person(oidc.provider))
    assert s.get(back, allow_redirects=False, timeout=30).status_code == 200
    again = s.get(back, allow_redirects=False, timeout=30)
    assert again.status_code == 400 and reason(again) == "state_replayed"
    # JSON callers get the same reason
    again = s.get(back, headers={"Accept": "application/json"}, allow_redirects=False, timeout=30)
    assert again.status_code == 400
    assert again.json()["error"]["reasons"][0]["code"] == "state_replayed"


def test_an_unknown_state_or_one_started_in_another_browser_is_refused(oidc: Setup) -> None:
    unknown = requests.get(f"{oidc.service.url}/auth/callback?state=forged&code=x", allow_redirects=False, timeout=30)
    assert unknown.status_code == 400 and reason(unknown) == "state_unknown"
    victim, attacker = requests.Session(), requests.Session()
    back = authorize(attacker, start(attacker, oidc.service.url), person(oidc.provider))
    r = victim.get(back, allow_redirects=False, timeout=30)  # login CSRF: the attacker's code in the victim's browser
    assert r.status_code == 400 and reason(r) == "state_mismatch"
    assert "cm_session" not in r.cookies


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        ({"nonce": "someone-elses-nonce"}, "wrong_nonce"),
        ({"nonce": None}, "wrong_nonce"),
        ({"aud": "another-client"}, "wrong_audience"),
        ({"aud": ["another-client", CLIENT_ID], "azp": "another-client"}, "wrong_audience"),
        ({"iss": "http://localhost:1"}, "wrong_issuer"),
        ({"exp": 1_700_000_000, "iat": 1_699_990_000}, "id_token_expired"),
        ({"iat": 4_000_000_000, "exp": 4_000_003_600}, "id_token_not_yet_valid"),
        ({"foreign_key": True}, "bad_signature"),
    ],
)
def test_a_bad_id_token_is_refused_with_its_reason(oidc: Setup, tamper: dict[str, Any], expected: str) -> None:
    s = requests.Session()
    back = authorize(s, start(s, oidc.service.url), person(oidc.provider))
    oidc.provider.tamper_next(**tamper)
    r = s.get(back, allow_redirects=False, timeout=30)
    assert r.status_code == 401, r.text
    assert reason(r) == expected
    assert "cm_session" not in r.cookies
    assert s.get(f"{oidc.service.url}/upload", allow_redirects=False, timeout=30).status_code == 303


def test_an_id_token_within_the_leeway_is_accepted(oidc: Setup) -> None:
    """The control for the expired case: 30 s past exp is inside the 60 s leeway."""
    import time

    s = requests.Session()
    back = authorize(s, start(s, oidc.service.url), person(oidc.provider))
    now = int(time.time())
    oidc.provider.tamper_next(exp=now - 30, iat=now - 600)
    assert s.get(back, allow_redirects=False, timeout=30).status_code == 200


def test_jwks_rotation_is_followed(oidc: Setup) -> None:
    _, r = sign_in(oidc.service.url, oidc.provider, person(oidc.provider))
    assert r.status_code == 200
    fetched = oidc.provider.jwks_requests
    oidc.provider.rotate_key()
    _, r = sign_in(oidc.service.url, oidc.provider, person(oidc.provider))
    assert r.status_code == 200, r.text
    assert oidc.provider.jwks_requests > fetched  # it had to fetch the new key
    # a token signed by a key the provider never published is still refused after the refetch
    s = requests.Session()
    back = authorize(s, start(s, oidc.service.url), person(oidc.provider))
    oidc.provider.tamper_next(foreign_key=True)
    assert reason(s.get(back, allow_redirects=False, timeout=30)) == "bad_signature"


def test_the_provider_refusing_is_a_clear_refusal(oidc: Setup) -> None:
    s = requests.Session()
    url = start(s, oidc.service.url)
    r = s.post(url, data={"action": "deny"}, allow_redirects=False, timeout=30)
    back = r.headers["Location"]
    assert "error=access_denied" in back  # (this provider drops the state here)
    r = s.get(back, allow_redirects=False, timeout=30)
    assert r.status_code == 401 and reason(r) == "provider_refused"


def test_sign_out_ends_the_session_here_and_at_the_provider(oidc: Setup) -> None:
    s, _ = sign_in(oidc.service.url, oidc.provider, person(oidc.provider), "/upload")
    cookie = s.cookies.get("cm_session")
    assert cookie
    page = s.get(f"{oidc.service.url}/upload", timeout=30)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf
    out = s.post(f"{oidc.service.url}/sign-out", data={"csrf": csrf.group(1)}, allow_redirects=False, timeout=30)
    assert out.status_code == 200  # a page of ours moves on to the provider (CSP form-action)
    link = re.search(r'<a href="([^"]+)" id="provider-logout"', out.text)
    assert link and "cm_session" not in s.cookies
    logout = urlsplit(html.unescape(link.group(1)))
    assert f"{logout.scheme}://{logout.netloc}{logout.path}" == oidc.provider.issuer + "/oauth2/end_session"
    assert parse_qs(logout.query)["post_logout_redirect_uri"] == [oidc.service.url + "/sign-in"]
    # the old cookie is refused from now on, by anyone holding it
    again = requests.get(f"{oidc.service.url}/upload", cookies={"cm_session": cookie}, allow_redirects=False, timeout=30)
    assert again.status_code == 303 and again.headers["Location"].startswith("/sign-in")


def test_an_expired_session_is_refused(oidc: Setup) -> None:
    s, _ = sign_in(oidc.service.url, oidc.provider, person(oidc.provider), "/upload")
    assert s.get(f"{oidc.service.url}/upload", allow_redirects=False, timeout=30).status_code == 200
    cookie = s.cookies.get("cm_session")
    assert cookie

    async def expire() -> None:
        conn = await asyncpg.connect(oidc.service.database_url)
        try:
            token_hash = hashlib.sha256(cookie.encode()).digest()
            n = await conn.execute(
                "update api_tokens set expires_at = now() - interval '1 second' where token_hash = $1 and idp = $2",
                token_hash,
                oidc.provider.issuer,
            )
            assert n == "UPDATE 1"
        finally:
            await conn.close()

    asyncio.run(expire())
    r = s.get(f"{oidc.service.url}/upload", allow_redirects=False, timeout=30)
    assert r.status_code == 303 and r.headers["Location"].startswith("/sign-in")


def test_a_used_session_slides_its_expiry(oidc: Setup) -> None:
    """Sessions without an API token behind them slide like the others (storage.tokens.touch_session)."""
    s, _ = sign_in(oidc.service.url, oidc.provider, person(oidc.provider), "/upload")
    cookie = s.cookies.get("cm_session")
    assert cookie
    token_hash = hashlib.sha256(cookie.encode()).digest()

    async def expiry_in(set_to: str | None = None) -> float:
        conn = await asyncpg.connect(oidc.service.database_url)
        try:
            if set_to is not None:
                await conn.execute(
                    f"update api_tokens set expires_at = now() + interval '{set_to}' where token_hash = $1", token_hash
                )
            left: float = await conn.fetchval(
                "select extract(epoch from expires_at - now()) from api_tokens where token_hash = $1", token_hash
            )
            return left
        finally:
            await conn.close()

    assert asyncio.run(expiry_in("20 seconds")) <= 20
    assert s.get(f"{oidc.service.url}/upload", allow_redirects=False, timeout=30).status_code == 200
    assert asyncio.run(expiry_in()) > 1700  # CARMILEAGE_SESSION_IDLE_S, 1800 s, from now


def test_sign_in_page_offers_the_provider_and_still_takes_tokens(oidc: Setup) -> None:
    html = requests.get(f"{oidc.service.url}/sign-in?lang=en&next=/review", timeout=30).text
    assert 'id="sign-in-oidc"' in html and "/sign-in/oidc?next=/review" in html
    assert 'name="token"' in html


def test_without_configuration_sign_in_is_by_token_only(live_service: LiveService) -> None:
    r = requests.get(f"{live_service.url}/sign-in/oidc", allow_redirects=False, timeout=30)
    assert r.status_code == 404
    assert requests.get(f"{live_service.url}/auth/callback?state=x&code=y", timeout=30).status_code == 404
    html = requests.get(f"{live_service.url}/sign-in?lang=en", timeout=30).text
    assert 'name="token"' in html and "sign-in-oidc" not in html
