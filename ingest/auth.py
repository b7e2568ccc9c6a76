"""Who is calling: bearer tokens per role, and the scopes each role has."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from aiohttp import web

from ingest.api import ApiError, Reason
from ingest.state import POOL
from storage.tokens import check_token


@dataclass(frozen=True)
class Principal:
    role: str
    subject: str
    token_id: int

    @property
    def actor(self) -> str:
        return f"{self.role}:{self.subject}"


def check_owner(principal: Principal, owner_id: str) -> None:
    """A citizen acts on its own cars only; staff roles on any."""
    if principal.role == "citizen" and principal.subject != owner_id:
        raise ApiError(403, "not_your_vehicle", "This car is enrolled by someone else.")


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if hmac.compare_digest(scheme.lower().encode(), b"bearer") and token.strip():
        return token.strip()
    return None


async def authenticate(request: web.Request) -> Principal:
    token = bearer_token(request)
    if token is None:
        raise ApiError(
            401,
            "unauthenticated",
            "Send an API token as 'Authorization: Bearer <token>'.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    checked = await check_token(request.app[POOL], token) if len(token) <= 200 else None
    if checked is None or checked.record is None:
        problem = checked.problem if checked is not None else "token_unknown"
        raise ApiError(
            401,
            "invalid_token",
            "The API token is unknown, revoked or expired.",
            [Reason(code=problem or "token_unknown", message=_PROBLEMS[problem or "token_unknown"])],
            headers={"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{problem}"'},
        )
    record = checked.record
    return Principal(record.role, record.subject, record.id)


_PROBLEMS = {
    "token_unknown": "No token is known by this value.",
    "token_expired": "The token has expired; ask an operator for a new one.",
    "token_revoked": "The token was revoked.",
}


def require_principal(principal: Principal | None) -> Principal:
    if principal is None:
        raise ApiError(401, "unauthenticated", "This operation needs an API token.")
    return principal
