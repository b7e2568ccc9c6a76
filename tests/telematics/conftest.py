"""Telematics fixtures: providers, enrolled cars with consent, signed requests, and RabbitMQ
nodes run by the project's own code (users and permissions per provider, a quorum queue).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from ingest import broker
from ingest.amqp import queue_waiting
from ingest.broker import rabbitmq
from storage.providers import create_provider
from telematics.signatures import signature
from tests.conftest import PROVIDER_BOX, free_port, random_plate, random_vin


@dataclass
class Provider:
    id: int
    name: str
    secret: str
    mqtt_password: str

    @property
    def topic(self) -> str:
        return broker.topic_for(self.name)


async def make_provider(conn: asyncpg.Connection | Any, name: str | None = None) -> Provider:
    name = name or f"p{uuid.uuid4().hex[:10]}"
    password = broker.new_password()
    pid, secret = await create_provider(
        conn, name, display_name=None, mqtt_password_hash=broker.hash_password(password), box=PROVIDER_BOX
    )
    return Provider(pid, name, secret, password)


@dataclass
class Car:
    id: int
    vin: str
    owner_id: str


async def enrol_cars(conn: asyncpg.Connection | Any, n: int, consent: list[Provider] = ()) -> list[Car]:  # type: ignore[assignment]
    """Enrol n eligible cars (each with its own owner) and record their consent to `consent`."""
    cars = []
    for _ in range(n):
        owner = f"owner-{uuid.uuid4().hex[:10]}"
        vin = random_vin()
        plate = random_plate()
        await conn.execute("insert into owners (id, district) values ($1, '강남구')", owner)
        vid = await conn.fetchval(
            """insert into vehicles (owner_id, plate, plate_key, vin, district, registration_region, use,
                                     vehicle_type, seats, fuel, first_registration_date)
               values ($1, $2, $3, $4, '강남구', '서울', 'non_commercial', 'passenger', 5, 'gasoline', '2018-03-15')
               returning id""",
            owner,
            plate,
            plate,
            vin,
        )
        for p in consent:
            await conn.execute(
                "insert into vehicle_consents (provider_id, vehicle_id) values ($1, $2)", p.id, vid
            )
        cars.append(Car(vid, vin, owner))
    return cars


def reading(car: Car | str, km: float, at: datetime, event_id: str | None = None) -> dict[str, Any]:
    return {
        "event_id": event_id or uuid.uuid4().hex,
        "vin": car if isinstance(car, str) else car.vin,
        "odometer": {"value": km, "unit": "km"},
        "recorded_at": at.isoformat(),
    }


def recent(hours_ago: float) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(hours=hours_ago)


def signed_headers(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "Content-Type": "application/json",
        "X-Carmileage-Timestamp": ts,
        "X-Carmileage-Signature": signature(secret, ts, body),
    }


def body_of(readings: list[dict[str, Any]]) -> bytes:
    return json.dumps({"readings": readings}).encode()


# -- the project broker -------------------------------------------------------------------------


class ProjectBroker:
    """RabbitMQ nodes run by the project's own code (`ingest.broker.rabbitmq`) in a directory of
    the test run's: one node, or a cluster of several."""

    def __init__(self, directory: Path, layout: rabbitmq.Layout) -> None:
        self.dir = directory
        self.layout = layout
        self.nodes = [rabbitmq.Node(directory, spec) for spec in layout.nodes]
        self.providers: dict[str, str] = {}

    @classmethod
    def single(cls, directory: Path) -> ProjectBroker:
        name = f"cmtest-{uuid.uuid4().hex[:8]}@localhost"
        ports = [free_port() for _ in range(4)]
        return cls(directory, rabbitmq.Layout.single(name, amqp_port=ports[0], mqtt_port=ports[1],
                                                     management_port=ports[2], dist_port=ports[3]))

    @classmethod
    def cluster(cls, directory: Path, size: int = 3) -> ProjectBroker:
        return cls(directory, rabbitmq.Layout.cluster(f"cmtest-{uuid.uuid4().hex[:6]}", size))

    def start(self) -> ProjectBroker:
        self.layout.save(self.dir)
        rabbitmq.start_nodes(self.dir, self.layout)
        rabbitmq.ensure_topology(self.admin, self.dir, replicas=len(self.nodes))
        rabbitmq.service_env(self.dir, self.layout)
        return self

    def running(self) -> list[rabbitmq.Node]:
        return [n for n in self.nodes if n.pid() is not None]

    @property
    def admin(self) -> rabbitmq.Admin:
        return rabbitmq.Admin.for_node(self.running()[0])

    @property
    def service_url(self) -> str:
        return ",".join(self.layout.amqp_urls(rabbitmq.SERVICE_USER, rabbitmq.secret_in(self.dir, "service.password")))

    @property
    def admin_url(self) -> str:
        env = (self.dir / "service.env").read_text()
        return next(line.split("=", 1)[1] for line in env.splitlines() if line.startswith("CARMILEAGE_BROKER_ADMIN_URL="))

    @property
    def port(self) -> int:
        """The first node's MQTT port."""
        return self.layout.nodes[0].mqtt_port

    def env(self) -> dict[str, str]:
        """What a service process needs to consume from this broker."""
        return {
            "CARMILEAGE_MQTT_ENABLED": "true",
            "CARMILEAGE_BROKER_URL": self.service_url,
            "CARMILEAGE_BROKER_ADMIN_URL": self.admin_url,
            "CARMILEAGE_BROKER_DIR": str(self.dir),
        }

    def allow(self, provider: Provider) -> None:
        """Give a provider its broker user (as `carmileage providers add` does)."""
        rabbitmq.put_provider(self.admin, provider.name, broker.hash_password(provider.mqtt_password))

    def purge(self) -> None:
        self.admin.purge(rabbitmq.QUEUE)

    def waiting(self) -> int:
        """Readings ready in the queue (not delivered to a worker), counted exactly."""
        return asyncio.run(queue_waiting(self.service_url, rabbitmq.QUEUE))

    def kill(self, i: int = 0) -> None:
        self.nodes[i].kill()

    def stop(self, i: int | None = None) -> None:
        for n in self.nodes if i is None else [self.nodes[i]]:
            n.stop()

    def restart(self, i: int | None = None) -> None:
        """Start the given node (or every node) again and wait until it serves."""
        rabbitmq.run_nodes(self.nodes if i is None else [self.nodes[i]])

    def client(
        self,
        provider: Provider,
        client_id: str | None = None,
        protocol: MQTTProtocolVersion = mqtt.MQTTv311,
        inflight: int = 200,
        node: int = 0,
    ) -> mqtt.Client:
        """A connected provider client (paho), publishing QoS 1 with a persistent session."""
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"{provider.name}-{uuid.uuid4().hex[:6]}",
            protocol=protocol,
            clean_session=False if protocol == mqtt.MQTTv311 else None,
        )
        c.username_pw_set(provider.name, provider.mqtt_password)
        c.max_inflight_messages_set(inflight)
        c.max_queued_messages_set(0)
        c.reconnect_delay_set(1, 2)
        c.connect("127.0.0.1", self.layout.nodes[node].mqtt_port)
        c.loop_start()
        return c

    def shutdown(self) -> None:
        for n in self.nodes:
            with contextlib.suppress(Exception):
                n.kill()


