"""Faults against real RabbitMQ and PostgreSQL, each ending with every reading stored exactly once
and the service healthy without a manual step: the broker node killed (SIGKILL) while acknowledged
readings wait for a stopped worker, the service killed mid-stream, PostgreSQL stopped for 5 s
mid-stream, and two services sharing the load. The cluster's faults are in test_broker_cluster.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import paho.mqtt.client as mqtt
import pytest

from storage.db import create_pool, with_database
from storage.migrate import migrate
from tests.conftest import LiveService, free_port
from tests.telematics.conftest import (
    Car,
    ProjectBroker,
    Provider,
    enrol_cars,
    make_provider,
    reading,
)

pytestmark = pytest.mark.slow

READINGS = 50_000
CARS = 100


def payloads_for(cars: list[Car], total: int, first: int = 0) -> list[bytes]:
    """`total` one-reading messages, ten minutes and 5 m apart per car, event ids unique."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=5)
    per_car = total // len(cars)
    return [
        json.dumps(reading(car, 10_000 + 5 * k, start + k * timedelta(minutes=10), f"{car.id}-{k}")).encode()
        for k in range(first, first + per_car)
        for car in cars
    ]


class Stream:
    """A provider publishing one-reading messages at QoS 1 from a background thread, as
    docs/providers.md asks providers to: a message is done when the broker PUBACKed it; what was
    not acknowledged when the connection broke is published again, on the next node of `nodes`
    when there are several."""

    def __init__(
        self,
        broker: ProjectBroker,
        provider: Provider,
        cars: list[Car],
        total: int = READINGS,
        nodes: Sequence[int] = (0,),
        payloads: list[bytes] | None = None,
    ) -> None:
        self.payloads = payloads if payloads is not None else payloads_for(cars, total)
        self.broker = broker
        self.provider = provider
        self.nodes = nodes
        self.topic = provider.topic
        self.acknowledged = 0
        self.republished = 0
        self.failovers = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _connect(self, attempt: int) -> tuple[mqtt.Client, threading.Event]:
        lost = threading.Event()
        for i in range(attempt, attempt + 60):
            node = self.nodes[i % len(self.nodes)]
            try:
                client = self.broker.client(self.provider, inflight=500, node=node)
            except OSError:
                time.sleep(0.5)
                continue
            client.on_disconnect = lambda *a: lost.set()
            return client, lost
        raise AssertionError("no broker node accepted the publisher")

    def _run(self) -> None:
        try:
            pending = self.payloads
            attempt = 0
            while pending:
                client, lost = self._connect(attempt)
                infos = [(client.publish(self.topic, p, qos=1), p) for p in pending]
                for info, _ in infos:
                    while not info.is_published() and not lost.is_set():
                        with contextlib.suppress(RuntimeError, ValueError):
                            info.wait_for_publish(0.5)
                left = [p for info, p in infos if not info.is_published()]
                self.acknowledged += len(pending) - len(left)
                client.loop_stop()
                with contextlib.suppress(Exception):
                    client.disconnect()
                if left:
                    self.republished += len(left)
                    self.failovers += 1
                    attempt += 1
                pending = left
        except BaseException as e:  # reported by join()
            self.error = e

    def start(self) -> Stream:
        self.thread.start()
        return self

    def join(self) -> None:
        self.thread.join(240)
        assert not self.thread.is_alive(), "the publisher did not finish"
        assert self.error is None, self.error
        assert self.acknowledged == len(self.payloads)


async def accepted(pool: asyncpg.Pool, provider_id: int) -> int:
    n: int = await pool.fetchval(
        "select coalesce(sum(accepted + duplicates + quarantined), 0) from ingest_counts where provider_id = $1",
        provider_id,
    )
    return n


async def reach(pool: asyncpg.Pool, provider_id: int, n: int) -> None:
    for _ in range(1200):
        if await accepted(pool, provider_id) >= n:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never reached {n} readings")


