"""`carmileage providers` and `carmileage stats` through the real CLI."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from ingest.amqp import queue_waiting
from ingest.broker import rabbitmq
from storage.readings import BatchItem, store_batch
from telematics.reading import OdometerReading
from tests.conftest import ROOT, free_port
from tests.telematics.conftest import ProjectBroker, enrol_cars, make_provider


def cli(
    database_url: str, broker_dir: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ingest.cli", *args],
        env={
            **os.environ,
            "CARMILEAGE_DATABASE_URL": database_url,
            "CARMILEAGE_BROKER_DIR": str(broker_dir),
            **(env or {}),
        },
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def connects(port: int, username: str, password: str) -> bool:
    result: list[bool] = []
    answered = threading.Event()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"cli-test-{uuid.uuid4().hex[:8]}")
    c.username_pw_set(username, password)

    def on_connect(client: mqtt.Client, u: object, f: object, reason: mqtt.ReasonCode, p: object) -> None:
        result.append(not reason.is_failure)
        answered.set()

    c.on_connect = on_connect
    c.connect("127.0.0.1", port)
    c.loop_start()
    answered.wait(10)
    c.loop_stop()
    return bool(result and result[0])


async def test_providers_add_creates_credentials_the_broker_accepts_at_once(
    database_url: str, project_broker: ProjectBroker, pool: asyncpg.Pool
) -> None:
    name = f"acme-{uuid.uuid4().hex[:8]}"
    env = {"CARMILEAGE_BROKER_ADMIN_URL": project_broker.admin_url}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return cli(database_url, project_broker.dir, *args, env=env)

    out = run("providers", "add", name, "--json")
    assert out.returncode == 0, out.stderr
    created = json.loads(out.stdout)
    assert created["mqtt"]["topic"] == f"carmileage/v1/providers/{name}/readings"
    assert created["http"]["secret"].startswith("cmhs_")
    assert created["broker"].startswith("broker has the users of")
    assert connects(project_broker.port, name, created["mqtt"]["password"])
    assert not connects(project_broker.port, name, "guess")

    again = run("providers", "add", name)
    assert again.returncode != 0 and "exists" in again.stderr

    rotated = json.loads(run("providers", "rotate", name, "--mqtt", "--json").stdout)
    assert connects(project_broker.port, name, rotated["mqtt_password"])
    assert not connects(project_broker.port, name, created["mqtt"]["password"])

    def listed() -> list[tuple[str, int]]:
        rows = json.loads(run("providers", "list", "--json").stdout)
        return [(p["name"], p["active_secrets"]) for p in rows if p["name"] == name]

    assert listed() == [(name, 1)]
    run("providers", "rotate", name, "--http")
    assert listed() == [(name, 2)]
    # Neither the database nor the broker holds the password, only a salted hash of it.
    stored = await pool.fetchval(
        "select password_hash from provider_mqtt_credentials where username = $1", name
    )
    assert rotated["mqtt_password"] not in stored
    user = next(u for u in project_broker.admin.users() if u["name"] == name)
    assert rotated["mqtt_password"] not in json.dumps(user)
    # A deactivated provider loses its broker user at the next sync.
    await pool.execute("update providers set active = false where name = $1", name)
    assert run("providers", "sync-broker").returncode == 0
    assert not connects(project_broker.port, name, rotated["mqtt_password"])


async def test_stats_json(database_url: str, tmp_path: Path, pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        p = await make_provider(conn)
        (car,) = await enrol_cars(conn, 1, [p])
        at = datetime.now(UTC) - timedelta(hours=1)
        await store_batch(conn, [BatchItem(p.id, at, OdometerReading("s1", car.vin, 5, at, Decimal(5), "m"))] * 2)
    out = cli(database_url, tmp_path, "stats", "--json")
    assert out.returncode == 0, out.stderr
    stats = json.loads(out.stdout)
    assert stats["by_provider"][p.name] == {"stored": 1, "duplicate": 1, "quarantined": 0}
    assert stats["stored"] >= 1 and stats["tables"]["readings"] >= 1
    assert set(stats) >= {"stored", "duplicate", "quarantined", "by_source", "quarantined_by_reason"}


def test_broker_start_runs_the_project_node_and_writes_the_service_settings(
    tmp_path: Path, database_url: str
) -> None:
    directory = tmp_path / "broker"
    ports = {name: free_port() for name in ("amqp", "mqtt", "management", "dist")}
    args = [f"--{k}-port={v}" for k, v in ports.items()]
    out = cli(database_url, directory, "broker", "start", *args)
    try:
        assert out.returncode == 0, out.stderr + out.stdout
        assert f"MQTT 127.0.0.1:{ports['mqtt']}" in out.stdout
        env = dict(line.split("=", 1) for line in (directory / "service.env").read_text().splitlines())
        assert env["CARMILEAGE_BROKER_URL"].startswith(f"amqp://{rabbitmq.SERVICE_USER}:")
        assert oct((directory / "service.password").stat().st_mode & 0o777) == "0o600"
        # The service may consume the readings queue; nobody connects to MQTT without a password.
        assert asyncio.run(queue_waiting(env["CARMILEAGE_BROKER_URL"], rabbitmq.QUEUE)) == 0
        assert not connects(ports["mqtt"], "anyone", "")
        # The settings find the service's credentials under CARMILEAGE_BROKER_DIR.
        settings = subprocess.run(
            [sys.executable, "-c", "from ingest.settings import load_settings; print(load_settings().broker_url)"],
            env={**os.environ, "CARMILEAGE_BROKER_DIR": str(directory)},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=True,
        )
        assert settings.stdout.strip() == env["CARMILEAGE_BROKER_URL"]
        again = cli(database_url, directory, "broker", "start")
        assert again.returncode == 0 and "runs" in again.stdout
    finally:
        cli(database_url, directory, "broker", "stop")
    assert not rabbitmq.answering("127.0.0.1", ports["mqtt"])


async def test_providers_consent_records_and_withdraws(database_url: str, tmp_path: Path, pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        p = await make_provider(conn)
        (car,) = await enrol_cars(conn, 1)
    out = cli(database_url, tmp_path, "providers", "consent", p.name, car.vin.lower(), "KMHZZ00ZZZZ999997")
    assert out.returncode == 0 and "recorded for 1 cars; unknown VINs: KMHZZ00ZZZZ999997" in out.stdout
    state = "select withdrawn_at is null from vehicle_consents where provider_id = $1 and vehicle_id = $2"
    assert await pool.fetchval(state, p.id, car.id) is True
    out = cli(database_url, tmp_path, "providers", "consent", p.name, car.vin, "--withdraw")
    assert out.returncode == 0 and "withdrawn for 1 cars" in out.stdout
    assert await pool.fetchval(state, p.id, car.id) is False
    actions = await pool.fetch(
        "select action from audit_log where entity = 'vehicle' and entity_id = $1 order by id", str(car.id)
    )
    assert [a["action"] for a in actions] == ["consent.grant", "consent.withdraw"]
