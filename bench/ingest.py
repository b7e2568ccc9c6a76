"""Benchmark: telematics ingestion over MQTT and HTTP, end to end, against a naive consumer.

Starts its own scratch database (created, then dropped), its own RabbitMQ (one node, or with
`--nodes 3` a cluster on this machine) with the project's topology (a quorum queue, per-provider
users) and `carmileage serve` as child processes. Enrols vehicles with their consent, then:

- MQTT: a separate process publishes N readings as N messages of one reading each (QoS 1, as
  providers send them; the broker PUBACKs once the quorum queue has each durably) and the clock
  stops when all N are committed (the service's exact ingest counts); the load generator writes
  pre-encoded PUBLISH packets on a raw socket with a bounded in-flight window so that its own CPU
  stays out of the figure on a 2-core machine;
- HTTP: N readings in signed 1,000-reading batches, a few requests at a time; each answer comes
  after its commit;
- naive: one delivery at a time from the same queue, checked and committed on its own, then
  acknowledged, on a smaller sample;
- floor: bench/ingest_floor.py's PostgreSQL-only COPY of readings and event keys, same run;
- checks that every reading is stored exactly once (lost = duplicated = 0).

Run:  nice -n 10 .venv/bin/python bench/ingest.py [--mqtt 150000] [--http 200000]  (under a minute)
      nice -n 10 .venv/bin/python bench/ingest.py --nodes 3 --mqtt 30000 --http 50000  (the cluster)
Last line: {"mqtt_readings_per_s", "http_readings_per_s", "naive_readings_per_s", "ratio_vs_naive",
            "floor_readings_per_s", "ratio_vs_floor", "lost", "duplicated", ...}
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ingest import broker  # noqa: E402
from ingest.broker import rabbitmq  # noqa: E402
from storage.db import drop_database, ensure_database, with_database  # noqa: E402
from storage.migrate import migrate  # noqa: E402
from storage.providers import create_provider  # noqa: E402
from storage.secret_box import box_for, decode_key, new_key_text  # noqa: E402
from telematics.signatures import signature  # noqa: E402

ADMIN_URL = os.environ.get("CARMILEAGE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
#: Seals the providers' HMAC secrets here and opens them in the services (which get it in their env).
PROVIDER_SECRET_KEY = new_key_text()
PROVIDER = "benchmotors"
NAIVE_PROVIDER = "naivemotors"
STEP = timedelta(minutes=10)
STEP_M = 5_000  # 30 km/h between readings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far (Linux /proc)."""
    return sum(cpu_of(pids).values())