async def stored_exactly_once(
    pool: asyncpg.Pool, provider: Provider, total: int = READINGS
) -> dict[str, int]:
    """Wait until `total` readings of the provider are accepted; then none may be stored twice."""
    query = """select coalesce(sum(accepted), 0)::int8 as accepted, coalesce(sum(duplicates), 0)::int8 as duplicates
               from ingest_counts where provider_id = $1"""
    counts: dict[str, int] = {}
    for _ in range(3000):
        now = await pool.fetchrow(query, provider.id)
        assert now is not None
        counts = dict(now)
        if counts["accepted"] >= total:
            break
        await asyncio.sleep(0.05)
    row = await pool.fetchrow(
        "select count(*) as n, count(distinct provider_event_id) as events from readings where provider_id = $1",
        provider.id,
    )
    assert row is not None
    assert (row["n"], row["events"]) == (total, total), (dict(row), counts)
    assert (
        await pool.fetchval("select count(*) from quarantined_readings where provider_id = $1", provider.id)
        == 0
    )
    final = await pool.fetchrow(query, provider.id)
    assert final is not None
    counts = dict(final)
    assert counts["accepted"] == total
    return counts


@contextlib.contextmanager
def logs_on_failure(*services: LiveService) -> Iterator[None]:
    """On a failed assertion, show what the services logged."""
    try:
        yield
    except AssertionError as e:
        tails = "\n".join(f"--- {s.url}\n{s.logs()[-4000:]}" for s in services)
        raise AssertionError(f"{e}\n{tails}") from e


def ready(service: LiveService) -> dict[str, Any]:
    for _ in range(100):
        try:
            with urllib.request.urlopen(service.url + "/readyz", timeout=2) as r:
                body: dict[str, Any] = json.loads(r.read())
                return body
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"service not ready:\n{service.logs()[-3000:]}")


def mqtt_env(broker: ProjectBroker, **more: str) -> dict[str, str]:
    return {**broker.env(), "CARMILEAGE_LOG_LEVEL": "WARNING", **more}


async def setup_provider(
    pool: asyncpg.Pool, broker: ProjectBroker, cars: int = CARS
) -> tuple[Provider, list[Car]]:
    async with pool.acquire() as conn:
        provider = await make_provider(conn)
        enrolled = await enrol_cars(conn, cars, [provider])
    broker.allow(provider)
    return provider, enrolled


async def test_acknowledged_readings_survive_the_broker_killed_while_no_worker_runs(
    pool: asyncpg.Pool,
    database_url: str,
    own_broker: ProjectBroker,
    live_service_factory: Callable[..., LiveService],
) -> None:
    """Issue 14 (a): 12,000 readings PUBACKed while the worker is stopped, the node SIGKILLed:
    after its restart every one is there, and the worker stores each exactly once."""
    provider, cars = await setup_provider(pool, own_broker)
    total = 12_000
    stream = Stream(own_broker, provider, cars, total=total).start()
    stream.join()
    assert await asyncio.to_thread(own_broker.waiting) == total
    own_broker.kill()  # SIGKILL: nothing is flushed that was not on disk when it PUBACKed
    await asyncio.to_thread(own_broker.restart)
    # The quorum queue replays its log for a moment after the node answers: wait for it.
    assert await settles_at(own_broker, total)
    service = live_service_factory(database_url, **mqtt_env(own_broker))
    with logs_on_failure(service):
        counts = await stored_exactly_once(pool, provider, total)
    assert counts["duplicates"] == 0
    assert await until_ready(service)


async def settles_at(broker: ProjectBroker, total: int, within_s: float = 60) -> bool:
    deadline = time.monotonic() + within_s
    waiting = -1
    while time.monotonic() < deadline:
        waiting = await asyncio.to_thread(broker.waiting)
        if waiting == total:
            return True
        await asyncio.sleep(0.2)
    raise AssertionError(f"{waiting} of {total} acknowledged readings in the queue after the restart")


