"""Database roles: the schema belongs to an owning role that runs migrations; the service connects
as another role that gets only what the running service needs.

Why: a service connected as a superuser or as the tables' owner can rewrite the append-only audit
log (disable its trigger, alter or truncate the table), so the log would only be as strong as the
service's weakest bug. The service role may read and write the working tables, only INSERT and
SELECT the append-only ones, only read `schema_migrations`, and owns nothing, so it can neither
alter, drop nor truncate a table nor disable a trigger.

`grant_service_role` runs after every migration (`carmileage migrate`), so tables that later
migrations add get their grants; a table that is append-only is listed in APPEND_ONLY_TABLES.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import asyncpg

from storage.db import Conn

#: Rows are only ever added (their triggers refuse UPDATE and DELETE, too).
APPEND_ONLY_TABLES = ("audit_log", "period_readings")
#: The service reads these and never writes them.
READ_ONLY_TABLES = ("schema_migrations",)


def url_user(url: str) -> str:
    return unquote(urlsplit(url).username or "")


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def is_superuser(conn: Conn, role: str) -> bool:
    return bool(await conn.fetchval("select rolsuper from pg_roles where rolname = $1", role))


async def connected_as_superuser(conn: Conn) -> bool:
    """Whether this connection's role is a superuser (then no grant limits the service)."""
    return bool(await conn.fetchval("select rolsuper from pg_roles where rolname = current_user"))


async def grant_service_role(conn: Conn, role: str) -> list[str]:
    """Give `role` exactly the service's privileges on every table, sequence and function of the
    schema `public` (revoking whatever else it had there), in one transaction. Returns warnings
    about privileges it holds through others that this role cannot take away."""
    r = quote_ident(role)
    tables = {
        row["name"]
        for row in await conn.fetch(
            """select c.relname as name from pg_class c join pg_namespace n on n.oid = c.relnamespace
               where n.nspname = 'public' and c.relkind in ('r', 'p', 'v', 'm', 'f')"""
        )
    }
    async with conn.transaction():
        await conn.execute(f"grant usage on schema public to {r}")
        await conn.execute(f"revoke create on schema public from {r}")
        await conn.execute(f"revoke all on all tables in schema public from {r}")
        await conn.execute(f"grant select, insert, update, delete on all tables in schema public to {r}")
        for name in APPEND_ONLY_TABLES:
            if name in tables:
                await conn.execute(f"revoke update, delete on {quote_ident(name)} from {r}")
        for name in READ_ONLY_TABLES:
            if name in tables:
                await conn.execute(f"revoke insert, update, delete on {quote_ident(name)} from {r}")
        await conn.execute(f"revoke all on all sequences in schema public from {r}")
        await conn.execute(f"grant usage, select on all sequences in schema public to {r}")
        await conn.execute(f"grant execute on all functions in schema public to {r}")
    warnings = []
    if await is_superuser(conn, role):
        warnings.append(f"role {role} is a superuser: no grant limits it; connect the service as another role")
    elif await conn.fetchval("select has_schema_privilege($1, 'public', 'CREATE')", role):
        warnings.append(
            f"role {role} may create tables in schema public (granted to PUBLIC): as the schema's "
            "owner run `revoke create on schema public from public`"
        )
    return warnings


async def ensure_login_role(conn: Conn, role: str, password: str | None) -> bool:
    """Create a plain login role (no superuser, no CREATEDB, no CREATEROLE) or set its password;
    True when it was created. Needs a role allowed to create roles."""
    r = quote_ident(role)
    exists = await conn.fetchval("select 1 from pg_roles where rolname = $1", role)
    created = False
    if not exists:
        try:
            await conn.execute(f"create role {r} login nosuperuser nocreatedb nocreaterole")
            created = True
        except (asyncpg.DuplicateObjectError, asyncpg.UniqueViolationError):
            pass  # created by a concurrent caller
    if password is not None:
        # the password is sent as a literal: ALTER ROLE takes no parameters
        literal = "'" + password.replace("'", "''") + "'"
        try:
            await conn.execute(f"alter role {r} with login inherit password {literal}")
        except asyncpg.InternalServerError as e:  # "tuple concurrently updated"
            if "concurrently" not in str(e):
                raise
    return created