def cpu_of(pids: list[int]) -> dict[int, float]:
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            out[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            continue
    return out


class PostgresCpu:
    """CPU used by the benchmark database's backends between start() and stop(), including
    backends the service's pools open on the way."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.before: dict[int, float] = {}

    async def start(self) -> None:
        self.before = cpu_of(await backend_pids(self.conn))

    async def stop(self) -> float:
        after = cpu_of(await backend_pids(self.conn))
        return sum(v - self.before.get(pid, 0.0) for pid, v in after.items())


async def backend_pids(conn: asyncpg.Connection) -> list[int]:
    """The PostgreSQL backends serving the benchmark database (the service's pool)."""
    return [
        r["pid"]
        for r in await conn.fetch(
            "select pid from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()"
        )
    ]


def vin_of(i: int) -> str:
    return f"KMHBE{i:012d}"


def reading(event: str, vehicle: int, k: int, base: datetime) -> dict[str, Any]:
    """The k-th reading of a vehicle: every 10 minutes, 5 km further."""
    at = base + k * STEP
    return {
        "event_id": event,
        "vin": vin_of(vehicle),
        "odometer": {"value": 20_000 + k * STEP_M / 1000, "unit": "km"},
        "recorded_at": at.isoformat(),
    }


# -- the load generator (a separate process) ---------------------------------------------------


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(s: str) -> bytes:
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def publisher(args: argparse.Namespace) -> None:
    """Publish `--count` one-reading messages at QoS 1 with at most `--window` unacknowledged."""
    base = datetime.fromisoformat(args.base)
    topic = _utf8(broker.topic_for(args.provider))
    packets = []
    i = 0
    for k in range(args.k0, args.k0 + args.per_vehicle):
        for v in range(args.vehicles):
            payload = json.dumps(reading(f"m-{v}-{k}", v, k, base), separators=(",", ":")).encode()
            pid = i % 65535 + 1
            body = topic + struct.pack("!H", pid) + payload
            packets.append(b"\x32" + _remaining_length(len(body)) + body)
            i += 1
    variable = _utf8("MQTT") + bytes([4, 0xC2]) + struct.pack("!H", 60)
    payload = _utf8(f"bench-{uuid.uuid4().hex[:8]}") + _utf8(args.provider) + _utf8(args.password)
    connect = variable + payload
    # A few tries: once in a while the broker refused the very first connection of a run.
    for attempt in range(20):
        try:
            sock = socket.create_connection(("127.0.0.1", args.port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(b"\x10" + _remaining_length(len(connect)) + connect)
            connack = b""
            while len(connack) < 4:
                chunk = sock.recv(4 - len(connack))
                if not chunk:
                    break
                connack += chunk
        except OSError as e:
            connack = repr(e).encode()
        if len(connack) == 4 and connack[3] == 0:
            break
        print(f"publisher: connection {attempt + 1} refused: {connack!r}", file=sys.stderr, flush=True)
        with contextlib.suppress(OSError, UnboundLocalError):
            sock.close()
        time.sleep(0.25)
    else:
        raise SystemExit("publisher: the broker refused every connection")
    print("ready", flush=True)
    sys.stdin.readline()  # go
    acked = 0
    sent = 0
    pending = b""
    total = len(packets)
    started = time.perf_counter()
    while acked < total:
        if sent < total and sent - acked < args.window:
            end = min(total, sent + min(500, args.window - (sent - acked)))
            sock.sendall(b"".join(packets[sent:end]))
            sent = end
            sock.setblocking(False)
            try:
                data = sock.recv(1 << 16)
            except BlockingIOError:
                data = b""
            sock.setblocking(True)
        else:
            data = sock.recv(1 << 16)
            if not data:
                raise SystemExit("publisher: broker closed the connection")
        if data:
            pending += data
            n = len(pending) // 4  # every packet from the broker is a 4-byte PUBACK here
            acked += n
            pending = pending[n * 4 :]
    print(json.dumps({"published": total, "seconds": time.perf_counter() - started}), flush=True)
    sock.sendall(b"\xe0\x00")
    sock.close()


# -- the benchmark ------------------------------------------------------------------------------


async def enrol(conn: asyncpg.Connection, vehicles: int, provider_ids: list[int]) -> None:
    await conn.execute(
        """insert into owners (id, district) select 'bench-' || g, '강남구' from generate_series(0, $1 - 1) g;
           insert into vehicles (owner_id, plate, plate_key, vin, district, registration_region, use,
                                 vehicle_type, seats, fuel, first_registration_date)
           select 'bench-' || g, 'b' || g, 'b' || g, 'KMHBE' || lpad(g::text, 12, '0'), '강남구', '서울',
                  'non_commercial', 'passenger', 5, 'gasoline', date '2018-01-01'
           from generate_series(0, $1 - 1) g;""".replace("$1", str(int(vehicles)))
    )
    for pid in provider_ids:
        await conn.execute(
            "insert into vehicle_consents (provider_id, vehicle_id) select $1, id from vehicles", pid
        )


async def committed(conn: asyncpg.Connection, provider_id: int) -> int:
    n: int = await conn.fetchval(
        "select coalesce(sum(accepted + duplicates + quarantined), 0) from ingest_counts where provider_id = $1",
        provider_id,
    )
    return n


async def wait_for(conn: asyncpg.Connection, provider_id: int, target: int, within_s: float) -> float:
    deadline = time.perf_counter() + within_s
    while time.perf_counter() < deadline:
        if await committed(conn, provider_id) >= target:
            return time.perf_counter()
        await asyncio.sleep(0.02)
    raise SystemExit(f"timed out: {await committed(conn, provider_id)} of {target} committed")


def start_broker(directory: Path, size: int) -> tuple[rabbitmq.Layout, list[rabbitmq.Node]]:
    """The project's RabbitMQ in a temp directory: one node, or a cluster of `size` on this machine."""
    tag = uuid.uuid4().hex[:6]
    if size == 1:
        ports = [free_port() for _ in range(4)]
        layout = rabbitmq.Layout.single(f"cmbench-{tag}@localhost", amqp_port=ports[0], mqtt_port=ports[1],
                                        management_port=ports[2], dist_port=ports[3])
    else:
        layout = rabbitmq.Layout.cluster(f"cmbench-{tag}", size)
    layout.save(directory)
    nodes = rabbitmq.start_nodes(directory, layout)
    rabbitmq.ensure_topology(rabbitmq.Admin.for_node(nodes[0]), directory, replicas=size)
    return layout, nodes


def start_service(db_url: str, broker_url: str, port: int, data_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CARMILEAGE_DATABASE_URL": db_url,
        "CARMILEAGE_MIGRATION_DATABASE_URL": "",
        "CARMILEAGE_PROVIDER_SECRET_KEY": PROVIDER_SECRET_KEY,
        "CARMILEAGE_BROKER_URL": broker_url,
        "CARMILEAGE_HTTP_PORT": str(port),
        "CARMILEAGE_DATA_DIR": str(data_dir),
        "CARMILEAGE_LOG_LEVEL": "WARNING",
        "CARMILEAGE_DATABASE_POOL_MAX": "12",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingest.cli", "serve"], env=env, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 30
    while not rabbitmq.answering("127.0.0.1", port):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"service did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.05)
    return proc


async def wait_ready(url: str) -> None:
    async with aiohttp.ClientSession() as s:
        for _ in range(200):
            try:
                async with s.get(url + "/readyz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise SystemExit("service not ready (consuming the broker's queue)")


async def http_phase(
    urls: list[str], secret: str, vehicles: int, total: int, k0: int, base: datetime, concurrency: int
) -> float:
    per_vehicle = total // vehicles
    readings = [
        reading(f"h-{v}-{k}", v, k, base) for k in range(k0, k0 + per_vehicle) for v in range(vehicles)
    ]
    bodies = [
        json.dumps({"readings": readings[i : i + 1000]}, separators=(",", ":")).encode()
        for i in range(0, len(readings), 1000)
    ]
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)

    async def worker(session: aiohttp.ClientSession, url: str) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            ts = str(int(time.time()))
            headers = {
                "Content-Type": "application/json",
                "X-Carmileage-Timestamp": ts,
                "X-Carmileage-Signature": signature(secret, ts, body),
            }
            async with session.post(f"{url}/v1/providers/{PROVIDER}/readings", data=body, headers=headers) as r:
                answer = await r.json()
                if r.status != 200 or answer["accepted"] != 1000:
                    raise SystemExit(f"HTTP batch refused: {r.status} {str(answer)[:300]}")

    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session, urls[i % len(urls)]) for i in range(concurrency * len(urls))))
    return time.perf_counter() - started


class NaiveConsumer:
    """The straightforward consumer: one delivery at a time (prefetch 1) from the same queue, checked
    and stored in its own transaction (one INSERT of the reading, one commit), acknowledged after
    its commit. With `checks=False` it only INSERTs the reading (no idempotency on event ids, no
    checks): the floor of one-commit-per-message."""

    def __init__(self, db_url: str, broker_url: str, count: int, provider_id: int, checks: bool) -> None:
        self.db_url, self.broker_url = db_url, broker_url
        self.count, self.provider_id, self.checks = count, provider_id, checks
        self.elapsed = 0.0

    async def _store(self, conn: asyncpg.Connection, r: dict[str, Any]) -> None:
        from storage.readings import NewReading, store_verified_reading

        metres = round(Decimal(str(r["odometer"]["value"])) * 1000)
        at = datetime.fromisoformat(r["recorded_at"])
        async with conn.transaction():
            if not self.checks:
                await conn.execute(
                    """insert into readings (vehicle_id, odometer_m, recorded_at, source, provider_id, provider_event_id)
                       values ($1, $2, $3, 'telematics', $4, $5) on conflict do nothing""",
                    self.vehicles[r["vin"]], metres, at, self.provider_id, r["event_id"],
                )
                return
            new = await conn.fetchval(
                "insert into provider_events (provider_id, event_id) values ($1, $2) on conflict do nothing returning 1",
                self.provider_id, r["event_id"],
            )
            if new:
                await store_verified_reading(
                    conn,
                    NewReading(self.vehicles[r["vin"]], metres, at, "telematics", provider_id=self.provider_id,
                               provider_event_id=r["event_id"]),
                )

    async def run(self, started: asyncio.Event) -> float:
        from ingest.amqp import ConsumerConnection

        db = await asyncpg.connect(self.db_url)
        self.vehicles = {r["vin"]: r["id"] for r in await db.fetch("select vin, id from vehicles")}
        inbox: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
        amqp = await ConsumerConnection.open(self.broker_url, lambda tag, key, body, again: inbox.put_nowait((tag, body)))
        await amqp.consume(rabbitmq.QUEUE, 1, "naive")
        started.set()
        t0 = 0.0
        for i in range(self.count):
            tag, body = await inbox.get()
            if i == 0:
                t0 = time.perf_counter()
            await self._store(db, json.loads(body))
            amqp.ack(tag, multiple=False)
        self.elapsed = time.perf_counter() - t0
        await amqp.close()
        await db.close()
        return self.count / self.elapsed


def spawn_publisher(port: int, provider: str, password: str, vehicles: int, per_vehicle: int, k0: int, base: datetime, window: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [
            sys.executable, __file__, "--publisher", "--port", str(port), "--provider", provider,
            # One argument: a generated password may begin with "-".
            f"--password={password}", "--vehicles", str(vehicles), "--per-vehicle", str(per_vehicle),
            "--k0", str(k0), "--base", base.isoformat(), "--window", str(window),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise SystemExit("publisher did not connect")
    return proc


def _ingest_floor() -> Any:
    """bench/ingest_floor.py (a script, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_ingest_floor", ROOT / "bench" / "ingest_floor.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


async def main(args: argparse.Namespace) -> dict[str, Any]:
    figures: dict[str, Any] = {"workers": args.workers}
    db_url = with_database(ADMIN_URL, f"cmbench_ingest_{uuid.uuid4().hex[:8]}")
    tmp = Path(tempfile.mkdtemp(prefix="cm-bench-ingest-"))
    broker_dir = tmp / "broker"
    nodes: list[rabbitmq.Node] = []
    procs: list[subprocess.Popen[Any]] = []
    services: list[subprocess.Popen[Any]] = []
    await ensure_database(db_url)
    try:
        conn = await asyncpg.connect(db_url)
        await migrate(conn)
        password, naive_password = broker.new_password(), broker.new_password()
        box = box_for(decode_key(PROVIDER_SECRET_KEY))
        pid, secret = await create_provider(
            conn, PROVIDER, display_name=None, mqtt_password_hash=broker.hash_password(password), box=box
        )
        naive_pid, _ = await create_provider(
            conn, NAIVE_PROVIDER, display_name=None, mqtt_password_hash=broker.hash_password(naive_password), box=box
        )
        await enrol(conn, args.vehicles, [pid, naive_pid])
        await conn.execute("analyze")  # an enrolled fleet has statistics; a fresh table has none
        layout, nodes = start_broker(broker_dir, args.nodes)
        admin = rabbitmq.Admin.for_node(nodes[0])
        rabbitmq.put_provider(admin, PROVIDER, broker.hash_password(password))
        rabbitmq.put_provider(admin, NAIVE_PROVIDER, broker.hash_password(naive_password))
        mqtt_port = layout.nodes[0].mqtt_port
        service_url = ",".join(layout.amqp_urls(rabbitmq.SERVICE_USER, rabbitmq.secret_in(broker_dir, "service.password")))
        broker_pids = [n.pid() or 0 for n in nodes]
        figures["broker"] = f"RabbitMQ {len(nodes)} node(s), quorum queue"
        urls = []
        for i in range(args.workers):
            port = free_port()
            services.append(start_service(db_url, service_url, port, tmp / f"data-{i}", tmp / f"service-{i}.log"))
            urls.append(f"http://127.0.0.1:{port}")
        for url in urls:
            await wait_ready(url)
        base = datetime.now(UTC).replace(microsecond=0) - timedelta(days=5)
        mqtt_per_vehicle = args.mqtt // args.vehicles
        n_mqtt = mqtt_per_vehicle * args.vehicles
        service_pids = [p.pid for p in services]

        # MQTT: one reading per message, as providers send them.
        pub = spawn_publisher(mqtt_port, PROVIDER, password, args.vehicles, mqtt_per_vehicle, 0, base, args.window)
        procs.append(pub)
        assert pub.stdin is not None and pub.stdout is not None
        pg = PostgresCpu(conn)
        await pg.start()
        cpu0 = cpu_seconds(service_pids), cpu_seconds(broker_pids)
        t0 = time.perf_counter()
        pub.stdin.write("go\n")
        pub.stdin.flush()
        t1 = await wait_for(conn, pid, n_mqtt, within_s=120)
        cpu1 = cpu_seconds(service_pids), cpu_seconds(broker_pids)
        pg_s = await pg.stop()
        figures["mqtt_readings_per_s"] = round(n_mqtt / (t1 - t0))
        figures["mqtt_cpu_us_per_reading"] = {
            "service": round((cpu1[0] - cpu0[0]) / n_mqtt * 1e6, 1),
            "postgres": round(pg_s / n_mqtt * 1e6, 1),
            "rabbitmq": round((cpu1[1] - cpu0[1]) / n_mqtt * 1e6, 1),
        }
        figures["mqtt_publish_seconds"] = round(json.loads(pub.stdout.readline())["seconds"], 2)
        pub.wait()

        # HTTP: signed 1,000-reading batches, spread over the workers.
        http_per_vehicle = args.http // args.vehicles
        n_http = http_per_vehicle * args.vehicles
        await pg.start()
        before = cpu_seconds(service_pids)
        seconds = await http_phase(urls, secret, args.vehicles, n_http, mqtt_per_vehicle, base, args.concurrency)
        after = cpu_seconds(service_pids)
        pg_s = await pg.stop()
        figures["http_readings_per_s"] = round(n_http / seconds)
        figures["http_cpu_us_per_reading"] = {
            "service": round((after - before) / n_http * 1e6, 1),
            "postgres": round(pg_s / n_http * 1e6, 1),
        }

        # Exactly once: every event id once, nothing else from this provider.
        row = await conn.fetchrow(
            "select count(*) as n, count(distinct provider_event_id) as events from readings where provider_id = $1",
            pid,
        )
        assert row is not None
        figures["quarantined"] = await conn.fetchval(
            "select count(*) from quarantined_readings where provider_id = $1", pid
        )

        # The naive consumers, on a sample, with the service stopped so that it takes none of it.
        for s in services:
            s.terminate()
        for s in services:
            s.wait(30)
        naive_vehicles = min(args.vehicles, args.naive)
        per_vehicle = max(1, args.naive // naive_vehicles)
        naive_n = per_vehicle * naive_vehicles
        rates = {}
        for k0, checks in ((10_000, True), (20_000, False)):
            naive = NaiveConsumer(db_url, service_url.split(",")[0], naive_n, naive_pid, checks)
            consuming = asyncio.Event()
            task = asyncio.create_task(naive.run(consuming))
            await consuming.wait()
            npub = spawn_publisher(mqtt_port, NAIVE_PROVIDER, naive_password, naive_vehicles, per_vehicle, k0, base, 20)
            procs.append(npub)
            assert npub.stdin is not None
            npub.stdin.write("go\n")
            npub.stdin.flush()
            rates[checks] = await task
            npub.wait()
        figures["naive_readings_per_s"] = round(rates[True])
        figures["naive_insert_only_readings_per_s"] = round(rates[False])
        figures["ratio_vs_naive"] = round(figures["mqtt_readings_per_s"] / rates[True], 1)
        # PostgreSQL alone storing readings and their event keys by COPY (bench/ingest_floor.py),
        # in the same run: what the service's path costs beyond the database's own floor.
        floor = await _ingest_floor().main(argparse.Namespace(readings=args.floor, vehicles=2_000, connections=2, naive=200))
        figures["floor_readings_per_s"] = floor["copy_readings_per_s"]
        figures["ratio_vs_floor"] = {
            "mqtt": round(figures["mqtt_readings_per_s"] / floor["copy_readings_per_s"], 2),
            "http": round(figures["http_readings_per_s"] / floor["copy_readings_per_s"], 2),
        }
        figures["mqtt_readings"], figures["http_readings"], figures["naive_readings"] = n_mqtt, n_http, naive_n
        figures["vehicles"] = args.vehicles
        figures["lost"] = n_mqtt + n_http - row["events"]
        figures["duplicated"] = row["n"] - row["events"]
        await conn.close()
    finally:
        for p in [*procs, *services][::-1]:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        for node in nodes:
            node.kill()
        await drop_database(db_url)
        shutil.rmtree(tmp, ignore_errors=True)
    return figures


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--mqtt", type=int, default=150_000)
    p.add_argument("--nodes", type=int, default=1, help="RabbitMQ nodes (3: a cluster on this machine)")
    p.add_argument("--floor", type=int, default=100_000, help="readings for bench/ingest_floor.py in the same run")
    p.add_argument("--http", type=int, default=200_000)
    p.add_argument("--naive", type=int, default=500)
    p.add_argument("--vehicles", type=int, default=10_000)
    p.add_argument("--window", type=int, default=5000, help="MQTT messages in flight from the load generator")
    p.add_argument("--concurrency", type=int, default=3, help="HTTP requests at a time per worker")
    p.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="service processes (one per core, as deployed)"
    )
    # the load-generator process
    p.add_argument("--publisher", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--provider", help=argparse.SUPPRESS)
    p.add_argument("--password", help=argparse.SUPPRESS)
    p.add_argument("--per-vehicle", type=int, help=argparse.SUPPRESS)
    p.add_argument("--k0", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--base", help=argparse.SUPPRESS)
    return p.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.publisher:
        publisher(arguments)
    else:
        started = time.perf_counter()
        result = asyncio.run(main(arguments))
        result["total_seconds"] = round(time.perf_counter() - started, 1)
        print(json.dumps(result))
