"""API tokens: only a SHA-256 of each token is stored; the token is shown once, at creation."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from storage.db import Conn

ROLES = ("operator", "provider", "citizen", "reviewer")


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class TokenRecord:
    id: int
    role: str
    subject: str


async def create_token(
    conn: Conn,
    role: str,
    subject: str,
    *,
    label: str | None = None,
    expires_at: datetime | None = None,
) -> tuple[int, str]:
    """Return (token id, the token itself). Citizens get their owner row on the way."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    token = f"cm_{role[:3]}_{secrets.token_urlsafe(32)}"
    async with conn.transaction():
        if role == "citizen":
            await conn.execute(
                "insert into owners (id) values ($1) on conflict (id) do nothing", subject
            )
        token_id: int = await conn.fetchval(
            """insert into api_tokens (token_hash, role, subject, label, expires_at)
               values ($1, $2, $3, $4, $5) returning id""",
            hash_token(token),
            role,
            subject,
            label,
            expires_at,
        )
    return token_id, token


async def find_token(conn: Conn | asyncpg.Pool, token: str) -> TokenRecord | None:
    row = await conn.fetchrow(
        """select id, role, subject from api_tokens
           where token_hash = $1 and revoked_at is null
             and (expires_at is null or expires_at > now())""",
        hash_token(token),
    )
    return TokenRecord(row["id"], row["role"], row["subject"]) if row else None


async def revoke_token(conn: Conn, token_id: int) -> bool:
    status: str = await conn.execute(
        "update api_tokens set revoked_at = now() where id = $1 and revoked_at is null", token_id
    )
    return status.endswith(" 1")


async def list_tokens(conn: Conn) -> list[asyncpg.Record]:
    return await conn.fetch(
        "select id, role, subject, label, created_at, expires_at, revoked_at from api_tokens order by id"
    )
