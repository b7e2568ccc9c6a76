"""Operators steering delivery to the reward calculator: a dead-lettered event made due again,
with an audit entry in the same transaction (the operator dashboard's retry buttons and
`carmileage outbox retry`).

The outbox row is changed by `storage.outbox.retry_items` only, so the page and the CLI cannot
disagree about what a retry is, and neither retries without leaving an audit entry.
"""

from __future__ import annotations

from typing import Any

from storage.audit import write_audit
from storage.db import Conn
from storage.outbox import get_item, retry_items


def _snapshot(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "status": item["status"],
        "attempts": item["attempts"],
        "last_status": item["last_status"],
        "last_error": (item["last_error"] or "")[:500] or None,
        "event_id": str(item["event_id"]),
    }


async def retry_dead_event(conn: Conn, item_id: int, operator: str, request_id: str | None) -> bool:
    """Make one dead event due now; False (and nothing written) when it is not dead."""
    async with conn.transaction():
        item = await get_item(conn, str(item_id))
        if item is None or item["status"] != "dead":
            return False
        if not await retry_items(conn, [str(item_id)]):
            return False
        await write_audit(
            conn,
            actor_role="operator",
            actor_id=operator,
            action="outbox.retry",
            entity="outbox",
            entity_id=str(item_id),
            before=_snapshot(item),
            after={"status": "pending"},
            request_id=request_id,
        )
    return True


async def retry_all_dead(conn: Conn, operator: str, request_id: str | None) -> int:
    """Every dead event due now; one audit entry with the count."""
    async with conn.transaction():
        n = await retry_items(conn, all_dead=True)
        if n:
            await write_audit(
                conn,
                actor_role="operator",
                actor_id=operator,
                action="outbox.retry_all_dead",
                entity="outbox",
                entity_id="dead",
                before={"status": "dead", "count": n},
                after={"status": "pending", "count": n},
                request_id=request_id,
            )
    return n


async def retry_events(conn: Conn, keys: list[str], operator: str) -> int:
    """Dead or waiting events named by id or event id due now (the CLI); one audit entry naming
    them and the count, when any was touched."""
    async with conn.transaction():
        n = await retry_items(conn, keys)
        if n:
            await write_audit(
                conn,
                actor_role="operator",
                actor_id=operator,
                action="outbox.retry",
                entity="outbox",
                entity_id=",".join(keys)[:200],
                before={"keys": keys},
                after={"status": "pending", "count": n},
                request_id=None,
            )
    return n
