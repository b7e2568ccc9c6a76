"""`carmileage tokens create|list|revoke`: API tokens per role."""

from __future__ import annotations

import argparse
import asyncio
import json

import asyncpg

from ingest.settings import load_settings
from storage.tokens import ROLES, create_token, list_tokens, revoke_token


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
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=run_create)
    ls = tsub.add_parser("list", help="list tokens (never the tokens themselves)")
    ls.set_defaults(func=run_list)
    r = tsub.add_parser("revoke", help="revoke a token by id")
    r.add_argument("id", type=int)
    r.set_defaults(func=run_revoke)


async def _with_conn(fn):  # type: ignore[no-untyped-def,unused-ignore]
    conn = await asyncpg.connect(load_settings().database_url)
    try:
        return await fn(conn)
    finally:
        await conn.close()


def run_create(args: argparse.Namespace) -> int:
    async def go(conn: asyncpg.Connection) -> tuple[int, str]:
        if args.role == "provider":
            exists = await conn.fetchval("select 1 from providers where name = $1", args.subject)
            if not exists:
                raise SystemExit(f"carmileage: no provider named {args.subject!r}; add it first")
        return await create_token(conn, args.role, args.subject, label=args.label)

    token_id, token = asyncio.run(_with_conn(go))
    if args.json:
        print(json.dumps({"id": token_id, "role": args.role, "subject": args.subject, "token": token}))
    else:
        print(token)
    return 0


def run_list(args: argparse.Namespace) -> int:
    rows = asyncio.run(_with_conn(list_tokens))
    for r in rows:
        state = "revoked" if r["revoked_at"] else "active"
        print(f"{r['id']:>6}  {r['role']:<9} {r['subject']:<30} {state:<8} {r['label'] or ''}")
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    async def go(conn: asyncpg.Connection) -> bool:
        return await revoke_token(conn, args.id)

    if not asyncio.run(_with_conn(go)):
        print(f"carmileage: no active token {args.id}")
        return 1
    print(f"revoked token {args.id}")
    return 0
