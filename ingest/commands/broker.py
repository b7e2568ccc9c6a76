"""`carmileage broker start|stop|status|sync` and `broker cluster up|down|status`: the project's
own RabbitMQ (see docs/providers.md and docs/scaling.md).

`start` runs one durable node from the broker directory (default `.var/broker/`,
CARMILEAGE_BROKER_DIR) unless it runs already: AMQP 5673, MQTT 1884, management 15673 on
127.0.0.1 by default. It declares the readings queue and the service's user, writes
`service.env` (which the settings read) and gives the broker the providers of the database.
`cluster up` does the same with three nodes on this machine, in `<broker dir>/cluster/`; point
the service at it with CARMILEAGE_BROKER_DIR=.var/broker/cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

import asyncpg

from ingest.amqp import AmqpError, queue_waiting
from ingest.broker import rabbitmq
from ingest.commands.providers import sync_broker
from ingest.settings import load_settings

DEFAULT_PORTS = {"amqp_port": 5673, "mqtt_port": 1884, "management_port": 15673, "dist_port": 25673}
CLUSTER_BASE_PORT = 25700


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("broker", help="run the project's RabbitMQ (one node, or a three-node cluster)")
    bsub = p.add_subparsers(dest="broker_command", required=True)
    s = bsub.add_parser("start", help="start the project's single node unless it runs")
    s.add_argument("--host", default="127.0.0.1", help="where AMQP, MQTT and the management API listen")
    for name, port in DEFAULT_PORTS.items():
        s.add_argument(f"--{name.replace('_', '-')}", type=int, default=port)
    s.set_defaults(func=run_start)
    t = bsub.add_parser("stop", help="stop the project's nodes (their queues stay on disk)")
    t.set_defaults(func=run_stop)
    st = bsub.add_parser("status", help="the nodes, and the readings waiting in the queue")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=run_status)
    y = bsub.add_parser("sync", help="give the broker exactly the database's active providers")
    y.set_defaults(func=run_sync)

    c = bsub.add_parser("cluster", help="a three-node cluster on this machine")
    csub = c.add_subparsers(dest="cluster_command", required=True)
    up = csub.add_parser("up", help="start three nodes that form one cluster")
    up.add_argument("--base-port", type=int, default=CLUSTER_BASE_PORT, help="node i listens on base+10i+0..3")
    up.set_defaults(func=run_cluster_up)
    down = csub.add_parser("down", help="stop the cluster's nodes")
    down.set_defaults(func=lambda a: _stop(cluster_dir()))
    cst = csub.add_parser("status")
    cst.add_argument("--json", action="store_true")
    cst.set_defaults(func=lambda a: _status(cluster_dir(), a.json))


def cluster_dir() -> Path:
    return load_settings().broker_dir / "cluster"


def bring_up(broker_dir: Path, layout: rabbitmq.Layout) -> list[rabbitmq.Node]:
    """Start the layout's nodes (those not running), declare the queue with one replica per node,
    and write `service.env`."""
    layout.save(broker_dir)
    nodes = rabbitmq.start_nodes(broker_dir, layout)
    admin = rabbitmq.Admin.for_node(nodes[0])
    rabbitmq.ensure_topology(admin, broker_dir, replicas=len(nodes))
    rabbitmq.service_env(broker_dir, layout)
    return nodes


async def _sync(broker_dir: Path) -> str:
    settings = load_settings(broker_dir=broker_dir)
    env = dict(line.split("=", 1) for line in (broker_dir / "service.env").read_text().splitlines() if "=" in line)
    settings = settings.model_copy(update={"broker_admin_url": env["CARMILEAGE_BROKER_ADMIN_URL"]})
    try:
        conn = await asyncpg.connect(settings.database_url, timeout=5)
    except (OSError, asyncpg.PostgresError) as e:
        return f"database not reachable ({type(e).__name__}): providers not synced"
    try:
        return await sync_broker(conn, settings)
    except asyncpg.UndefinedTableError:
        return "database not migrated yet: providers not synced"
    finally:
        await conn.close()


def _refuse_taken_ports(layout: rabbitmq.Layout, broker_dir: Path) -> None:
    for spec in layout.nodes:
        if rabbitmq.Node(broker_dir, spec).pid() is not None:
            continue
        for port in (spec.amqp_port, spec.mqtt_port, spec.management_port, spec.dist_port):
            if rabbitmq.answering(spec.host, port):
                raise SystemExit(
                    f"carmileage: port {port} on {spec.host} is taken by another program; choose other ports "
                    f"(see `carmileage broker start --help`) or remove {broker_dir / 'broker.json'}"
                )


def run_start(args: argparse.Namespace) -> int:
    broker_dir = load_settings().broker_dir
    layout = rabbitmq.Layout.load(broker_dir)
    if layout is None or len(layout.nodes) != 1:
        layout = rabbitmq.Layout.single(
            "carmileage@localhost",
            host=args.host,
            amqp_port=args.amqp_port,
            mqtt_port=args.mqtt_port,
            management_port=args.management_port,
            dist_port=args.dist_port,
        )
    _refuse_taken_ports(layout, broker_dir)
    bring_up(broker_dir, layout)
    note = asyncio.run(_sync(broker_dir))
    spec = layout.nodes[0]
    print(f"carmileage: broker node {spec.name} runs: MQTT {spec.mqtt_host}:{spec.mqtt_port}, AMQP {spec.host}:{spec.amqp_port}; {note}")
    print(f"carmileage: the service connects with {broker_dir / 'service.env'}")
    return 0


def run_cluster_up(args: argparse.Namespace) -> int:
    broker_dir = cluster_dir()
    layout = rabbitmq.Layout.load(broker_dir) or rabbitmq.Layout.cluster(
        "carmileage-c", 3, base_port=args.base_port
    )
    _refuse_taken_ports(layout, broker_dir)
    bring_up(broker_dir, layout)
    note = asyncio.run(_sync(broker_dir))
    print(f"carmileage: cluster of {len(layout.nodes)} nodes runs; {note}")
    for spec in layout.nodes:
        print(f"  {spec.name}: MQTT {spec.mqtt_host}:{spec.mqtt_port}  AMQP {spec.host}:{spec.amqp_port}")
    print(f"carmileage: serve against it with CARMILEAGE_BROKER_DIR={broker_dir}")
    return 0


def _stop(broker_dir: Path) -> int:
    stopped = [n.spec.name for n in rabbitmq.nodes_of(broker_dir) if n.stop()]
    print(f"carmileage: stopped {', '.join(stopped)}" if stopped else "carmileage: no node was running")
    return 0


def run_stop(args: argparse.Namespace) -> int:
    return _stop(load_settings().broker_dir)


def _status(broker_dir: Path, as_json: bool) -> int:
    nodes = rabbitmq.nodes_of(broker_dir)
    up = {n.spec.name: n.pid() is not None for n in nodes}
    state: dict[str, Any] = {"nodes": up, "queue": None}
    running = [n for n in nodes if n.pid() is not None]
    if running:
        try:
            q = rabbitmq.Admin.for_node(running[0]).queue(rabbitmq.QUEUE)
            service = rabbitmq.secret_in(broker_dir, "service.password")
            urls = ",".join(rabbitmq.Layout([n.spec for n in running]).amqp_urls(rabbitmq.SERVICE_USER, service))
            state["queue"] = {
                "name": q["name"],
                "waiting": asyncio.run(queue_waiting(urls, rabbitmq.QUEUE)),
                "replicas": q.get("members"),
                "leader": q.get("leader"),
            }
        except (OSError, AmqpError) as e:
            state["queue"] = f"unavailable: {e}"
    if as_json:
        print(json.dumps(state))
    else:
        for name, running_now in up.items():
            print(f"{name}: {'running' if running_now else 'stopped'}")
        print(f"queue: {state['queue']}")
    return 0 if running else 1


def run_status(args: argparse.Namespace) -> int:
    return _status(load_settings().broker_dir, args.json)


def run_sync(args: argparse.Namespace) -> int:
    print(f"carmileage: {asyncio.run(_sync(load_settings().broker_dir))}")
    return 0
