"""Sign-ins on their way through the identity provider (OpenID Connect): the one writer of
`oidc_logins`. A login is started with a random state, nonce and PKCE verifier and is taken back
exactly once, by the state, before it expires; a state seen twice is a replay."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Literal

from storage.db import Conn

Problem = Literal["state_unknown", "state_replayed", "state_expired"]


@dataclass(frozen=True)
class Login:
    nonce: str
    code_verifier: str
    redirect_uri: str
    next_path: str


@dataclass(frozen=True)
class LoginTake:
    login: Login | None
    problem: Problem | None


def _hash(state: str) -> bytes:
    return hashlib.sha256(state.encode()).digest()


async def start_login(
    conn: Conn, *, state: str, nonce: str, code_verifier: str, redirect_uri: str, next_path: str, ttl_s: int
) -> None:
    await conn.execute(
        """insert into oidc_logins (state_hash, nonce, code_verifier, redirect_uri, next_path, expires_at)
           values ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))""",
        _hash(state),
        nonce,
        code_verifier,
        redirect_uri,
        next_path,
        ttl_s,
    )
    if random.random() < 0.05:
        await conn.execute("delete from oidc_logins where expires_at < now() - interval '1 day'")


async def take_login(conn: Conn, state: str) -> LoginTake:
    """The login of this state, marked used; or why there is none (a second take is a replay)."""
    row = await conn.fetchrow(
        """update oidc_logins set used_at = now()
           where state_hash = $1 and used_at is null and expires_at > now()
           returning nonce, code_verifier, redirect_uri, next_path""",
        _hash(state),
    )
    if row is not None:
        return LoginTake(Login(row["nonce"], row["code_verifier"], row["redirect_uri"], row["next_path"]), None)
    seen = await conn.fetchrow("select used_at from oidc_logins where state_hash = $1", _hash(state))
    if seen is None:
        return LoginTake(None, "state_unknown")
    return LoginTake(None, "state_replayed" if seen["used_at"] is not None else "state_expired")
