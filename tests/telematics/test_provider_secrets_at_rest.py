"""Providers' HMAC secrets are sealed at rest under a key outside the database (issue 18, item
10b): the database holds no secret in the clear, a sealed secret opens only with the service's key
and only for its own provider, rows from before the migration are sealed by `carmileage migrate`,
rotation keeps working, and signed ingestion opens each secret once per process (cached, bounded,
expiring)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from ingest.app import create_app
from ingest.settings import Settings
from storage.providers import auth_for, new_secret, seal_plain_secrets
from storage.secret_box import SealedSecretUnreadable, SecretBox, derive_key, new_key_text
from tests.conftest import PROVIDER_BOX, ROOT, make_settings, owner_url, service_url
from tests.telematics.conftest import body_of, enrol_cars, make_provider, reading, recent, signed_headers


async def _rows(pool: asyncpg.Pool, provider_id: int) -> list[asyncpg.Record]:
    return await pool.fetch(
        "select secret, secret_sealed, row_to_json(s)::text as whole from provider_secrets s "
        "where provider_id = $1 order by id",
        provider_id,
    )


async def test_the_database_holds_no_secret_in_the_clear(client: TestClient, pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        p = await make_provider(conn)
        (car,) = await enrol_cars(conn, 1, [p])
    rows = await _rows(pool, p.id)
    assert len(rows) == 1
    assert rows[0]["secret"] is None and rows[0]["secret_sealed"].startswith("v1.")
    assert p.secret not in rows[0]["whole"] and p.secret[5:] not in rows[0]["whole"]
    body = body_of([reading(car, 10, recent(1))])
    r = await client.post(f"/v1/providers/{p.name}/readings", data=body, headers=signed_headers(p.secret, body))
    assert r.status == 200 and (await r.json())["accepted"] == 1


async def test_a_sealed_secret_opens_only_with_the_key_and_for_its_provider(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        p, q = await make_provider(conn), await make_provider(conn)
        auth = await auth_for(conn, p.name, box=PROVIDER_BOX)
        assert auth is not None and auth.secrets == (p.secret,)
        with pytest.raises(SealedSecretUnreadable):
            await auth_for(conn, p.name, box=SecretBox(os.urandom(32)))
        # moved to another provider's row, it does not open
        sealed = await conn.fetchval("select secret_sealed from provider_secrets where provider_id = $1", p.id)
        await conn.execute("update provider_secrets set secret_sealed = $2 where provider_id = $1", q.id, sealed)
        with pytest.raises(SealedSecretUnreadable):
            await auth_for(conn, q.name, box=PROVIDER_BOX)


async def test_a_service_with_another_key_refuses_without_storing(
    pool: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    async with pool.acquire() as conn:
        p = await make_provider(conn)
        (car,) = await enrol_cars(conn, 1, [p])
    settings = make_settings(database_url, tmp_path / "data", provider_secret_key=new_key_text())
    async with TestClient(TestServer(create_app(settings, pool))) as other:
        body = body_of([reading(car, 10, recent(1))])
        r = await other.post(f"/v1/providers/{p.name}/readings", data=body, headers=signed_headers(p.secret, body))
        assert r.status == 503
        assert (await r.json())["error"]["code"] == "provider_credentials_unavailable"
    assert await pool.fetchval("select count(*) from readings where vehicle_id = $1", car.id) == 0


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ingest.cli", *args],
        env={**os.environ, **env}, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )


async def test_migrate_seals_secrets_stored_before_encryption(
    fresh_database_url: str, tmp_path: Path
) -> None:
    conn = await asyncpg.connect(owner_url(fresh_database_url))
    try:
        provider_id = await conn.fetchval("insert into providers (name) values ('legacy-maker') returning id")
        legacy = new_secret()
        # as every row was written before migration 0610
        await conn.execute("insert into provider_secrets (provider_id, secret) values ($1, $2)", provider_id, legacy)
        (car,) = await enrol_cars(conn, 1, [])
        await conn.execute("insert into vehicle_consents (provider_id, vehicle_id) values ($1, $2)", provider_id, car.id)
    finally:
        await conn.close()
    out = _cli(
        {
            "CARMILEAGE_DATABASE_URL": service_url(fresh_database_url),
            "CARMILEAGE_MIGRATION_DATABASE_URL": owner_url(fresh_database_url),
        },
        "migrate",
    )
    assert out.returncode == 0, out.stderr
    assert "sealed 1 provider secret" in out.stdout
    pool = await asyncpg.create_pool(service_url(fresh_database_url), min_size=1, max_size=2)
    assert pool is not None
    try:
        rows = await _rows(pool, provider_id)
        assert rows[0]["secret"] is None and legacy not in rows[0]["whole"]
        async with pool.acquire() as c:
            assert await seal_plain_secrets(c, PROVIDER_BOX) == 0  # idempotent
        async with TestClient(TestServer(create_app(make_settings(fresh_database_url, tmp_path / "d"), pool))) as client:
            body = body_of([reading(car, 10, recent(1))])
            r = await client.post(
                "/v1/providers/legacy-maker/readings", data=body, headers=signed_headers(legacy, body)
            )
            assert r.status == 200 and (await r.json())["accepted"] == 1
    finally:
        await pool.close()


async def test_rotation_through_the_command_keeps_working(
    client: TestClient, pool: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    async with pool.acquire() as conn:
        p = await make_provider(conn)
        (car,) = await enrol_cars(conn, 1, [p])
    env = {"CARMILEAGE_DATABASE_URL": service_url(database_url), "CARMILEAGE_MQTT_BROKER_DIR": str(tmp_path)}
    out = _cli(env, "providers", "rotate", p.name, "--http", "--json")
    assert out.returncode == 0, out.stderr
    new = json.loads(out.stdout)["http_secret"]
    rows = await _rows(pool, p.id)
    assert len(rows) == 2 and all(r["secret"] is None and new not in r["whole"] for r in rows)
    for i, secret in enumerate((p.secret, new)):
        body = body_of([reading(car, 10 + i, recent(2 - i))])
        r = await client.post(f"/v1/providers/{p.name}/readings", data=body, headers=signed_headers(secret, body))
        assert r.status == 200, await r.text()
    assert _cli(env, "providers", "rotate", p.name, "--finish").returncode == 0
    body = body_of([reading(car, 20, recent(0.5))])
    r = await client.post(f"/v1/providers/{p.name}/readings", data=body, headers=signed_headers(p.secret, body))
    assert r.status == 401


def test_opening_is_cached_bounded_and_expires() -> None:
    box = SecretBox(os.urandom(32), cache_size=4, cache_ttl_s=0.2)
    sealed = [box.seal(f"secret-{i}", "provider-secret:1") for i in range(10)]
    assert [box.open(s, "provider-secret:1") for s in sealed] == [f"secret-{i}" for i in range(10)]
    assert box.cached() == 4  # bounded
    started = time.perf_counter()
    for _ in range(10_000):
        box.open(sealed[-1], "provider-secret:1")
    cached_us = (time.perf_counter() - started) / 10_000 * 1e6
    assert cached_us < 20, cached_us
    time.sleep(0.3)
    assert box.cached() == 0  # expired: no plain secret stays in memory for long
    # a different context is not served from the cache
    with pytest.raises(SealedSecretUnreadable):
        box.open(sealed[0], "provider-secret:2")


def test_the_key_is_configured_or_derived_from_the_service_secret(tmp_path: Path) -> None:
    a = Settings(secret_key="one", data_dir=tmp_path, provider_secret_key=None)
    b = Settings(secret_key="two", data_dir=tmp_path, provider_secret_key=None)
    sealed = a.provider_box().seal("s", "c")
    assert a.provider_box() is Settings(secret_key="one", data_dir=tmp_path, provider_secret_key=None).provider_box()
    with pytest.raises(SealedSecretUnreadable):
        b.provider_box().open(sealed, "c")
    assert derive_key(b"one", "provider-secrets") != derive_key(b"one", "other-purpose")
    configured = new_key_text()
    c = Settings(secret_key="one", data_dir=tmp_path, provider_secret_key=configured)
    with pytest.raises(SealedSecretUnreadable):
        c.provider_box().open(sealed, "c")
