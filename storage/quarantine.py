"""Quarantined readings as a reviewer meets them: the reading a rollback or telematics case is
about, locked while the case is resolved, and marked resolved with it.

`storage.readings` quarantines readings; this module is where the review side reads and closes
them, so no route or action writes SQL against the table itself.
"""

from __future__ import annotations

import asyncpg

from storage.db import Conn


async def get_quarantined(conn: Conn | asyncpg.Pool, quarantined_reading_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow("select * from quarantined_readings where id = $1", quarantined_reading_id)


async def lock_quarantined(conn: Conn, quarantined_reading_id: int) -> asyncpg.Record | None:
    """The row, locked for the resolving transaction (two reviewers never verify it twice)."""
    return await conn.fetchrow(
        "select * from quarantined_readings where id = $1 for update", quarantined_reading_id
    )


async def mark_quarantine_resolved(conn: Conn, quarantined_reading_id: int) -> None:
    """A reviewer decided the case: the reading leaves the open review queue (it stays kept)."""
    await conn.execute(
        "update quarantined_readings set review_status = 'resolved' where id = $1", quarantined_reading_id
    )
