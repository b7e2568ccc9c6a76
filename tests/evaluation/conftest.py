"""Each evaluation test gets a database of its own: a round evaluates every participation in it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from storage.db import create_pool


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
    finally:
        await c.close()
