"""Providers' MQTT readings through the project's RabbitMQ to the readings consumer: persist then
acknowledge, bad payloads kept raw with a reason, redeliveries counted once, and each provider
held to its own topic."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from pathlib import Path

import asyncpg
import paho.mqtt.client as mqtt
import pytest

from ingest.readings_consumer import ReadingsConsumer, provider_of
from tests.conftest import make_settings
from tests.telematics.conftest import (
    ProjectBroker,
    Provider,
    enrol_cars,
    make_provider,
    publish_all,
    reading,
    recent,
    wait_for_counts,
)


def consumer(database_url: str, tmp_path: Path, broker: ProjectBroker, **kw: object) -> ReadingsConsumer:
    settings = make_settings(database_url, tmp_path / "data", broker_url=broker.service_url, mqtt_enabled=True, **kw)
    return ReadingsConsumer(settings, None)  # type: ignore[arg-type]  # the pool is given by started()


async def started(c: ReadingsConsumer, pool: asyncpg.Pool) -> ReadingsConsumer:
    c.pool = pool
    await c.start()
    for _ in range(200):
        if (await c.readiness())[0]:
            return c
        await asyncio.sleep(0.05)
    raise AssertionError(f"the consumer did not start consuming: {await c.readiness()}")


def test_topics_name_their_provider() -> None:
    assert provider_of("carmileage.v1.providers.acme.readings") == "acme"
    assert provider_of("carmileage.v1.providers.a.b.readings") is None
    assert provider_of("carmileage.v1.providers..readings") is None


async def test_readings_and_bad_payloads_over_mqtt(
    pool: asyncpg.Pool, database_url: str, tmp_path: Path, project_broker: ProjectBroker
) -> None:
    async with pool.acquire() as conn:
        p = await make_provider(conn)
        a, b = await enrol_cars(conn, 2, [p])
    project_broker.allow(p)
    c = await started(consumer(database_url, tmp_path, project_broker), pool)
    publisher = project_broker.client(p)
    try:
        singles = [json.dumps(reading(a, 1000 + k, recent(50 - k))).encode() for k in range(20)]
        array = json.dumps([reading(b, 1, recent(3)), reading(b, 2, recent(2)), {"vin": "nope"}]).encode()
        bad = [
            b"{not json",
            json.dumps(reading(a, 1, recent(1)))
            .replace("1.0", "NaN")
            .replace('"value": 1', '"value": NaN')
            .encode(),
            json.dumps({**reading(a, 5, recent(1)), "recorded_at": "2024-01-01T00:00:00"}).encode(),
            b'{"pad": "' + b"x" * (256 * 1024) + b'"}',
        ]
        publish_all(publisher, p.topic, [*singles, array, *bad])
        counts = await wait_for_counts(pool, p.id, 20 + 3 + 4)
        assert counts == {"accepted": 22, "duplicates": 0, "quarantined": 5}
        raw = await pool.fetch(
            "select reasons, left(raw, 20) as raw from quarantined_readings where provider_id = $1 order by id",
            p.id,
        )
        assert sorted(r["reasons"][0] for r in raw) == sorted(
            [
                "unknown_shape",
                "malformed_json",
                "non_finite_number",
                "time_without_offset",
                "payload_too_large",
            ]
        )
        assert all(r["raw"] for r in raw)
        # Redelivered or resent: counted as duplicates, stored once.
        publish_all(publisher, p.topic, [*singles[:5], array, *bad[:1]])
        counts = await wait_for_counts(pool, p.id, 27 + 9)
        assert counts == {"accepted": 22, "duplicates": 9, "quarantined": 5}
        assert await pool.fetchval("select count(*) from readings where provider_id = $1", p.id) == 22
        from prometheus_client import REGISTRY

        def metric(name: str, **labels: str) -> float:
            return REGISTRY.get_sample_value(name, {"provider": p.name, "transport": "mqtt", **labels}) or 0.0

        assert metric("carmileage_readings_accepted_total") == 22
        assert metric("carmileage_readings_duplicate_total") == 9
        assert metric("carmileage_readings_quarantined_total", reason="payload_too_large") == 1
    finally:
        publisher.loop_stop()
        await c.stop()


async def test_a_provider_may_only_publish_to_its_own_topic(
    pool: asyncpg.Pool, database_url: str, tmp_path: Path, project_broker: ProjectBroker
) -> None:
    async with pool.acquire() as conn:
        victim = await make_provider(conn)
        forger = await make_provider(conn)
        (car,) = await enrol_cars(conn, 1, [victim, forger])
    project_broker.allow(victim)
    project_broker.allow(forger)
    c = await started(consumer(database_url, tmp_path, project_broker), pool)
    try:
        # The broker refuses the forged topic: no PUBACK, the connection is closed.
        client = project_broker.client(forger)
        client.reconnect_delay_set(30, 60)
        closed = threading.Event()
        client.on_disconnect = lambda *a: closed.set()
        info = client.publish(victim.topic, json.dumps(reading(car, 10, recent(1))).encode(), qos=1)
        assert await asyncio.to_thread(closed.wait, 10)
        assert not info.is_published()
        client.loop_stop()
        own = project_broker.client(forger)
        publish_all(own, forger.topic, [json.dumps(reading(car, 10, recent(1))).encode()])
        own.loop_stop()
        await wait_for_counts(pool, forger.id, 1)
        assert await project_broker_waiting_is_zero(project_broker)
        assert (
            await pool.fetchval("select count(*) from ingest_counts where provider_id = $1", victim.id) == 0
        )
        # A wrong password does not get in at all.
        intruder = Provider(0, victim.name, "", "not-the-password")
        refused: list[object] = []
        bad = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="intruder", protocol=mqtt.MQTTv311)
        bad.username_pw_set(intruder.name, intruder.mqtt_password)
        bad.on_connect = lambda *a: refused.append(a[3])
        bad.connect("127.0.0.1", project_broker.port)
        bad.loop_start()
        for _ in range(100):
            if refused:
                break
            await asyncio.sleep(0.05)
        bad.loop_stop()
        assert refused and refused[0].is_failure  # type: ignore[attr-defined]
    finally:
        await c.stop()


async def project_broker_waiting_is_zero(broker: ProjectBroker) -> bool:
    """Nothing left in the queue: the forged reading never entered it."""
    return await asyncio.to_thread(broker.waiting) == 0


async def test_a_topic_of_no_known_provider_is_quarantined_raw(
    pool: asyncpg.Pool, database_url: str, tmp_path: Path, project_broker: ProjectBroker
) -> None:
    ghost = Provider(0, f"ghost-{uuid.uuid4().hex[:8]}", "", "ghost-password")
    project_broker.allow(ghost)  # in the broker's password file, not in the database
    c = await started(consumer(database_url, tmp_path, project_broker), pool)
    client = project_broker.client(ghost)
    try:
        marker = uuid.uuid4().hex
        publish_all(
            client, ghost.topic, [json.dumps(reading("KMHXX00XXXX000001", 1, recent(1), marker)).encode()]
        )
        for _ in range(200):
            row = await pool.fetchrow(
                "select provider_id, reasons from quarantined_readings where raw like $1", f"%{marker}%"
            )
            if row:
                break
            await asyncio.sleep(0.05)
        assert row is not None and row["provider_id"] is None and row["reasons"] == ["unknown_provider"]
    finally:
        client.loop_stop()
        await c.stop()


@pytest.mark.slow
async def test_a_stopped_worker_acknowledges_what_it_stored_and_leaves_the_rest(
    pool: asyncpg.Pool, database_url: str, tmp_path: Path, project_broker: ProjectBroker
) -> None:
    """Graceful stop mid-stream: what the worker committed it acknowledged (nothing comes back
    as a duplicate), what it had not committed the broker gives to the next worker."""
    async with pool.acquire() as conn:
        p = await make_provider(conn)
        cars = await enrol_cars(conn, 10, [p])
    project_broker.allow(p)
    c = await started(consumer(database_url, tmp_path, project_broker, ingest_batch_size=50), pool)
    publisher = project_broker.client(p)
    payloads = [
        json.dumps(reading(car, 100 + k, recent(300 - k))).encode() for k in range(200) for car in cars
    ]
    try:
        infos = [publisher.publish(p.topic, m, qos=1) for m in payloads]
        await wait_for_counts(pool, p.id, 1)  # mid-stream
        await c.stop()
        for info in infos:
            info.wait_for_publish(30)
        c = await started(consumer(database_url, tmp_path, project_broker), pool)
        counts = await wait_for_counts(pool, p.id, len(payloads))
        assert counts == {"accepted": len(payloads), "duplicates": 0, "quarantined": 0}
        assert await pool.fetchval("select count(*) from readings where provider_id = $1", p.id) == len(
            payloads
        )
    finally:
        publisher.loop_stop()
        await c.stop()
    assert await asyncio.to_thread(project_broker.waiting) == 0


async def test_workers_share_the_queue_and_one_leaving_leaves_all_to_the_others(
    pool: asyncpg.Pool, database_url: str, tmp_path: Path, project_broker: ProjectBroker
) -> None:
    async with pool.acquire() as conn:
        p = await make_provider(conn)
        cars = await enrol_cars(conn, 4, [p])
    project_broker.allow(p)
    leaving = await started(consumer(database_url, tmp_path / "a", project_broker), pool)
    staying = await started(consumer(database_url, tmp_path / "b", project_broker), pool)
    publisher = project_broker.client(p)
    try:
        await leaving.stop()
        payloads = [
            json.dumps(reading(car, 10 + k, recent(100 - k))).encode() for k in range(50) for car in cars
        ]
        publish_all(publisher, p.topic, payloads)
        counts = await wait_for_counts(pool, p.id, len(payloads), within_s=30)
        assert counts["accepted"] == len(payloads)
    finally:
        publisher.loop_stop()
        await staying.stop()


async def test_a_message_the_database_refuses_is_kept_raw_and_the_rest_flows(
    pool: asyncpg.Pool,
    database_url: str,
    tmp_path: Path,
    project_broker: ProjectBroker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A batch failing for a reason other than the database being away is split per message;
    the message that still fails is quarantined raw (`storage_rejected`) and acknowledged."""
    import ingest.readings_consumer as consumer_module
    from storage.readings import store_batch as real_store_batch

    async def refusing(conn: object, items: list, **kw: object) -> object:
        if any(i.reading is not None and i.reading.event_id == "poison" for i in items):
            raise asyncpg.exceptions.DataError("refused for the test")
        return await real_store_batch(conn, items, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(consumer_module, "store_batch", refusing)
    async with pool.acquire() as conn:
        p = await make_provider(conn)
        (car,) = await enrol_cars(conn, 1, [p])
    project_broker.allow(p)
    c = await started(consumer(database_url, tmp_path, project_broker, ingest_batch_ms=500), pool)
    publisher = project_broker.client(p)
    try:
        good = [json.dumps(reading(car, 100 + k, recent(10 - k))).encode() for k in range(5)]
        poison = json.dumps(reading(car, 50, recent(20), event_id="poison")).encode()
        publish_all(publisher, p.topic, [*good[:2], poison, *good[2:]])
        counts = await wait_for_counts(pool, p.id, 6)
        assert (counts["accepted"], counts["quarantined"]) == (5, 1)
        row = await pool.fetchrow(
            "select reasons, raw from quarantined_readings where provider_id = $1", p.id
        )
        assert row is not None
        assert row["reasons"] == ["storage_rejected"] and '"poison"' in row["raw"]
    finally:
        publisher.loop_stop()
        await c.stop()
