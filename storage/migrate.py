"""A plain ordered-SQL migration runner.

Files `storage/migrations/NNNN_name.sql` are applied in lexical order, each in its own
transaction, and recorded with a checksum. An advisory lock lets several service processes start
at once. A file that changed after it was applied is an error: fix forward with a new file.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from storage.db import Conn

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_LOCK_KEY = 0x63_61_72_6D  # "carm"


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrationError(RuntimeError):
    pass


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        version, _, name = path.stem.partition("_")
        if not version.isdigit():
            raise MigrationError(f"migration file name must start with digits: {path.name}")
        found.append(Migration(version, name, path.read_text(encoding="utf-8")))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migration files share a version in {directory}")
    return found


@asynccontextmanager
async def migration_lock(conn: Conn) -> AsyncIterator[None]:
    """The lock migrations run under, for steps that must not run twice at once (grants)."""
    await conn.execute("select pg_advisory_lock($1)", _LOCK_KEY)
    try:
        yield
    finally:
        await conn.execute("select pg_advisory_unlock($1)", _LOCK_KEY)


async def migrate(conn: Conn, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply every pending migration; return the versions applied now."""
    migrations = discover(directory)
    await conn.execute("select pg_advisory_lock($1)", _LOCK_KEY)
    try:
        # Looked up first: a role that may not create tables (the service's) can still check that
        # nothing is pending.
        if not await conn.fetchval("select to_regclass('schema_migrations') is not null"):
            await conn.execute(
                """create table if not exists schema_migrations (
                       version text primary key,
                       name text not null,
                       checksum text not null,
                       applied_at timestamptz not null default now())"""
            )
        applied = {
            r["version"]: r["checksum"]
            for r in await conn.fetch("select version, checksum from schema_migrations")
        }
        done: list[str] = []
        for m in migrations:
            if m.version in applied:
                if applied[m.version] != m.checksum:
                    raise MigrationError(
                        f"migration {m.version}_{m.name} changed after it was applied; add a new one"
                    )
                continue
            async with conn.transaction():
                await conn.execute(m.sql)
                await conn.execute(
                    "insert into schema_migrations (version, name, checksum) values ($1, $2, $3)",
                    m.version,
                    m.name,
                    m.checksum,
                )
            done.append(m.version)
        return done
    finally:
        await conn.execute("select pg_advisory_unlock($1)", _LOCK_KEY)


async def pending(conn: Conn, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Versions not applied yet (read-only: any role that may read schema_migrations)."""
    versions = [m.version for m in discover(directory)]
    if not await conn.fetchval("select to_regclass('schema_migrations') is not null"):
        return versions
    applied = {r["version"] for r in await conn.fetch("select version from schema_migrations")}
    return [v for v in versions if v not in applied]


async def current_version(conn: Conn) -> str | None:
    exists = await conn.fetchval("select to_regclass('schema_migrations') is not null")
    if not exists:
        return None
    v: str | None = await conn.fetchval("select max(version) from schema_migrations")
    return v
