"""`carmileage migrate`: create the database when missing and apply pending migrations."""

from __future__ import annotations

import argparse
import asyncio

import asyncpg

from ingest.settings import load_settings
from storage.db import ensure_database
from storage.migrate import current_version, migrate


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    p = sub.add_parser("migrate", help="create the database if needed and apply migrations")
    p.set_defaults(func=run)


async def _migrate(url: str) -> None:
    created = await ensure_database(url)
    conn = await asyncpg.connect(url)
    try:
        applied = await migrate(conn)
        version = await current_version(conn)
    finally:
        await conn.close()
    if created:
        print("created the database")
    print(f"applied {len(applied)} migration(s); schema version {version}")


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    asyncio.run(_migrate(settings.database_url))
    return 0
