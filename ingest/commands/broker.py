"""`carmileage broker start|stop|sync`: the project's own Mosquitto instance (see docs/providers.md).

`start` renders the configuration into the broker directory (default `.var/broker/`,
CARMILEAGE_MQTT_BROKER_DIR), creates the service's credentials once, writes the password file
from the database when it is reachable, and starts Mosquitto unless something already answers on
the port. `scripts/start-mosquitto.sh` calls it.
"""

from __future__ import annotations

import argparse
import asyncio

import asyncpg

from ingest import broker
from ingest.commands.providers import sync_broker
from ingest.settings import load_settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("broker", help="start, stop or sync the project's Mosquitto instance")
    bsub = p.add_subparsers(dest="broker_command", required=True)
    s = bsub.add_parser("start", help="start the broker unless it is running")
    s.add_argument("--host", default=broker.DEFAULT_HOST)
    s.add_argument("--port", type=int, default=broker.DEFAULT_PORT)
    s.set_defaults(func=run_start)
    t = bsub.add_parser("stop", help="stop the broker (its sessions and queues are saved)")
    t.set_defaults(func=run_stop)
    y = bsub.add_parser("sync", help="rewrite the password file from the database and reload")
    y.set_defaults(func=run_sync)


async def _sync() -> str:
    settings = load_settings()
    try:
        conn = await asyncpg.connect(settings.database_url, timeout=5)
    except (OSError, asyncpg.PostgresError) as e:
        return f"database not reachable ({type(e).__name__}): providers' passwords not synced"
    try:
        return await sync_broker(conn, settings.mqtt_broker_dir)
    except asyncpg.UndefinedTableError:
        return "database not migrated yet: providers' passwords not synced"
    finally:
        await conn.close()


def run_start(args: argparse.Namespace) -> int:
    settings = load_settings()
    directory = settings.mqtt_broker_dir
    broker.render(directory, host=args.host, port=args.port)
    note = asyncio.run(_sync())
    started = broker.start(directory, host=args.host, port=args.port)
    state = "started" if started else "already answering"
    print(f"carmileage: broker {state} on {args.host}:{args.port} ({directory}); {note}")
    print(f"carmileage: the service connects with {directory / 'service.env'}")
    return 0


def run_stop(args: argparse.Namespace) -> int:
    stopped = broker.stop(load_settings().mqtt_broker_dir)
    print("carmileage: broker stopped" if stopped else "carmileage: broker was not running")
    return 0


def run_sync(args: argparse.Namespace) -> int:
    print(f"carmileage: {asyncio.run(_sync())}")
    return 0
