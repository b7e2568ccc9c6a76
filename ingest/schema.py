"""Bring the database up to date: migrations as the owning role, then the service role's grants,
then providers' secrets still stored in the clear sealed. Shared by `carmileage migrate` and the
service's start.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg

from ingest.settings import Settings
from storage.db import ensure_database
from storage.migrate import current_version, migrate, migration_lock
from storage.providers import seal_plain_secrets
from storage.roles import connected_as_superuser, grant_service_role, url_user


@dataclass
class SchemaReport:
    created: bool
    applied: list[str]
    version: str | None
    granted_to: str | None
    sealed_secrets: int
    warnings: list[str] = field(default_factory=list)


async def bring_up_to_date(settings: Settings) -> SchemaReport:
    """Create the database when missing, apply pending migrations as CARMILEAGE_MIGRATION_DATABASE_URL's
    role (else CARMILEAGE_DATABASE_URL's), grant the service role when they differ, and seal
    plain provider secrets."""
    owner_url = settings.migration_database_url or settings.database_url
    created = await ensure_database(owner_url)
    conn = await asyncpg.connect(owner_url)
    try:
        applied = await migrate(conn)
        version = await current_version(conn)
        service_role, owner_role = url_user(settings.database_url), url_user(owner_url)
        granted_to = None
        warnings: list[str] = []
        async with migration_lock(conn):
            if settings.migration_database_url and service_role and service_role != owner_role:
                warnings += await grant_service_role(conn, service_role)
                granted_to = service_role
            elif await connected_as_superuser(conn):
                warnings.append(
                    "the service connects as a superuser: give it a role of its own "
                    "(CARMILEAGE_DATABASE_URL) and run migrations as the owner (CARMILEAGE_MIGRATION_DATABASE_URL)"
                )
            sealed = await seal_plain_secrets(conn, settings.provider_box())
    finally:
        await conn.close()
    return SchemaReport(created, applied, version, granted_to, sealed, warnings)
