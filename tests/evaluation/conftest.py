"""Each evaluation test gets a database of its own: a round evaluates every participation in it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from ingest.app import create_app
from storage.db import create_pool
from tests.conftest import make_settings


@pytest.fixture
async def eval_pool(fresh_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(fresh_database_url, min_size=1, max_size=4)
    yield p
    await p.close()


@pytest.fixture
async def conn(fresh_database_url: str, eval_pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(fresh_database_url)
    try:
        yield c
        # Rounds write results and outbox rows without foreign keys (0400): whatever a test did,
        # no result may name a missing participation and no outbox row a missing result.
        orphans = await c.fetchrow(
            """select (select count(*) from period_results r
                       where not exists (select 1 from participations p where p.id = r.participation_id)) as results,
                      (select count(*) from outbox o where o.period_result_id is not null
                       and not exists (select 1 from period_results r where r.id = o.period_result_id)) as outbox"""
        )
        assert orphans is not None and (orphans["results"], orphans["outbox"]) == (0, 0), dict(orphans or {})
    finally:
        await c.close()


@pytest.fixture
async def http(fresh_database_url: str, eval_pool: asyncpg.Pool, tmp_path: Path) -> AsyncIterator[TestClient]:
    """The HTTP API on the test's database."""
    app = create_app(make_settings(fresh_database_url, tmp_path / "data"), eval_pool)
    async with TestClient(TestServer(app)) as c:
        yield c
