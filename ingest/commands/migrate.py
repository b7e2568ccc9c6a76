"""`carmileage migrate`: create the database when missing, apply pending migrations as the owning
role (CARMILEAGE_MIGRATION_DATABASE_URL, else CARMILEAGE_DATABASE_URL) and grant the service's role
(CARMILEAGE_DATABASE_URL's user) only what the service needs."""

from __future__ import annotations

import argparse
import asyncio
import sys

from ingest.schema import bring_up_to_date
from ingest.settings import load_settings


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    p = sub.add_parser("migrate", help="create the database if needed, apply migrations, grant the service role")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    report = asyncio.run(bring_up_to_date(load_settings()))
    if report.created:
        print("created the database")
    print(f"applied {len(report.applied)} migration(s); schema version {report.version}")
    if report.granted_to:
        print(f"granted the service role {report.granted_to} its privileges")
    if report.sealed_secrets:
        print(f"sealed {report.sealed_secrets} provider secret(s) stored in the clear")
    for w in report.warnings:
        print(f"carmileage: warning: {w}", file=sys.stderr)
    return 0
