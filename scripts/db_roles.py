"""The project database's roles, for scripts/setup.sh (run as an administrator of the cluster).

    db_roles.py superuser-password --admin-url URL --password-file FILE
        set the superuser's password (a project-local cluster moving from trust to SCRAM)
    db_roles.py service-roles --admin-url URL --database NAME --host H --port P --env-file FILE
        create (or keep) the owning role `carmileage_owner` and the service role
        `carmileage_service`, the database owned by the former (a database migrated earlier by
        another role has its objects handed over), and write CARMILEAGE_DATABASE_URL (service) and
        CARMILEAGE_MIGRATION_DATABASE_URL (owner) to FILE (mode 0600). Passwords are generated
        once and kept in FILE. `carmileage migrate` then grants the service role its privileges.

Why: the service must not connect as a superuser or as the schema's owner (issue 18, item 10a).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from storage.db import with_database  # noqa: E402
from storage.roles import ensure_login_role, quote_ident  # noqa: E402

OWNER = "carmileage_owner"
SERVICE = "carmileage_service"


def _read_env(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    pairs = (line.partition("=") for line in path.read_text().splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, _, v in pairs}


def _password_in(url: str | None, role: str) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    return unquote(parts.password) if parts.password and unquote(parts.username or "") == role else None


def _url(role: str, password: str, host: str, port: int, database: str) -> str:
    return f"postgresql://{quote(role)}:{quote(password, safe='')}@{host}:{port}/{database}"


async def superuser_password(admin_url: str, password: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        literal = "'" + password.replace("'", "''") + "'"
        await conn.execute(f"alter role current_user with password {literal}")
    finally:
        await conn.close()


async def _hand_over(conn: asyncpg.Connection, owner: str) -> int:
    """Objects of schema public that another role owns (a database migrated before roles were
    split) become the owning role's. Tables first: their identity sequences follow them."""
    o = quote_ident(owner)
    moved = 0
    rows = await conn.fetch(
        """select c.oid::regclass::text as name, c.relkind from pg_class c
           join pg_namespace n on n.oid = c.relnamespace
           where n.nspname = 'public' and c.relkind in ('r', 'p', 'v', 'm', 'f', 'S')
             and pg_get_userbyid(c.relowner) <> $1
           order by c.relkind = 'S', c.oid""",
        owner,
    )
    for r in rows:
        kind = {"S": "sequence", "v": "view", "m": "materialized view", "f": "foreign table"}.get(r["relkind"], "table")
        still = await conn.fetchval(
            "select pg_get_userbyid(relowner) <> $2 from pg_class where oid = $1::regclass", r["name"], owner
        )
        if still:
            await conn.execute(f"alter {kind} {r['name']} owner to {o}")
            moved += 1
    for r in await conn.fetch(
        """select p.oid::regprocedure::text as name from pg_proc p join pg_namespace n on n.oid = p.pronamespace
           where n.nspname = 'public' and pg_get_userbyid(p.proowner) <> $1""",
        owner,
    ):
        await conn.execute(f"alter function {r['name']} owner to {o}")
        moved += 1
    return moved


async def service_roles(admin_url: str, database: str, owner_pw: str, service_pw: str) -> None:
    admin = await asyncpg.connect(with_database(admin_url, "postgres"))
    try:
        await ensure_login_role(admin, OWNER, owner_pw)
        await ensure_login_role(admin, SERVICE, service_pw)
        exists = await admin.fetchval("select 1 from pg_database where datname = $1", database)
        if not exists:
            await admin.execute(f"create database {quote_ident(database)} owner {OWNER}")
            print(f"created the database {database}", file=sys.stderr)
        else:
            await admin.execute(f"alter database {quote_ident(database)} owner to {OWNER}")
    finally:
        await admin.close()
    conn = await asyncpg.connect(with_database(admin_url, database))
    try:
        moved = await _hand_over(conn, OWNER)
        if moved:
            print(f"handed {moved} objects of {database} over to {OWNER}", file=sys.stderr)
        # nobody but the owner creates objects in the schema (a database made before PostgreSQL 15)
        await conn.execute("revoke create on schema public from public")
    finally:
        await conn.close()


def write_env(env_file: Path, owner_pw: str, service_pw: str, host: str, port: int, database: str) -> None:
    env_file.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(env_file.parent, 0o700)
    tmp = env_file.with_suffix(".tmp")
    tmp.write_text(
        "# Written by scripts/setup.sh: the service's least-privilege role, and the role that owns the\n"
        "# schema and runs `carmileage migrate`. Keep this file secret.\n"
        f"CARMILEAGE_DATABASE_URL={_url(SERVICE, service_pw, host, port, database)}\n"
        f"CARMILEAGE_MIGRATION_DATABASE_URL={_url(OWNER, owner_pw, host, port, database)}\n"
    )
    tmp.chmod(0o600)
    tmp.replace(env_file)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("superuser-password")
    s.add_argument("--admin-url", required=True)
    s.add_argument("--password-file", required=True, type=Path)
    r = sub.add_parser("service-roles")
    r.add_argument("--admin-url", required=True)
    r.add_argument("--database", required=True)
    r.add_argument("--host", required=True)
    r.add_argument("--port", required=True, type=int)
    r.add_argument("--env-file", required=True, type=Path)
    args = parser.parse_args()
    try:
        if args.command == "superuser-password":
            asyncio.run(superuser_password(args.admin_url, args.password_file.read_text().strip()))
        else:
            kept = _read_env(args.env_file)
            owner_pw = _password_in(kept.get("CARMILEAGE_MIGRATION_DATABASE_URL"), OWNER) or secrets.token_urlsafe(24)
            service_pw = _password_in(kept.get("CARMILEAGE_DATABASE_URL"), SERVICE) or secrets.token_urlsafe(24)
            asyncio.run(service_roles(args.admin_url, args.database, owner_pw, service_pw))
            write_env(args.env_file, owner_pw, service_pw, args.host, args.port, args.database)
    except (OSError, asyncpg.PostgresError) as e:
        print(f"setup: cannot set up the database roles as {urlsplit(args.admin_url).username}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
