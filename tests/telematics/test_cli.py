"""`carmileage providers` and `carmileage stats` through the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from ingest import broker
from storage.readings import BatchItem, store_batch
from telematics.reading import OdometerReading
from tests.conftest import ROOT
from tests.telematics.conftest import ProjectBroker, enrol_cars, make_provider


def cli(database_url: str, broker_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ingest.cli", *args],
        env={**os.environ, "CARMILEAGE_DATABASE_URL": database_url, "CARMILEAGE_MQTT_BROKER_DIR": str(broker_dir)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def connects(port: int, username: str, password: str) -> bool:
    result: list[bool] = []
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"cli-test-{username}")
    c.username_pw_set(username, password)
    c.on_connect = lambda client, u, f, reason, p: result.append(not reason.is_failure)
    c.connect("127.0.0.1", port)
    c.loop_start()
    deadline = time.monotonic() + 5
    while not result and time.monotonic() < deadline:
        time.sleep(0.05)
    c.loop_stop()
    return bool(result and result[0])


def test_providers_add_creates_credentials_the_broker_accepts_at_once(
    database_url: str, project_broker: ProjectBroker
) -> None:
    name = f"acme-{uuid.uuid4().hex[:8]}"
    out = cli(database_url, project_broker.dir, "providers", "add", name, "--json")
    assert out.returncode == 0, out.stderr
    created = json.loads(out.stdout)
    assert created["mqtt"]["topic"] == f"carmileage/v1/providers/{name}/readings"
    assert created["http"]["secret"].startswith("cmhs_")
    assert "reloaded" in created["broker"]
    time.sleep(0.3)
    assert connects(project_broker.port, name, created["mqtt"]["password"])
    assert not connects(project_broker.port, name, "guess")

    again = cli(database_url, project_broker.dir, "providers", "add", name)
    assert again.returncode != 0 and "exists" in again.stderr

    rotated = json.loads(cli(database_url, project_broker.dir, "providers", "rotate", name, "--mqtt", "--json").stdout)
    time.sleep(0.3)
    assert connects(project_broker.port, name, rotated["mqtt_password"])
    assert not connects(project_broker.port, name, created["mqtt"]["password"])

    def listed() -> list[tuple[str, int]]:
        rows = json.loads(cli(database_url, project_broker.dir, "providers", "list", "--json").stdout)
        return [(p["name"], p["active_secrets"]) for p in rows if p["name"] == name]

    assert listed() == [(name, 1)]
    cli(database_url, project_broker.dir, "providers", "rotate", name, "--http")
    assert listed() == [(name, 2)]
    # The password file never holds a password, only Mosquitto hashes.
    assert created["mqtt"]["password"] not in (project_broker.dir / "passwd").read_text()


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


def test_broker_start_renders_and_runs_the_project_broker(tmp_path: Path, database_url: str) -> None:
    from tests.conftest import free_port

    directory = tmp_path / "broker"
    port = free_port()
    out = cli(database_url, directory, "broker", "start", "--port", str(port))
    try:
        assert out.returncode == 0, out.stderr + out.stdout
        assert "started" in out.stdout
        env = (directory / "service.env").read_text()
        assert env.startswith(f"CARMILEAGE_MQTT_URL=mqtt://{broker.SERVICE_USERNAME}:")
        assert oct((directory / "service.password").stat().st_mode & 0o777) == "0o600"
        assert connects(port, broker.SERVICE_USERNAME, broker.service_password(directory))
        assert not connects(port, "anyone", "")
        again = cli(database_url, directory, "broker", "start", "--port", str(port))
        assert "already answering" in again.stdout
    finally:
        cli(database_url, directory, "broker", "stop")
    assert not broker.answering("127.0.0.1", port)


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
