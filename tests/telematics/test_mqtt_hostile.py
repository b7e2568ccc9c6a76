"""Issue 18.0: no message may stop MQTT ingestion, and readiness says when it is not consuming.

A provider publishes the attack run's payloads to its own topic; a canary published after them
must be stored, every hostile message kept raw in quarantine with its reason, and the consumer
must still answer ready. When a part of the consumer does stop, or the database holds every
batch back, readiness says "not consuming"."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import asyncpg
import pytest

from tests.telematics.conftest import (
    ProjectBroker,
    enrol_cars,
    make_provider,
    publish_all,
    reading,
    recent,
    wait_for_counts,
)
from tests.telematics.test_hostile_payloads import ATTACKS
from tests.telematics.test_mqtt_ingest import consumer, started


async def until(condition: object, within_s: float = 30) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if await condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def test_hostile_messages_are_quarantined_and_the_canary_after_them_is_stored(
    pool: asyncpg.Pool, database_url: str, tmp_path: Path, project_broker: ProjectBroker
) -> None:
    async with pool.acquire() as conn:
        p = await make_provider(conn)
        (car,) = await enrol_cars(conn, 1, [p])
    project_broker.allow(p)
    c = await started(consumer(database_url, tmp_path, project_broker), pool)
    publisher = project_broker.client(p)
    try:
        hostile = [raw for raw, _ in ATTACKS if len(raw) <= 256 * 1024]
        canary = json.dumps(reading(car, 1234, recent(1), event_id=f"canary-{uuid.uuid4().hex}")).encode()
        publish_all(publisher, p.topic, [*hostile, canary])
        counts = await wait_for_counts(pool, p.id, len(hostile) + 1, within_s=15)
        assert counts == {"accepted": 1, "duplicates": 0, "quarantined": len(hostile)}
        reasons = await pool.fetch(
            "select reasons[1] as reason from quarantined_readings where provider_id = $1", p.id
        )
        expected = [code for raw, code in ATTACKS if len(raw) <= 256 * 1024]
        assert sorted(r["reason"] for r in reasons) == sorted(expected)
        assert await c.readiness() == (True, "consuming")
    finally:
        publisher.loop_stop()
        await c.stop()


async def test_readiness_says_when_a_part_of_the_consumer_stopped(
    pool: asyncpg.Pool,
    database_url: str,
    tmp_path: Path,
    project_broker: ProjectBroker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A defect of ours (injected: the parser raising) must not leave readiness saying ready."""
    import ingest.readings_consumer as consumer_module

    def broken(raw: bytes) -> list[object]:
        raise RuntimeError("a defect")

    monkeypatch.setattr(consumer_module, "parse_mqtt_payload", broken)
    async with pool.acquire() as conn:
        p = await make_provider(conn)
        (car,) = await enrol_cars(conn, 1, [p])
    project_broker.allow(p)
    c = await started(consumer(database_url, tmp_path, project_broker), pool)
    publisher = project_broker.client(p)
    try:
        publish_all(publisher, p.topic, [json.dumps(reading(car, 1, recent(1))).encode()])

        async def not_ready() -> bool:
            return not (await c.readiness())[0]

        await until(not_ready)
        assert (await c.readiness())[1] == "not consuming: mqtt-collect stopped (RuntimeError)"
    finally:
        publisher.loop_stop()
        await c.stop()


async def test_readiness_says_when_nothing_is_committed(
    pool: asyncpg.Pool, fresh_database_url: str, tmp_path: Path, project_broker: ProjectBroker
) -> None:
    """The database refuses connections: received readings wait, and readiness says so until
    they are committed."""
    from storage.db import create_pool, with_database

    name = fresh_database_url.rsplit("/", 1)[1]
    own = await create_pool(fresh_database_url, min_size=1, max_size=4)
    admin = await asyncpg.connect(with_database(fresh_database_url, "postgres"))
    async with own.acquire() as conn:
        p = await make_provider(conn)
        (car,) = await enrol_cars(conn, 1, [p])
    project_broker.allow(p)
    c = await started(consumer(fresh_database_url, tmp_path, project_broker, ingest_stall_s=0.5), own)
    publisher = project_broker.client(p)
    try:
        await admin.execute(f'alter database "{name}" allow_connections false')
        await admin.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity where datname = $1", name
        )
        publish_all(publisher, p.topic, [json.dumps(reading(car, 5, recent(1))).encode()])

        async def stalled() -> bool:
            return (await c.readiness())[1].startswith("not consuming: nothing committed")

        await until(stalled)
        await admin.execute(f'alter database "{name}" allow_connections true')
        await wait_for_counts(own, p.id, 1)

        async def ready() -> bool:
            return (await c.readiness())[0]

        await until(ready)
    finally:
        await admin.execute(f'alter database "{name}" allow_connections true')
        await admin.close()
        publisher.loop_stop()
        await c.stop()
        await own.close()
