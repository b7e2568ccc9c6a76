"""`carmileage providers add|list|rotate|consent|webhook-key|link`: connected-car providers and
their credentials.

`add` creates the provider, its MQTT credentials (username = provider name) and its HTTP secret,
and prints them once; with `--webhook smartcar` it also stores the key an aggregator signs its
webhook deliveries with (Smartcar's Application Management Token, read from a file or stdin,
never from the command line) and prints the URL to register with the aggregator. The database keeps the secret sealed (AES-GCM under
CARMILEAGE_PROVIDER_SECRET_KEY, or a key derived from the service secret: never in the database)
and only a hash of the MQTT password; the broker's users are made to match the database through
its management API (CARMILEAGE_BROKER_ADMIN_URL), so the new provider can connect at once.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import re
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from ingest import broker
from ingest.broker import rabbitmq
from ingest.settings import Settings, load_settings
from storage.audit import write_audit
from storage.db import create_pool
from storage.providers import (
    ProviderExists,
    ProviderNotFound,
    add_secret,
    create_provider,
    grant_consent,
    link_vehicle,
    list_providers,
    mqtt_credentials,
    provider_id,
    revoke_older_secrets,
    set_mqtt_password,
    set_webhook_key,
    withdraw_consents,
)
from storage.vehicles import active_vehicles_by_vin
from telematics import units
from telematics.reading import ItemError

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{1,62}$")
#: Webhook schemes of aggregators: how their deliveries are signed and shaped.
WEBHOOK_SCHEMES = ("smartcar",)
T = TypeVar("T")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("providers", help="add, list and rotate connected-car providers; record consents")
    psub = p.add_subparsers(dest="providers_command", required=True)

    a = psub.add_parser("add", help="create a provider with MQTT credentials and an HTTP secret (printed once)")
    a.add_argument("name", help="lower-case letters, digits, - and _; also the MQTT username")
    a.add_argument("--display-name")
    a.add_argument(
        "--webhook", choices=WEBHOOK_SCHEMES, help="also receive this aggregator's webhook deliveries as it sends them"
    )
    a.add_argument(
        "--webhook-key-file",
        metavar="FILE",
        help="the key the aggregator signs with (Smartcar: the Application Management Token); - reads stdin",
    )
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=run_add)

    ls = psub.add_parser("list", help="list providers (never their secrets)")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=run_list)

    r = psub.add_parser("rotate", help="rotate a provider's HTTP secret or MQTT password")
    r.add_argument("name")
    what = r.add_mutually_exclusive_group(required=True)
    what.add_argument("--http", action="store_true", help="add a new HTTP secret; the previous one stays valid")
    what.add_argument(
        "--finish", action="store_true", help="end an HTTP rotation: only the newest secret stays valid"
    )
    what.add_argument("--mqtt", action="store_true", help="a new MQTT password; the old one stops working")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=run_rotate)

    c = psub.add_parser("consent", help="record (or withdraw) members' consent for a provider, by VIN")
    c.add_argument("name")
    c.add_argument("vins", nargs="+")
    c.add_argument("--withdraw", action="store_true", help="withdraw: also deletes the provider's unverified data")
    c.set_defaults(func=run_consent)

    w = psub.add_parser("webhook-key", help="set (or replace) the key an aggregator signs its webhook deliveries with")
    w.add_argument("name")
    w.add_argument("--scheme", choices=WEBHOOK_SCHEMES, required=True)
    w.add_argument("--key-file", metavar="FILE", required=True, help="a file holding the key; - reads stdin")
    w.set_defaults(func=run_webhook_key)

    lk = psub.add_parser("link", help="name the car an aggregator calls by its own vehicle id by its VIN")
    lk.add_argument("name")
    lk.add_argument("vehicle_id", help="the aggregator's vehicle id (Smartcar: data.vehicle.id)")
    lk.add_argument("vin")
    lk.set_defaults(func=run_link)

    s = psub.add_parser("sync-broker", help="give the broker exactly the active providers' users (from the database)")
    s.set_defaults(func=run_sync)


def _run(fn: Callable[[asyncpg.Connection, Settings], Awaitable[T]]) -> T:
    settings = load_settings()

    async def go() -> T:
        pool = await create_pool(settings.database_url, min_size=1, max_size=1)
        try:
            async with pool.acquire() as conn:
                return await fn(conn, settings)  # type: ignore[arg-type]
        finally:
            await pool.close()

    return asyncio.run(go())


async def sync_broker(conn: asyncpg.Connection, settings: Settings) -> str:
    """Give the broker exactly the active providers' users and permissions (through its
    management API); a sentence saying what happened."""
    if not settings.broker_admin_url:
        return "no broker management API configured (CARMILEAGE_BROKER_ADMIN_URL): give these credentials to your broker"
    admin = rabbitmq.Admin.from_url(settings.broker_admin_url)
    credentials = await mqtt_credentials(conn)
    try:
        present, unusable = await asyncio.to_thread(rabbitmq.sync_providers, admin, credentials)
    except OSError as e:
        return f"the broker's management API did not answer ({e}); run `carmileage providers sync-broker` later"
    note = f"broker has the users of {present} active providers"
    if unusable:
        note += f"; rotate the MQTT password of {', '.join(unusable)} (stored for another broker)"
    return note


def _broker_address(settings: Settings) -> str:
    return settings.broker_mqtt_url


def run_add(args: argparse.Namespace) -> int:
    if not NAME.match(args.name):
        raise SystemExit("carmileage: a provider name is 2-63 of a-z, 0-9, - and _, starting with a letter or digit")
    if bool(args.webhook) != bool(args.webhook_key_file):
        raise SystemExit("carmileage: --webhook and --webhook-key-file go together")
    webhook_key = _read_key(args.webhook_key_file) if args.webhook_key_file else None
    password = broker.new_password()

    async def go(conn: asyncpg.Connection, settings: Settings) -> dict[str, Any]:
        try:
            pid, secret = await create_provider(
                conn,
                args.name,
                display_name=args.display_name,
                mqtt_password_hash=broker.hash_password(password),
                box=settings.provider_box(),
            )
        except ProviderExists:
            raise SystemExit(f"carmileage: a provider named {args.name!r} exists") from None
        webhook = None
        if args.webhook and webhook_key:
            await set_webhook_key(conn, pid, args.webhook, webhook_key, box=settings.provider_box())
            webhook = {"scheme": args.webhook, "url": webhook_url(settings, args.name, args.webhook)}
        note = await sync_broker(conn, settings)
        return {
            "id": pid,
            "name": args.name,
            "mqtt": {
                "broker": _broker_address(settings),
                "username": args.name,
                "password": password,
                "topic": broker.topic_for(args.name),
                "qos": 1,
            },
            "http": {
                "url": f"/v1/providers/{args.name}/readings",
                "secret": secret,
                "signature": "X-Carmileage-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + '.' + body)>",
            },
            "webhook": webhook,
            "broker": note,
        }

    out = _run(go)
    if args.json:
        print(json.dumps(out))
    else:
        print(f"provider {out['name']} (id {out['id']}) created; these secrets are shown only now.")
        print(f"  MQTT   {out['mqtt']['broker']}  user {out['name']}  password {out['mqtt']['password']}")
        print(f"         publish QoS 1 to {out['mqtt']['topic']}")
        print(f"  HTTP   POST {out['http']['url']}  HMAC secret {out['http']['secret']}")
        if out["webhook"]:
            print(f"  webhook ({out['webhook']['scheme']})  register {out['webhook']['url']}")
        print(f"  broker {out['broker']}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    async def go(conn: asyncpg.Connection, settings: Settings) -> list[dict[str, Any]]:
        return [
            {
                "name": r["name"],
                "display_name": r["display_name"],
                "active": r["active"],
                "active_secrets": r["active_secrets"],
                "consenting_vehicles": r["consenting_vehicles"],
                "created_at": r["created_at"].isoformat(),
            }
            for r in await list_providers(conn)
        ]

    rows = _run(go)
    if args.json:
        print(json.dumps(rows))
    else:
        for r in rows:
            state = "active" if r["active"] else "inactive"
            print(
                f"{r['name']:<24} {state:<9} secrets {r['active_secrets']}  "
                f"consenting cars {r['consenting_vehicles']}  {r['display_name'] or ''}"
            )
    return 0


def run_rotate(args: argparse.Namespace) -> int:
    async def go(conn: asyncpg.Connection, settings: Settings) -> dict[str, Any]:
        try:
            pid = await provider_id(conn, args.name)
        except ProviderNotFound:
            raise SystemExit(f"carmileage: no provider named {args.name!r}") from None
        if args.http:
            return {
                "http_secret": await add_secret(conn, pid, box=settings.provider_box()),
                "note": "the previous secret stays valid until --finish",
            }
        if args.finish:
            return {"revoked_secrets": await revoke_older_secrets(conn, pid)}
        password = broker.new_password()
        await set_mqtt_password(conn, pid, args.name, broker.hash_password(password))
        return {"mqtt_password": password, "broker": await sync_broker(conn, settings)}

    out = _run(go)
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k}: {v}")
    return 0


def run_consent(args: argparse.Namespace) -> int:
    async def go(conn: asyncpg.Connection, settings: Settings) -> str:
        try:
            pid = await provider_id(conn, args.name)
        except ProviderNotFound:
            raise SystemExit(f"carmileage: no provider named {args.name!r}") from None
        vins = [v.strip().upper() for v in args.vins]
        actor = f"cli:{getpass.getuser()}"
        async with conn.transaction():
            if args.withdraw:
                w = await withdraw_consents(conn, pid, vins)
                for vehicle_id in w.withdrawn_vehicle_ids:
                    await _audit(conn, actor, "consent.withdraw", vehicle_id, args.name)
                return (
                    f"withdrawn for {len(w.withdrawn_vehicle_ids)} cars; {w.deleted_quarantined} unverified "
                    f"readings deleted; unknown VINs: {', '.join(w.unknown_vins) or 'none'}"
                )
            rows = await active_vehicles_by_vin(conn, vins)
            for r in rows:
                await grant_consent(conn, pid, r["id"])
                await _audit(conn, actor, "consent.grant", r["id"], args.name)
        unknown = sorted(set(vins) - {r["vin"] for r in rows})
        return f"consent recorded for {len(rows)} cars; unknown VINs: {', '.join(unknown) or 'none'}"

    print(_run(go))
    return 0


async def _audit(conn: asyncpg.Connection, actor: str, action: str, vehicle_id: int, provider: str) -> None:
    await write_audit(
        conn,
        actor_role="operator",
        actor_id=actor,
        action=action,
        entity="vehicle",
        entity_id=str(vehicle_id),
        before=None,
        after={"provider": provider},
        request_id=None,
    )


def run_sync(args: argparse.Namespace) -> int:
    async def go(conn: asyncpg.Connection, settings: Settings) -> str:
        return await sync_broker(conn, settings)

    print(_run(go))
    return 0


def webhook_url(settings: Settings, name: str, scheme: str) -> str:
    """The callback URL to register with the aggregator (its dashboard)."""
    base = (settings.public_url or f"http://{settings.http_host}:{settings.http_port}").rstrip("/")
    return f"{base}/v1/providers/{name}/webhooks/{scheme}"


def _read_key(path: str) -> str:
    """A key from a file (or stdin for -): one line, surrounding white space ignored."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as e:
        raise SystemExit(f"carmileage: cannot read the key: {e}") from None
    key = text.strip()
    if not key or len(key) > 1000 or any(c.isspace() for c in key):
        raise SystemExit("carmileage: the key must be one line of at most 1000 characters without spaces")
    return key