@pytest.fixture(scope="session")
def broker_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProjectBroker]:
    """One RabbitMQ node for the test session (a node takes ~10 s to start)."""
    b = ProjectBroker.single(tmp_path_factory.mktemp("broker")).start()
    yield b
    b.shutdown()


@pytest.fixture
def project_broker(broker_node: ProjectBroker) -> ProjectBroker:
    """The session's node, its readings queue emptied of what earlier tests left."""
    broker_node.purge()
    return broker_node


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[ProjectBroker]:
    """A node of this test's own, for tests that kill or restart it."""
    b = ProjectBroker.single(tmp_path / "broker").start()
    yield b
    b.shutdown()


def publish_all(client: mqtt.Client, topic: str, payloads: list[bytes], timeout: float = 60) -> None:
    """Publish at QoS 1 and wait until the broker acknowledged every message."""
    infos = [client.publish(topic, p, qos=1) for p in payloads]
    deadline = time.monotonic() + timeout
    for info in infos:
        info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        assert info.is_published()


async def wait_for_counts(pool: Any, provider_id: int, total: int, within_s: float = 60) -> dict[str, int]:
    """Wait until the provider's readings counted (stored + duplicate + quarantined) reach total."""
    import asyncio

    deadline = time.monotonic() + within_s
    row: Any = None
    while time.monotonic() < deadline:
        row = await pool.fetchrow(
            """select coalesce(sum(accepted), 0)::int8 as accepted, coalesce(sum(duplicates), 0)::int8 as duplicates,
                      coalesce(sum(quarantined), 0)::int8 as quarantined
               from ingest_counts where provider_id = $1""",
            provider_id,
        )
        if row["accepted"] + row["duplicates"] + row["quarantined"] >= total:
            return dict(row)
        await asyncio.sleep(0.05)
    raise AssertionError(f"only {dict(row) if row else None} of {total} readings counted")