async def test_service_killed_mid_stream_and_restarted(
    pool: asyncpg.Pool,
    database_url: str,
    project_broker: ProjectBroker,
    live_service_factory: Callable[..., LiveService],
) -> None:
    """Issue 14 (c): the worker SIGKILLed mid-stream; what it held unacknowledged the broker
    redelivers, and each reading is stored once."""
    provider, cars = await setup_provider(pool, project_broker)
    service = live_service_factory(database_url, **mqtt_env(project_broker))
    ready(service)
    stream = Stream(project_broker, provider, cars).start()
    await reach(pool, provider.id, READINGS // 4)
    service.kill()
    service.start()
    stream.join()
    with logs_on_failure(service):
        await stored_exactly_once(pool, provider)
    assert await until_ready(service)


async def until_ready(service: LiveService, within_s: float = 30) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if ready(service)["status"] == "ready":
            return True
        await asyncio.sleep(0.1)
    raise AssertionError(f"service not ready: {ready(service)}")


async def test_two_services_split_the_load_and_store_each_reading_once(
    pool: asyncpg.Pool,
    database_url: str,
    project_broker: ProjectBroker,
    live_service_factory: Callable[..., LiveService],
) -> None:
    provider, cars = await setup_provider(pool, project_broker)
    services = [live_service_factory(database_url, **mqtt_env(project_broker)) for _ in range(2)]
    for s in services:
        ready(s)
    stream = Stream(project_broker, provider, cars, total=20_000).start()
    stream.join()
    with logs_on_failure(*services):
        await stored_exactly_once(pool, provider, total=20_000)

    def metrics(url: str) -> str:
        return urllib.request.urlopen(url + "/metrics", timeout=5).read().decode()

    shares = []
    for s in services:
        text = await asyncio.to_thread(metrics, s.url)
        line = next(
            (
                ln
                for ln in text.splitlines()
                if ln.startswith(f'carmileage_readings_accepted_total{{provider="{provider.name}"')
            ),
            None,
        )
        shares.append(float(line.rsplit(" ", 1)[1]) if line else 0.0)
    assert sum(shares) == 20_000
    assert min(shares) > 2_000, shares  # competing consumers: each worker gets its part


# -- PostgreSQL stopped for 5 s: a throwaway cluster of our own ---------------------------------

PG_BIN = Path("/usr/lib/postgresql/15/bin")


@pytest.fixture
def own_postgres() -> Iterator[tuple[str, Callable[[], None], Callable[[], None]]]:
    """A PostgreSQL cluster in a temp dir on a free port, run as the postgres user (initdb refuses root)."""
    if not (PG_BIN / "initdb").exists() or shutil.which("runuser") is None:
        pytest.skip("needs PostgreSQL 15 server binaries and runuser to run a throwaway cluster")
    directory = Path(tempfile.mkdtemp(prefix="cm-pg-"))
    port = free_port()
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
    data = directory / "data"
    try:
        subprocess.run(
            [
                *as_postgres,
                str(PG_BIN / "initdb"),
                "-D",
                str(data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
        )
    except (subprocess.CalledProcessError, OSError) as e:
        shutil.rmtree(directory, ignore_errors=True)
        pytest.skip(f"cannot create a throwaway PostgreSQL cluster: {e}")
    options = f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 -c fsync=on"

    def start() -> None:
        subprocess.run(
            [
                *as_postgres,
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(data),
                "-o",
                options,
                "-l",
                str(directory / "log"),
                "-w",
                "start",
            ],
            check=True,
            capture_output=True,
        )

    def stop() -> None:
        subprocess.run(
            [*as_postgres, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
            check=True,
            capture_output=True,
        )

    start()
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/carmileage", start, stop
    finally:
        subprocess.run(
            [*as_postgres, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(directory, ignore_errors=True)


async def test_postgresql_stopped_for_5_s_mid_stream(
    own_postgres: tuple[str, Callable[[], None], Callable[[], None]],
    project_broker: ProjectBroker,
    live_service_factory: Callable[..., LiveService],
) -> None:
    url, start_pg, stop_pg = own_postgres
    admin = await asyncpg.connect(with_database(url, "postgres"))
    await admin.execute("create database carmileage")
    await admin.close()
    conn = await asyncpg.connect(url)
    await migrate(conn)
    await conn.close()
    pool = await create_pool(url, min_size=1, max_size=4)
    try:
        provider, cars = await setup_provider(pool, project_broker)
        service = live_service_factory(url, **mqtt_env(project_broker))
        ready(service)
        stream = Stream(project_broker, provider, cars).start()
        await reach(pool, provider.id, READINGS // 4)
        stop_pg()
        await asyncio.sleep(5)
        start_pg()
        stream.join()
        await pool.expire_connections()
        with logs_on_failure(service):
            await stored_exactly_once(pool, provider)
        assert await until_ready(service)
    finally:
        await pool.close()
