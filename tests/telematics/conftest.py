"""Telematics fixtures: providers, enrolled cars with consent, signed requests, and a Mosquitto
of the project's own configuration (password file, ACL, persistence) on a free port.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
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
from storage.providers import create_provider
from telematics.signatures import signature
from tests.conftest import free_port, random_plate, random_vin


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
        conn, name, display_name=None, mqtt_password_hash=broker.hash_password(password)
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


# -- a project broker ----------------------------------------------------------------------------


class ProjectBroker:
    """Mosquitto run from the project's configuration in its own directory, in the foreground."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        broker.render(directory, port=self.port)
        self.providers: dict[str, str] = {}

    @property
    def service_url(self) -> str:
        return broker.service_url(self.dir, port=self.port)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [broker.mosquitto_binary(), "-c", str(self.dir / "mosquitto.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # Foreground Mosquitto writes no pid file; `carmileage providers add` finds it through one.
        (self.dir / "mosquitto.pid").write_text(f"{self.proc.pid}\n")
        deadline = time.monotonic() + 10
        while not broker.answering("127.0.0.1", self.port):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(
                    f"mosquitto did not start: {(self.dir / 'mosquitto.log').read_text()[-2000:]}"
                )
            time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM: Mosquitto saves its sessions and queued messages to disk."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(15)

    def restart(self, down_s: float = 0.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()

    def allow(self, provider: Provider) -> None:
        """Add a provider to the password file and make the broker reload it."""
        self.providers[provider.name] = broker.hash_password(provider.mqtt_password)
        broker.write_password_file(self.dir, self.providers.items())
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGHUP)
            time.sleep(0.2)

    def client(
        self,
        provider: Provider,
        client_id: str | None = None,
        protocol: MQTTProtocolVersion = mqtt.MQTTv311,
        inflight: int = 200,
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
        c.connect("127.0.0.1", self.port)
        c.loop_start()
        return c


@pytest.fixture
def project_broker(tmp_path: Path) -> Iterator[ProjectBroker]:
    b = ProjectBroker(tmp_path / "mosquitto")
    b.start()
    yield b
    if b.proc and b.proc.poll() is None:
        b.proc.kill()
        b.proc.wait()


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
