"""The append-only audit log (the table refuses updates and deletes)."""

from __future__ import annotations

from typing import Any

from storage.db import Conn


async def write_audit(
    conn: Conn,
    *,
    actor_role: str,
    actor_id: str,
    action: str,
    entity: str,
    entity_id: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    request_id: str | None,
) -> None:
    await conn.execute(
        """insert into audit_log (actor_role, actor_id, action, entity, entity_id, before, after, request_id)
           values ($1, $2, $3, $4, $5, $6, $7, $8)""",
        actor_role,
        actor_id,
        action,
        entity,
        entity_id,
        before,
        after,
        request_id,
    )
