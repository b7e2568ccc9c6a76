"""Benchmark: telematics ingestion over MQTT and HTTP, end to end, against a naive consumer.

Starts its own scratch database (created, then dropped), its own Mosquitto from the project's
configuration (temp dir, free port) and `carmileage serve` as a child process. Enrols vehicles
with their consent, then:

- MQTT: a separate process publishes N readings as N messages of one reading each (QoS 1, as
  providers send them) and the clock stops when all N are committed (the service's exact ingest
  counts); the load generator writes pre-encoded PUBLISH packets on a raw socket with a bounded
  in-flight window so that its own CPU stays out of the figure on a 2-core machine;
- HTTP: N readings in signed 1,000-reading batches, a few requests at a time; each answer comes
  after its commit;
- naive: a paho callback doing one INSERT and commit per message, on a smaller sample;
- checks that every reading is stored exactly once (lost = duplicated = 0).

Run:  nice -n 10 .venv/bin/python bench/ingest.py [--mqtt 200000] [--http 200000] [--naive 5000]
Last line: {"mqtt_readings_per_s", "http_readings_per_s", "naive_readings_per_s", "ratio_vs_naive",
            "lost", "duplicated", ...}
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
import threading
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
from storage.db import drop_database, ensure_database, with_database  # noqa: E402
from storage.migrate import migrate  # noqa: E402
from storage.providers import create_provider  # noqa: E402
from telematics.signatures import signature  # noqa: E402

ADMIN_URL = os.environ.get("CARMILEAGE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
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


def start_broker(directory: Path, port: int) -> subprocess.Popen[bytes]:
    conf = broker.render(directory, port=port)
    proc = subprocess.Popen([broker.mosquitto_binary(), "-c", str(conf)], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not broker.answering("127.0.0.1", port):
        if time.monotonic() > deadline:
            raise SystemExit("mosquitto did not start")
        time.sleep(0.05)
    return proc


def start_service(db_url: str, mqtt_url: str, port: int, data_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CARMILEAGE_DATABASE_URL": db_url,
        "CARMILEAGE_MQTT_URL": mqtt_url,
        "CARMILEAGE_MQTT_CLIENT_ID": f"bench-worker-{uuid.uuid4().hex[:6]}",
        "CARMILEAGE_HTTP_PORT": str(port),
        "CARMILEAGE_DATA_DIR": str(data_dir),
        "CARMILEAGE_LOG_LEVEL": "WARNING",
        "CARMILEAGE_DATABASE_POOL_MAX": "12",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingest.cli", "serve"], env=env, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 30
    while not broker.answering("127.0.0.1", port):
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
    raise SystemExit("service not ready (MQTT subscription)")


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
    """The straightforward consumer: a paho callback that, per message, checks and stores the
    reading in its own transaction (one INSERT of the reading, one commit) and lets paho PUBACK
    when the callback returns. With `checks=False` it only INSERTs the reading (no idempotency on
    event ids, no checks): the floor of one-commit-per-message."""

    def __init__(self, db_url: str, port: int, password: str, count: int, provider_id: int, checks: bool) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.count, self.provider_id, self.checks = count, provider_id, checks
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.conn = self._run(asyncpg.connect(db_url))
        self.vehicles = {r["vin"]: r["id"] for r in self._run(self.conn.fetch("select vin, id from vehicles"))}
        self.done = threading.Event()
        self.seen = 0
        self.started = 0.0
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"naive-{uuid.uuid4().hex[:6]}")
        self.client.username_pw_set(broker.SERVICE_USERNAME, password)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_connect = lambda client, *a: client.subscribe(f"$share/naive/{broker.TOPIC_FILTER}", qos=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        subscribed.wait(10)

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    async def _store(self, r: dict[str, Any]) -> None:
        from storage.readings import NewReading, store_verified_reading

        metres = round(Decimal(str(r["odometer"]["value"])) * 1000)
        at = datetime.fromisoformat(r["recorded_at"])
        async with self.conn.transaction():
            if not self.checks:
                await self.conn.execute(
                    """insert into readings (vehicle_id, odometer_m, recorded_at, source, provider_id, provider_event_id)
                       values ($1, $2, $3, 'telematics', $4, $5) on conflict do nothing""",
                    self.vehicles[r["vin"]], metres, at, self.provider_id, r["event_id"],
                )
                return
            new = await self.conn.fetchval(
                "insert into provider_events (provider_id, event_id) values ($1, $2) on conflict do nothing returning 1",
                self.provider_id, r["event_id"],
            )
            if new:
                await store_verified_reading(
                    self.conn,
                    NewReading(self.vehicles[r["vin"]], metres, at, "telematics", provider_id=self.provider_id,
                               provider_event_id=r["event_id"]),
                )

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        if self.seen == 0:
            self.started = time.perf_counter()
        self._run(self._store(json.loads(msg.payload)))
        self.seen += 1
        if self.seen == self.count:
            self.elapsed = time.perf_counter() - self.started
            self.done.set()

    def finish(self) -> float:
        self.done.wait(300)
        self.client.disconnect()
        self.client.loop_stop()
        self._run(self.conn.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
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


async def main(args: argparse.Namespace) -> dict[str, Any]:
    figures: dict[str, Any] = {"workers": args.workers}
    db_url = with_database(ADMIN_URL, f"cmbench_ingest_{uuid.uuid4().hex[:8]}")
    tmp = Path(tempfile.mkdtemp(prefix="cm-bench-ingest-"))
    mqtt_port = free_port()
    broker_dir = tmp / "mosquitto"
    procs: list[subprocess.Popen[Any]] = []
    services: list[subprocess.Popen[Any]] = []
    await ensure_database(db_url)
    try:
        conn = await asyncpg.connect(db_url)
        await migrate(conn)
        password, naive_password = broker.new_password(), broker.new_password()
        pid, secret = await create_provider(
            conn, PROVIDER, display_name=None, mqtt_password_hash=broker.hash_password(password)
        )
        naive_pid, _ = await create_provider(
            conn, NAIVE_PROVIDER, display_name=None, mqtt_password_hash=broker.hash_password(naive_password)
        )
        await enrol(conn, args.vehicles, [pid, naive_pid])
        await conn.execute("analyze")  # an enrolled fleet has statistics; a fresh table has none
        broker.render(broker_dir, port=mqtt_port)
        broker.write_password_file(
            broker_dir,
            [(PROVIDER, broker.hash_password(password)), (NAIVE_PROVIDER, broker.hash_password(naive_password))],
        )
        mosquitto = start_broker(broker_dir, mqtt_port)
        procs.append(mosquitto)
        service_url = broker.service_url(broker_dir, port=mqtt_port)
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
        cpu0 = cpu_seconds(service_pids), cpu_seconds([mosquitto.pid])
        t0 = time.perf_counter()
        pub.stdin.write("go\n")
        pub.stdin.flush()
        t1 = await wait_for(conn, pid, n_mqtt, within_s=120)
        cpu1 = cpu_seconds(service_pids), cpu_seconds([mosquitto.pid])
        pg_s = await pg.stop()
        figures["mqtt_readings_per_s"] = round(n_mqtt / (t1 - t0))
        figures["mqtt_cpu_us_per_reading"] = {
            "service": round((cpu1[0] - cpu0[0]) / n_mqtt * 1e6, 1),
            "postgres": round(pg_s / n_mqtt * 1e6, 1),
            "mosquitto": round((cpu1[1] - cpu0[1]) / n_mqtt * 1e6, 1),
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
            naive = NaiveConsumer(db_url, mqtt_port, broker.service_password(broker_dir), naive_n, naive_pid, checks)
            npub = spawn_publisher(mqtt_port, NAIVE_PROVIDER, naive_password, naive_vehicles, per_vehicle, k0, base, 20)
            procs.append(npub)
            assert npub.stdin is not None
            npub.stdin.write("go\n")
            npub.stdin.flush()
            rates[checks] = naive.finish()
            npub.wait()
        figures["naive_readings_per_s"] = round(rates[True])
        figures["naive_insert_only_readings_per_s"] = round(rates[False])
        figures["ratio_vs_naive"] = round(figures["mqtt_readings_per_s"] / rates[True], 1)
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
        await drop_database(db_url)
        shutil.rmtree(tmp, ignore_errors=True)
    return figures


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--mqtt", type=int, default=200_000)
    p.add_argument("--http", type=int, default=200_000)
    p.add_argument("--naive", type=int, default=2_000)
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
