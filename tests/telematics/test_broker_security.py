"""Issue 18.1 and 18.2 against the project's RabbitMQ: a provider can neither take over the
service's session nor consume, divert or drop other providers' readings.

The service holds no MQTT session at all: workers consume the durable queue over AMQP with a user
of their own. A provider may publish to its own topic and do nothing else: it has no queue of its
own (so no subscription, shared or not) and no read permission on any topic or queue."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from pathlib import Path

import asyncpg
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingest.amqp import AmqpError, ConsumerConnection
from ingest.broker import rabbitmq
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
from tests.telematics.test_mqtt_ingest import consumer, started


def connect(broker: ProjectBroker, provider: Provider, client_id: str) -> tuple[mqtt.Client, threading.Event]:
    """A provider's client that does not reconnect, and an event set when it is disconnected."""
    lost = threading.Event()
    connected = threading.Event()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311, clean_session=False)
    c.username_pw_set(provider.name, provider.mqtt_password)
    c.on_connect = lambda *a: connected.set()
    c.on_disconnect = lambda *a: lost.set()
    c.reconnect_delay_set(60, 120)
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    assert connected.wait(10)
    return c, lost


def subscription_refused(broker: ProjectBroker, provider: Provider, topic: str) -> bool:
    """Refused either way: a failure code in the SUBACK, or the connection closed."""
    client, lost = connect(broker, provider, f"{provider.name}-{uuid.uuid4().hex[:6]}")
    codes: list[list[mqtt.ReasonCode]] = []
    answered = threading.Event()

    def on_subscribe(cl: mqtt.Client, u: object, mid: int, granted: list[mqtt.ReasonCode], p: object) -> None:
        codes.append(granted)
        answered.set()

    client.on_subscribe = on_subscribe
    client.subscribe(topic, qos=1)
    try:
        if not answered.wait(10):
            return lost.is_set()
        return lost.is_set() or all(code.is_failure for code in codes[0])
    finally:
        client.loop_stop()


async def test_a_provider_can_neither_subscribe_nor_divert_the_workers_stream(
    pool: asyncpg.Pool, database_url: str, tmp_path: Path, project_broker: ProjectBroker
) -> None:
    async with pool.acquire() as conn:
        honest = await make_provider(conn)
        thief = await make_provider(conn)
        cars = await enrol_cars(conn, 2, [honest])
    project_broker.allow(honest)
    project_broker.allow(thief)
    c = await started(consumer(database_url, tmp_path, project_broker), pool)
    try:
        for topic in (
            "$share/carmileage/carmileage/v1/providers/+/readings",
            "carmileage/v1/providers/+/readings",
            honest.topic,
            "#",
        ):
            assert await asyncio.to_thread(subscription_refused, project_broker, thief, topic), topic
        # Every honest reading reaches the service, none is diverted to the thief.
        canaries = [json.dumps(reading(cars[k % 2], 100 + k, recent(20 - k))).encode() for k in range(8)]
        publisher = project_broker.client(honest)
        publish_all(publisher, honest.topic, canaries)
        publisher.loop_stop()
        counts = await wait_for_counts(pool, honest.id, 8)
        assert counts["accepted"] == 8
    finally:
        await c.stop()


async def test_a_provider_cannot_consume_the_readings_queue_over_amqp(
    pool: asyncpg.Pool, project_broker: ProjectBroker
) -> None:
    async with pool.acquire() as conn:
        thief = await make_provider(conn)
    project_broker.allow(thief)
    node = project_broker.layout.nodes[0]
    url = f"amqp://{thief.name}:{thief.mqtt_password}@{node.host}:{node.amqp_port}/"
    try:
        amqp = await ConsumerConnection.open(url, lambda *a: None)
    except (AmqpError, OSError):
        return  # refused at the door is fine too
    try:
        with pytest.raises(AmqpError) as refused:
            await amqp.consume(rabbitmq.QUEUE, 10, "thief")
        assert refused.value.reply_code == 403
    finally:
        amqp.abort()


async def test_client_ids_give_a_provider_no_hold_on_the_service_or_others_readings(
    pool: asyncpg.Pool, database_url: str, tmp_path: Path, project_broker: ProjectBroker
) -> None:
    """The service's old client id means nothing now (it has no MQTT session). A provider that
    takes another provider's client id only closes that connection, as MQTT says: the other's
    unacknowledged readings are published again on reconnection and every one is stored."""
    async with pool.acquire() as conn:
        victim = await make_provider(conn)
        rival = await make_provider(conn)
        (car,) = await enrol_cars(conn, 1, [victim])
    project_broker.allow(victim)
    project_broker.allow(rival)
    c = await started(consumer(database_url, tmp_path, project_broker), pool)
    try:
        squatter, _ = connect(project_broker, rival, "carmileage-ingest")
        victim_id = f"{victim.name}-main"
        honest, kicked = connect(project_broker, victim, victim_id)
        publish_all(honest, victim.topic, [json.dumps(reading(car, 10, recent(5))).encode()])
        rival_client, _ = connect(project_broker, rival, victim_id)
        assert await asyncio.to_thread(kicked.wait, 10)
        rival_client.loop_stop()
        squatter.loop_stop()
        honest.loop_stop()
        again = project_broker.client(victim, client_id=victim_id)
        publish_all(again, victim.topic, [json.dumps(reading(car, 20, recent(4))).encode()])
        again.loop_stop()
        counts = await wait_for_counts(pool, victim.id, 2)
        assert counts["accepted"] == 2
        assert (await c.readiness())[0]
    finally:
        await c.stop()