def run_webhook_key(args: argparse.Namespace) -> int:
    key = _read_key(args.key_file)

    async def go(conn: asyncpg.Connection, settings: Settings) -> str:
        try:
            pid = await provider_id(conn, args.name)
        except ProviderNotFound:
            raise SystemExit(f"carmileage: no provider named {args.name!r}") from None
        async with conn.transaction():
            await set_webhook_key(conn, pid, args.scheme, key, box=settings.provider_box())
            await write_audit(
                conn,
                actor_role="operator",
                actor_id=f"cli:{getpass.getuser()}",
                action="provider.webhook_key",
                entity="provider",
                entity_id=str(pid),
                before=None,
                after={"scheme": args.scheme},
                request_id=None,
            )
        return f"{args.scheme} webhook key stored for {args.name}; register {webhook_url(settings, args.name, args.scheme)}"

    print(_run(go))
    return 0


def run_link(args: argparse.Namespace) -> int:
    try:
        vin = units.vin(args.vin, "vin")
        vehicle_id = units.event_id(args.vehicle_id, "vehicle_id")
    except ItemError as e:
        raise SystemExit(f"carmileage: {e}") from None

    async def go(conn: asyncpg.Connection, settings: Settings) -> str:
        try:
            pid = await provider_id(conn, args.name)
        except ProviderNotFound:
            raise SystemExit(f"carmileage: no provider named {args.name!r}") from None
        async with conn.transaction():
            await link_vehicle(conn, pid, vehicle_id, vin)
            await write_audit(
                conn,
                actor_role="operator",
                actor_id=f"cli:{getpass.getuser()}",
                action="provider.link_vehicle",
                entity="provider",
                entity_id=str(pid),
                before=None,
                after={"vehicle_id": vehicle_id, "vin": vin},
                request_id=None,
            )
        return f"{args.name} vehicle {vehicle_id} is {vin}"

    print(_run(go))
    return 0
