"""Tokens expire and sign-out revokes (issue 18, item 10c); the static-file cache is bounded
(item 10d)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
from aiohttp.test_utils import TestClient

from ingest.routes.pages import static_files
from storage.tokens import create_token, revoke_token
from tests.conftest import ROOT, TokenFactory, service_url
from tests.photos.pagekit import _csrf, sign_in


async def _bearer(pool: asyncpg.Pool, role: str = "citizen", expires_at: datetime | None = None) -> tuple[int, str]:
    async with pool.acquire() as conn:
        return await create_token(conn, role, f"{role}-{uuid.uuid4().hex[:8]}", expires_at=expires_at)


async def _refusal(client: TestClient, token: str) -> tuple[int, str, str]:
    r = await client.get("/v1/vehicles", headers={"Authorization": f"Bearer {token}"})
    body = await r.json()
    return r.status, body["error"]["code"], body["error"]["reasons"][0]["code"]


async def test_expired_revoked_and_unknown_tokens_are_refused_with_their_reason(
    client: TestClient, pool: asyncpg.Pool
) -> None:
    _, expired = await _bearer(pool, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    revoked_id, revoked = await _bearer(pool)
    async with pool.acquire() as conn:
        await revoke_token(conn, revoked_id)
    _, fine = await _bearer(pool, expires_at=datetime.now(UTC) + timedelta(hours=1))
    assert await _refusal(client, expired) == (401, "invalid_token", "token_expired")
    assert await _refusal(client, revoked) == (401, "invalid_token", "token_revoked")
    assert await _refusal(client, "cm_cit_" + "x" * 43) == (401, "invalid_token", "token_unknown")
    r = await client.get("/v1/vehicles", headers={"Authorization": f"Bearer {expired}"})
    assert 'error_description="token_expired"' in r.headers["WWW-Authenticate"]
    assert (await client.get("/v1/vehicles", headers={"Authorization": f"Bearer {fine}"})).status == 200


def _tokens(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ingest.cli", "tokens", *args],
        env={**os.environ, "CARMILEAGE_DATABASE_URL": service_url(database_url)},
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )


def test_tokens_made_by_the_command_expire(database_url: str) -> None:
    def created(*extra: str) -> dict[str, str | None]:
        out = _tokens(database_url, "create", "--role", "reviewer", "--subject", "exp-kim", "--json", *extra)
        assert out.returncode == 0, out.stderr
        made: dict[str, str | None] = json.loads(out.stdout)
        return made

    def lifetime(made: dict[str, str | None]) -> timedelta:
        assert made["expires_at"] is not None
        return datetime.fromisoformat(made["expires_at"]) - datetime.now(UTC)

    assert timedelta(days=89, hours=23) < lifetime(created()) <= timedelta(days=90)
    assert timedelta(minutes=44) < lifetime(created("--expires-in", "45m")) <= timedelta(minutes=45)
    assert created("--expires-in", "never")["expires_at"] is None
    for bad in ("0d", "5y", "99999999d", "soon"):
        out = _tokens(database_url, "create", "--role", "reviewer", "--subject", "exp-kim", "--expires-in", bad)
        assert out.returncode == 2, bad
    listed = _tokens(database_url, "list").stdout
    assert re.search(r"exp-kim\s+active\s+until \d{4}-\d\d-\d\d", listed)


async def _session_row(pool: asyncpg.Pool, subject: str) -> asyncpg.Record:
    row = await pool.fetchrow(
        "select * from api_tokens where subject = $1 and kind = 'session' order by id desc limit 1", subject
    )
    assert row is not None
    return row


async def test_sign_in_makes_a_session_of_its_own_and_sign_out_revokes_it(
    client: TestClient, make_token: TokenFactory, pool: asyncpg.Pool
) -> None:
    h = await make_token("citizen")
    api_token = h["Authorization"].split()[1]
    await sign_in(client, h)
    cookie = client.session.cookie_jar.filter_cookies(client.make_url("/"))["cm_session"].value
    assert cookie != api_token
    session = await _session_row(pool, h["X-Subject"])
    assert session["expires_at"] <= datetime.now(UTC) + timedelta(seconds=1800)
    # the session is no bearer token, and the API token is no session
    r = await client.get("/v1/vehicles", headers={"Authorization": f"Bearer {cookie}"})
    assert r.status == 401
    page = await client.get("/upload")
    assert page.status == 200
    csrf = _csrf(await page.text())
    r = await client.post("/sign-out", data={"csrf": csrf}, allow_redirects=False)
    assert r.status == 303
    session = await _session_row(pool, h["X-Subject"])
    assert session["revoked_at"] is not None and session["revoked_reason"] == "sign_out"
    # a copy of the cookie is worthless now; the API token still works
    client.session.cookie_jar.update_cookies({"cm_session": cookie})
    r = await client.get("/upload", allow_redirects=False)
    assert r.status == 303 and r.headers["Location"].startswith("/sign-in")
    assert (await client.get("/v1/vehicles", headers={"Authorization": h["Authorization"]})).status == 200
    client.session.cookie_jar.clear()
    client.session.cookie_jar.update_cookies({"cm_session": api_token})
    assert (await client.get("/upload", allow_redirects=False)).status == 303


async def test_page_sessions_slide_until_their_absolute_limit_and_die_with_their_token(
    client: TestClient, make_token: TokenFactory, pool: asyncpg.Pool
) -> None:
    h = await make_token("citizen")
    await sign_in(client, h)
    session = await _session_row(pool, h["X-Subject"])
    # idle: near its end, a request moves the end forward again
    await pool.execute("update api_tokens set expires_at = now() + interval '5 minutes' where id = $1", session["id"])
    assert (await client.get("/upload")).status == 200
    slid = (await _session_row(pool, h["X-Subject"]))["expires_at"]
    assert slid > datetime.now(UTC) + timedelta(minutes=29)
    # ... but never beyond its absolute limit after sign-in
    await pool.execute(
        "update api_tokens set created_at = now() - interval '12 hours' + interval '2 minutes', "
        "expires_at = now() + interval '1 minute' where id = $1",
        session["id"],
    )
    assert (await client.get("/upload")).status == 200
    capped = (await _session_row(pool, h["X-Subject"]))["expires_at"]
    assert capped <= datetime.now(UTC) + timedelta(minutes=2, seconds=5)
    # expired: back to the sign-in page
    await pool.execute("update api_tokens set expires_at = now() - interval '1 second' where id = $1", session["id"])
    r = await client.get("/upload", allow_redirects=False)
    assert r.status == 303 and r.headers["Location"].startswith("/sign-in")
    # revoking the API token ends the sessions signed in with it
    await sign_in(client, h)
    assert (await client.get("/upload")).status == 200
    parent = await pool.fetchval("select parent_id from api_tokens where id = $1", (await _session_row(pool, h["X-Subject"]))["id"])
    async with pool.acquire() as conn:
        assert await revoke_token(conn, parent)
    assert (await client.get("/upload", allow_redirects=False)).status == 303


async def test_sign_in_with_an_expired_token_says_so(client: TestClient, pool: asyncpg.Pool) -> None:
    _, expired = await _bearer(pool, expires_at=datetime.now(UTC) - timedelta(minutes=1))
    page = await (await client.get("/sign-in?lang=en")).text()
    r = await client.post("/sign-in?lang=en", data={"token": expired, "csrf": _csrf(page)}, allow_redirects=False)
    assert r.status == 401
    assert "has expired" in await r.text()


async def test_the_static_cache_holds_only_shipped_files(client: TestClient) -> None:
    for i in range(300):
        r = await client.get(f"/static/made-up-{i}.css")
        assert r.status == 404
    assert (await client.get("/static/pages.css")).status == 200
    shipped = static_files._static_names()
    assert "pages.css" in shipped
    assert static_files._static_file.cache_info().currsize <= len(shipped)
    assert static_files._static_file.cache_info().maxsize is not None
