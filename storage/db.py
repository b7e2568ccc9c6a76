"""The connection pool and the database itself."""

from __future__ import annotations

import json
from datetime import datetime
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from asyncpg.pool import PoolConnectionProxy

#: A connection, whether acquired from the pool or opened alone; repositories accept either.
Conn = asyncpg.Connection | PoolConnectionProxy


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typ in ("json", "jsonb"):
        await conn.set_type_codec(typ, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def connect(url: str) -> asyncpg.Connection:
    """One connection alone (a CLI command), with the codecs the pool's connections have."""
    conn = await asyncpg.connect(url, command_timeout=60)
    await _init_connection(conn)
    return conn


async def create_pool(url: str, *, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        url, min_size=min_size, max_size=max_size, init=_init_connection, command_timeout=60
    )
    assert pool is not None
    return pool


async def database_now(conn: Conn | asyncpg.Pool) -> datetime:
    """The database's clock: approval times agree with the `now()` of the rows written with them."""
    now: datetime = await conn.fetchval("select now()")
    return now


async def ping(conn: Conn | asyncpg.Pool) -> None:
    """A round trip to the database (readiness)."""
    await conn.fetchval("select 1")


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/") or "postgres"


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


async def ensure_database(url: str) -> bool:
    """Create the database named in `url` when it does not exist; True when it was created."""
    name = database_name(url)
    conn = await asyncpg.connect(with_database(url, "postgres"))
    try:
        exists = await conn.fetchval("select 1 from pg_database where datname = $1", name)
        if exists:
            return False
        try:
            await conn.execute(f'create database "{name}"')
        except asyncpg.DuplicateDatabaseError:
            return False
        return True
    finally:
        await conn.close()


async def drop_database(url: str) -> None:
    name = database_name(url)
    conn = await asyncpg.connect(with_database(url, "postgres"))
    try:
        await conn.execute(f'drop database if exists "{name}" with (force)')
    finally:
        await conn.close()
