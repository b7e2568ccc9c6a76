"""Who is calling: bearer tokens per role, and the scopes each role has."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from aiohttp import web

from ingest.api import ApiError
from ingest.state import POOL
from storage.tokens import find_token


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
    record = await find_token(request.app[POOL], token)
    if record is None:
        raise ApiError(
            401,
            "invalid_token",
            "The API token is unknown, revoked or expired.",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    principal = Principal(record.role, record.subject, record.id)
    return principal


def require_principal(principal: Principal | None) -> Principal:
    if principal is None:
        raise ApiError(401, "unauthenticated", "This operation needs an API token.")
    return principal
