"""The outbox: events written with the data they describe, delivered later, at least once.

Senders claim due rows with `FOR UPDATE SKIP LOCKED` and hold them by a lease (`lease_until`,
`claimed_by`) while they POST, outside any transaction; a sender that dies leaves its rows leased
until the lease runs out, and then another sender takes them. Completing a row checks the claim,
so a sender whose lease was taken over cannot overwrite the newer sender's outcome.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from storage.db import Conn

OUTBOX_STATUSES = ("pending", "delivered", "dead")

#: The body sent for a row: its own payload, or its period result rendered (cm_result_payload).
_BODY = """coalesce(o.payload, (select cm_result_payload(r, o.supersedes_event_id)
                              from period_results r where r.id = o.period_result_id))::text"""


@dataclass(frozen=True, slots=True)
class OutboxItem:
    id: int
    event_id: uuid.UUID
    kind: str
    attempts: int
    body: bytes


async def claim_due(conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy, worker: str, limit: int, lease_s: float) -> list[OutboxItem]:
    """Claim up to `limit` due rows for `lease_s` seconds; each claim counts as an attempt."""
    rows = await conn.fetch(
        f"""with due as (
                select id from outbox
                where status = 'pending' and next_attempt_at <= now()
                  and (lease_until is null or lease_until < now())
                order by next_attempt_at, id
                limit $1
                for update skip locked)
            update outbox o
               set lease_until = now() + make_interval(secs => $2), claimed_by = $3,
                   attempts = o.attempts + 1
              from due where o.id = due.id
            returning o.id, o.event_id, o.kind, o.attempts, {_BODY} as body""",
        limit,
        lease_s,
        worker,
    )
    return [
        OutboxItem(r["id"], r["event_id"], r["kind"], r["attempts"], r["body"].encode())
        for r in sorted(rows, key=lambda r: r["id"])
    ]


async def mark_delivered(conn: asyncpg.Connection | asyncpg.Pool, item_id: int, worker: str, status: int) -> bool:
    """2xx: delivered. False when the claim was lost (another sender holds the row now)."""
    result = await conn.execute(
        """update outbox set status = 'delivered', delivered_at = now(), lease_until = null,
                             last_status = $3, last_error = null
           where id = $1 and claimed_by = $2 and status = 'pending'""",
        item_id,
        worker,
        status,
    )
    return result.endswith(" 1")


async def mark_retry(
    conn: asyncpg.Connection | asyncpg.Pool,
    item_id: int,
    worker: str,
    delay_s: float,
    status: int | None,
    error: str,
) -> bool:
    """A failure worth retrying (5xx, 429, timeout, connection): due again after `delay_s`."""
    result = await conn.execute(
        """update outbox set next_attempt_at = now() + make_interval(secs => $3), lease_until = null,
                             last_status = $4, last_error = $5
           where id = $1 and claimed_by = $2 and status = 'pending'""",
        item_id,
        worker,
        delay_s,
        status,
        error[:2000],
    )
    return result.endswith(" 1")


async def mark_dead(
    conn: asyncpg.Connection | asyncpg.Pool, item_id: int, worker: str, status: int | None, reason: str
) -> bool:
    """A refusal that retrying cannot fix (4xx other than 429): dead letter, with the reason."""
    result = await conn.execute(
        """update outbox set status = 'dead', dead_at = now(), lease_until = null,
                             last_status = $3, last_error = $4
           where id = $1 and claimed_by = $2 and status = 'pending'""",
        item_id,
        worker,
        status,
        reason[:2000],
    )
    return result.endswith(" 1")


async def release(conn: asyncpg.Connection | asyncpg.Pool, item_ids: list[int], worker: str) -> None:
    """Hand rows back at once (a graceful stop) without counting the unfinished attempt."""
    await conn.execute(
        """update outbox set lease_until = null, attempts = greatest(attempts - 1, 0)
           where id = any($1::bigint[]) and claimed_by = $2 and status = 'pending'""",
        item_ids,
        worker,
    )


async def list_items(
    conn: asyncpg.Connection | asyncpg.Pool, status: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """select id, event_id, kind, status, attempts, next_attempt_at, last_status, last_error,
                  created_at, delivered_at, dead_at, period_result_id
           from outbox where ($1::text is null or status = $1)
           order by id desc limit $2""",
        status,
        limit,
    )
    return [dict(r) for r in rows]


async def get_item(conn: Conn | asyncpg.Pool, key: str) -> dict[str, Any] | None:
    """A row by id or by event id, with the body it sends."""
    try:
        event_id: uuid.UUID | None = uuid.UUID(key)
        item_id = None
    except ValueError:
        event_id = None
        item_id = int(key) if key.isdigit() else -1
    row = await conn.fetchrow(
        f"""select o.id, o.event_id, o.kind, o.status, o.attempts, o.next_attempt_at, o.lease_until,
                   o.claimed_by, o.last_status, o.last_error, o.created_at, o.delivered_at, o.dead_at,
                   o.period_result_id, o.supersedes_event_id, {_BODY} as body
            from outbox o where o.id = $1 or o.event_id = $2""",
        item_id,
        event_id,
    )
    return dict(row) if row is not None else None


async def retry_items(
    conn: Conn | asyncpg.Pool, keys: list[str] | None = None, all_dead: bool = False
) -> int:
    """Make dead (or waiting) rows due now again; returns how many rows were touched."""
    if all_dead:
        result = await conn.execute(
            """update outbox set status = 'pending', next_attempt_at = now(), dead_at = null,
                                 lease_until = null
               where status = 'dead'"""
        )
        return int(result.split()[-1])
    ids = [int(k) for k in keys or [] if k.isdigit()]
    events = []
    for k in keys or []:
        if not k.isdigit():
            events.append(uuid.UUID(k))
    result = await conn.execute(
        """update outbox set status = 'pending', next_attempt_at = now(), dead_at = null, lease_until = null
           where status in ('dead', 'pending') and (id = any($1::bigint[]) or event_id = any($2::uuid[]))""",
        ids,
        events,
    )
    return int(result.split()[-1])


async def counts(conn: asyncpg.Connection | asyncpg.Pool) -> dict[str, int]:
    rows = await conn.fetch("select status, count(*) as n from outbox group by status")
    out = dict.fromkeys(OUTBOX_STATUSES, 0)
    out.update({r["status"]: r["n"] for r in rows})
    return out
