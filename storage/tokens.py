"""API tokens and page sessions: only a SHA-256 of each token is stored; the token is shown once.

Two kinds: an API token (made by an operator with `carmileage tokens create`, sent as a bearer
token, expiring after a configurable time) and a page session (made at sign-in from an API token,
valid only as the session cookie, ending after a short idle time, at an absolute limit, at sign-out
or when its API token is revoked). A token that is refused says why: unknown, expired or revoked.
"""

from __future__ import annotations

import hashlib
import random
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import asyncpg

from storage.db import Conn

ROLES = ("operator", "provider", "citizen", "reviewer")
Kind = Literal["api", "session"]
#: Why a token is refused.
Problem = Literal["token_unknown", "token_expired", "token_revoked"]
#: Sessions expired this long ago are deleted (now and then, at sign-in).
SESSION_RETENTION_DAYS = 7


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class TokenRecord:
    id: int
    role: str
    subject: str
    kind: str = "api"
    expires_at: datetime | None = None
    #: The identity provider's issuer, for a page session made by OpenID Connect sign-in.
    idp: str | None = None


@dataclass(frozen=True)
class TokenCheck:
    """The record of a valid token, or the reason it is refused."""

    record: TokenRecord | None
    problem: Problem | None


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


async def check_token(conn: Conn | asyncpg.Pool, token: str, kind: Kind = "api") -> TokenCheck:
    """Look a token of this kind up, and say why it is refused when it is."""
    row = await conn.fetchrow(
        """select id, role, subject, kind, expires_at, revoked_at, expires_at <= now() as expired, idp
           from api_tokens where token_hash = $1""",
        hash_token(token),
    )
    if row is None or row["kind"] != kind:
        return TokenCheck(None, "token_unknown")
    if row["revoked_at"] is not None:
        return TokenCheck(None, "token_revoked")
    if row["expired"]:
        return TokenCheck(None, "token_expired")
    return TokenCheck(
        TokenRecord(row["id"], row["role"], row["subject"], row["kind"], row["expires_at"], row["idp"]), None
    )


async def find_token(conn: Conn | asyncpg.Pool, token: str, kind: Kind = "api") -> TokenRecord | None:
    return (await check_token(conn, token, kind)).record


async def create_session(conn: Conn, parent: TokenRecord, *, idle_s: int, max_s: int) -> tuple[int, str]:
    """A page session for the holder of API token `parent`: it ends after `idle_s` without use
    (see `touch_session`), `max_s` after sign-in at the latest, and never after its parent."""
    token = f"cm_ses_{secrets.token_urlsafe(32)}"
    async with conn.transaction():
        session_id: int = await conn.fetchval(
            """insert into api_tokens (token_hash, role, subject, label, kind, parent_id, expires_at)
               select $1, role, subject, 'page session', 'session', id,
                      least(now() + make_interval(secs => $3), now() + make_interval(secs => $4),
                            coalesce(expires_at, 'infinity'))
               from api_tokens where id = $2
               returning id""",
            hash_token(token),
            parent.id,
            idle_s,
            max_s,
        )
        if random.random() < 0.02:
            await conn.execute(
                """delete from api_tokens where kind = 'session'
                   and expires_at < now() - make_interval(days => $1)""",
                SESSION_RETENTION_DAYS,
            )
    return session_id, token


async def create_idp_session(
    conn: Conn, role: str, subject: str, idp: str, *, idle_s: int, max_s: int
) -> tuple[int, str]:
    """A page session for someone the identity provider `idp` (its issuer) vouched for: no API
    token behind it; it ends after `idle_s` without use, `max_s` after sign-in, or at sign-out.
    A citizen gets their owner row on the way, as with `create_token`."""
    if role not in ROLES or role == "provider":
        raise ValueError(f"no page session for role {role!r}")
    token = f"cm_ses_{secrets.token_urlsafe(32)}"
    async with conn.transaction():
        if role == "citizen":
            await conn.execute("insert into owners (id) values ($1) on conflict (id) do nothing", subject)
        session_id: int = await conn.fetchval(
            """insert into api_tokens (token_hash, role, subject, label, kind, idp, expires_at)
               values ($1, $2, $3, 'page session', 'session', $4,
                       least(now() + make_interval(secs => $5), now() + make_interval(secs => $6)))
               returning id""",
            hash_token(token),
            role,
            subject,
            idp,
            idle_s,
            max_s,
        )
        if random.random() < 0.02:
            await conn.execute(
                """delete from api_tokens where kind = 'session'
                   and expires_at < now() - make_interval(days => $1)""",
                SESSION_RETENTION_DAYS,
            )
    return session_id, token


async def touch_session(conn: Conn | asyncpg.Pool, session: TokenRecord, *, idle_s: int, max_s: int) -> None:
    """Slide a session's expiry: `idle_s` from now, capped at `max_s` after sign-in and at its API
    token's expiry. Written only once half the idle time has passed, not on every request."""
    if session.expires_at is None:
        return
    await conn.execute(
        """update api_tokens s set expires_at = least(now() + make_interval(secs => $2),
                                                     s.created_at + make_interval(secs => $3),
                                                     coalesce((select p.expires_at from api_tokens p
                                                               where p.id = s.parent_id), 'infinity'))
           where s.id = $1 and s.kind = 'session' and s.revoked_at is null
             and s.expires_at > now() and s.expires_at < now() + make_interval(secs => $2 / 2.0)""",
        session.id,
        idle_s,
        max_s,
    )


async def revoke_token(conn: Conn, token_id: int, reason: str = "revoked") -> bool:
    """Revoke a token and the page sessions made from it."""
    status: str = await conn.execute(
        """update api_tokens set revoked_at = now(), revoked_reason = $2
           where (id = $1 or parent_id = $1) and revoked_at is null""",
        token_id,
        reason,
    )
    return not status.endswith(" 0")


async def list_tokens(conn: Conn) -> list[asyncpg.Record]:
    """API tokens (sessions are not listed: they come and go with sign-ins)."""
    return await conn.fetch(
        """select id, role, subject, label, created_at, expires_at, revoked_at,
                  expires_at is not null and expires_at <= now() as expired
           from api_tokens where kind = 'api' order by id"""
    )
