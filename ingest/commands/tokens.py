"""`carmileage tokens create|list|revoke`: API tokens per role.

Every token expires: after CARMILEAGE_TOKEN_TTL_DAYS (90) unless `--expires-in` says otherwise
(`30d`, `12h`, `45m`, or `never` for a machine that cannot be re-issued a token). An expired or
revoked token is refused with 401 and its reason.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from datetime import UTC, datetime, timedelta

import asyncpg

from ingest.settings import load_settings
from storage.providers import ProviderNotFound, provider_id
from storage.tokens import ROLES, create_token, list_tokens, revoke_token

_DURATION = re.compile(r"^(\d{1,6})([mhd])$")
_UNIT = {"m": "minutes", "h": "hours", "d": "days"}
#: The longest lifetime a duration may give (10 years).
_MAX = timedelta(days=3650)


NEVER = "never"


def parse_expires_in(text: str) -> timedelta | str:
    """`90d` / `12h` / `45m` -> a lifetime; `never` -> NEVER."""
    if text.strip().lower() == NEVER:
        return NEVER
    m = _DURATION.match(text.strip().lower())
    if not m or int(m.group(1)) == 0:
        raise argparse.ArgumentTypeError("give a lifetime such as 90d, 12h or 45m, or 'never'")
    lifetime = timedelta(**{_UNIT[m.group(2)]: int(m.group(1))})
    if lifetime > _MAX:
        raise argparse.ArgumentTypeError("at most 3650d")
    return lifetime


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    p = sub.add_parser("tokens", help="create, list or revoke API tokens")
    tsub = p.add_subparsers(dest="tokens_command", required=True)
    c = tsub.add_parser("create", help="create a token (printed once)")
    c.add_argument("--role", required=True, choices=ROLES)
    c.add_argument(
        "--subject",
        required=True,
        help="owner id (citizen), provider name (provider), reviewer or operator name",
    )
    c.add_argument("--label")
    c.add_argument(
        "--expires-in",
        type=parse_expires_in,
        metavar="DURATION",
        help="lifetime: 90d, 12h, 45m or never (default: CARMILEAGE_TOKEN_TTL_DAYS, 90 days)",
    )
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=run_create)
    ls = tsub.add_parser("list", help="list tokens (never the tokens themselves)")
    ls.set_defaults(func=run_list)
    r = tsub.add_parser("revoke", help="revoke a token by id (and the page sessions signed in with it)")
    r.add_argument("id", type=int)
    r.set_defaults(func=run_revoke)


async def _with_conn(fn):  # type: ignore[no-untyped-def,unused-ignore]
    conn = await asyncpg.connect(load_settings().database_url)
    try:
        return await fn(conn)
    finally:
        await conn.close()


def run_create(args: argparse.Namespace) -> int:
    if args.expires_in is None:
        expires_at: datetime | None = datetime.now(UTC) + timedelta(days=load_settings().token_ttl_days)
    elif args.expires_in == NEVER:
        expires_at = None
    else:
        expires_at = datetime.now(UTC) + args.expires_in

    async def go(conn: asyncpg.Connection) -> tuple[int, str]:
        if args.role == "provider":
            try:
                await provider_id(conn, args.subject)
            except ProviderNotFound:
                raise SystemExit(f"carmileage: no provider named {args.subject!r}; add it first") from None
        return await create_token(conn, args.role, args.subject, label=args.label, expires_at=expires_at)

    token_id, token = asyncio.run(_with_conn(go))
    if args.json:
        print(
            json.dumps(
                {
                    "id": token_id,
                    "role": args.role,
                    "subject": args.subject,
                    "token": token,
                    "expires_at": expires_at.isoformat() if expires_at else None,
                }
            )
        )
    else:
        print(token)
    return 0


def run_list(args: argparse.Namespace) -> int:
    rows = asyncio.run(_with_conn(list_tokens))
    for r in rows:
        state = "revoked" if r["revoked_at"] else "expired" if r["expired"] else "active"
        until = r["expires_at"].strftime("%Y-%m-%d %H:%M") if r["expires_at"] else "never"
        print(f"{r['id']:>6}  {r['role']:<9} {r['subject']:<30} {state:<8} until {until:<16} {r['label'] or ''}")
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    async def go(conn: asyncpg.Connection) -> bool:
        return await revoke_token(conn, args.id, "operator")

    if not asyncio.run(_with_conn(go)):
        print(f"carmileage: no active token {args.id}")
        return 1
    print(f"revoked token {args.id}")
    return 0
