"""The service connects as a role of its own (issue 18, item 10a): it may work the tables but can
neither rewrite the append-only audit log nor change the schema, while migrations run as the
owning role. The app under test in this suite connects as that role (tests/conftest.py), so every
other test proves the grants suffice."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from storage.db import drop_database, with_database
from tests.conftest import ADMIN_URL, OWNER_ROLE, ROOT, RUN_ID, owner_url, service_url

FORBIDDEN = [
    "update audit_log set action = 'x'",
    "delete from audit_log",
    "truncate audit_log",
    "update period_readings set reason = 'rule'",
    "delete from period_readings",
    "alter table audit_log disable trigger audit_log_no_update",
    "alter table audit_log disable trigger all",
    "alter table vehicles add column sneaky text",
    "drop table audit_log",
    "drop table vehicles",
    "drop trigger audit_log_no_update on audit_log",
    "create table sneaky (id int)",
    "set session_replication_role = replica",
    "insert into schema_migrations (version, name, checksum) values ('9999', 'x', 'x')",
    "delete from schema_migrations",
    "create or replace function audit_log_is_append_only() returns trigger language plpgsql as $$ begin return new; end $$",
]


@pytest.fixture
async def service_conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(service_url(database_url))
    yield conn
    await conn.close()


async def test_the_app_under_test_is_not_privileged(pool: asyncpg.Pool) -> None:
    row = await pool.fetchrow(
        "select current_user as me, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls from pg_roles "
        "where rolname = current_user"
    )
    assert row is not None
    assert not (row["rolsuper"] or row["rolcreaterole"] or row["rolcreatedb"] or row["rolbypassrls"])
    owned = await pool.fetchval(
        "select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace "
        "where n.nspname = 'public' and c.relowner = (select oid from pg_roles where rolname = current_user)"
    )
    assert owned == 0


@pytest.mark.parametrize("statement", FORBIDDEN)
async def test_the_service_role_cannot_rewrite_history_or_the_schema(
    service_conn: asyncpg.Connection, statement: str
) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with service_conn.transaction():
            await service_conn.execute(statement)


async def test_the_service_role_adds_to_and_reads_the_audit_log(service_conn: asyncpg.Connection) -> None:
    async with service_conn.transaction():
        row_id = await service_conn.fetchval(
            """insert into audit_log (actor_role, actor_id, action, entity, entity_id)
               values ('operator', 'least-privilege-test', 'test.append', 'test', '1') returning id"""
        )
        assert await service_conn.fetchval("select action from audit_log where id = $1", row_id) == "test.append"


async def test_the_owner_is_still_stopped_by_the_trigger(database_url: str) -> None:
    conn = await asyncpg.connect(owner_url(database_url))
    try:
        assert await conn.fetchval("select current_user") == OWNER_ROLE
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await conn.execute("update audit_log set action = 'x'")
    finally:
        await conn.close()


@pytest.fixture
def empty_database() -> Iterator[str]:
    """An empty database of this run owned by the owning role (as scripts/setup.sh makes one)."""
    name = f"cmtest_{RUN_ID}_empty{uuid.uuid4().hex[:6]}"
    url = with_database(ADMIN_URL, name)

    async def create() -> None:
        admin = await asyncpg.connect(with_database(ADMIN_URL, "postgres"))
        try:
            await admin.execute(f'create database "{name}" owner {OWNER_ROLE}')
        finally:
            await admin.close()

    asyncio.run(create())
    yield url
    asyncio.run(drop_database(url))


def _carmileage(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ingest.cli", *args],
        env={**os.environ, "CARMILEAGE_MQTT_ENABLED": "false", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


async def test_migrate_runs_as_the_owner_and_grants_the_service_role(empty_database: str) -> None:
    env = {
        "CARMILEAGE_DATABASE_URL": service_url(empty_database),
        "CARMILEAGE_MIGRATION_DATABASE_URL": owner_url(empty_database),
    }
    # the service role alone cannot set the schema up, and says what to run
    served = _carmileage(
        {"CARMILEAGE_DATABASE_URL": service_url(empty_database), "CARMILEAGE_HTTP_PORT": "1"}, "serve"
    )
    assert served.returncode != 0
    assert "carmileage migrate" in served.stderr and "CARMILEAGE_MIGRATION_DATABASE_URL" in served.stderr

    out = _carmileage(env, "migrate")
    assert out.returncode == 0, out.stderr
    assert "granted the service role" in out.stdout and "warning" not in out.stderr
    again = _carmileage(env, "migrate")
    assert again.returncode == 0 and "applied 0 migration(s)" in again.stdout

    conn = await asyncpg.connect(service_url(empty_database))
    try:
        owners = {r["o"] for r in await conn.fetch(
            "select distinct pg_get_userbyid(c.relowner) as o from pg_class c "
            "join pg_namespace n on n.oid = c.relnamespace where n.nspname = 'public'"
        )}
        assert owners == {OWNER_ROLE}
        await conn.execute("insert into owners (id) values ('least-privilege')")
        for statement in ("update audit_log set action = 'x'", "drop table vehicles"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(statement)
    finally:
        await conn.close()
