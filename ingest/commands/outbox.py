"""`carmileage outbox list|show|retry`: watch and steer delivery to the reward calculator."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import asyncpg

from ingest.outbox_actions import retry_all_dead, retry_events
from ingest.settings import load_settings
from storage.db import connect
from storage.outbox import OUTBOX_STATUSES, counts, get_item, list_items

T = TypeVar("T")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("outbox", help="list, show or retry events for the reward calculator")
    osub = p.add_subparsers(dest="outbox_command", required=True)
    ls = osub.add_parser("list", help="newest events first, with counts by status")
    ls.add_argument("--status", choices=OUTBOX_STATUSES)
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--json", action="store_true", help="one JSON object per event")
    ls.set_defaults(func=run_list)
    sh = osub.add_parser("show", help="one event: state, last error and the exact body it sends")
    sh.add_argument("key", metavar="ID|EVENT_ID")
    sh.set_defaults(func=run_show)
    rt = osub.add_parser("retry", help="make dead (or waiting) events due now")
    rt.add_argument("keys", nargs="*", metavar="ID|EVENT_ID")
    rt.add_argument("--all-dead", action="store_true", help="every dead-lettered event")
    rt.set_defaults(func=run_retry)


def _with_conn(fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    async def go() -> T:
        conn = await connect(load_settings().database_url)
        try:
            return await fn(conn)
        finally:
            await conn.close()

    return asyncio.run(go())


def _jsonable(v: object) -> object:
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, uuid.UUID):
        return str(v)
    return v


def run_list(args: argparse.Namespace) -> int:
    async def go(conn: asyncpg.Connection) -> tuple[dict[str, int], list[dict[str, Any]]]:
        return await counts(conn), await list_items(conn, args.status, args.limit)

    totals, items = _with_conn(go)
    if args.json:
        for it in items:
            print(json.dumps({k: _jsonable(v) for k, v in it.items()}, ensure_ascii=False))
        return 0
    print("  ".join(f"{k}: {v}" for k, v in totals.items()))
    for it in items:
        when = it["delivered_at"] or it["dead_at"] or it["next_attempt_at"]
        err = f"  {it['last_error'][:80]}" if it["last_error"] and it["status"] != "delivered" else ""
        print(
            f"{it['id']:>8}  {it['event_id']}  {it['kind']:<14} {it['status']:<9} "
            f"attempts={it['attempts']:<3} {when:%Y-%m-%d %H:%M:%S%z}{err}"
        )
    return 0


def run_show(args: argparse.Namespace) -> int:
    item = _with_conn(lambda conn: get_item(conn, args.key))
    if item is None:
        print(f"carmileage outbox: no event {args.key!r}", file=sys.stderr)
        return 1
    body = item.pop("body")
    out = {k: _jsonable(v) for k, v in item.items()}
    out["body"] = json.loads(body) if body else None
    print(json.dumps(out, ensure_ascii=False, indent=2))
    return 0


def run_retry(args: argparse.Namespace) -> int:
    if not args.keys and not args.all_dead:
        print("carmileage outbox retry: give event ids or --all-dead", file=sys.stderr)
        return 2
    for k in args.keys:
        if not k.isdigit():
            try:
                uuid.UUID(k)
            except ValueError:
                print(f"carmileage outbox retry: {k!r} is neither an id nor an event id", file=sys.stderr)
                return 2
    operator = f"cli:{getpass.getuser()}"
    if args.all_dead:
        n = _with_conn(lambda conn: retry_all_dead(conn, operator, None))
    else:
        n = _with_conn(lambda conn: retry_events(conn, args.keys, operator))
    print(f"{n} event(s) due now")
    return 0 if n or args.all_dead else 1
