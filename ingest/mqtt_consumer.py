"""The MQTT consumer: providers' QoS 1 readings, persisted first and acknowledged after commit.

paho-mqtt's network loop runs in its own thread and only appends received messages to a bounded
inbox; the event loop parses them into micro-batches (at most `ingest_batch_size` readings or
`ingest_batch_ms` after the first), `ingest_writers` tasks store batches concurrently through
`storage.readings.store_batch`, and an acknowledger sends the PUBACKs of each batch, in the order
the batches were formed, once it is committed. Nothing is acknowledged that is not committed.

The session is persistent (MQTT 3.1.1, clean session off, a stable client id per worker) and
the subscription shared (`$share/<group>/carmileage/v1/providers/+/readings`), so workers split
the load and a restarted worker receives what it had not acknowledged. A message received on an
earlier connection is never acknowledged on a later one (its packet id may since name another
message): the broker redelivers it and it is counted as a duplicate.

Backpressure: when the inbox holds `ingest_queue_bound` messages the network thread waits, the
socket stops being read, and the broker holds the rest (QoS 1 flow control).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import asyncpg
import paho.mqtt.client as mqtt
from aiohttp import web
from paho.mqtt.enums import CallbackAPIVersion

from ingest.broker import TOPIC_FILTER
from ingest.ingestion import MQTT_CONNECTED, QUEUE_DEPTH, limits_from, record
from ingest.settings import Settings
from storage.providers import ids_by_name
from storage.readings import BatchItem, store_batch
from telematics.payload import parse_mqtt_payload
from telematics.reading import Adapted, OdometerReading, Problem, Rejected

log = logging.getLogger("carmileage.mqtt")

_PUBACK_COMMAND = 0x40
_PUBACK = struct.Struct("!BBH")
_TOPIC_PREFIX = "carmileage/v1/providers/"
_TOPIC_SUFFIX = "/readings"
#: How long an active/inactive provider look-up is trusted (unknown names are looked up each batch).
PROVIDER_CACHE_S = 30.0
#: Database errors that pass: connection lost, server shutting down or overloaded, lost races.
_TRANSIENT_SQLSTATE_CLASSES = ("08", "40", "53", "57", "58")


def is_transient(e: BaseException) -> bool:
    if isinstance(e, asyncpg.PostgresError):
        return (e.sqlstate or "")[:2] in _TRANSIENT_SQLSTATE_CLASSES
    return isinstance(e, OSError | ConnectionError | TimeoutError | asyncpg.InterfaceError)


def provider_of(topic: str) -> str | None:
    if topic.startswith(_TOPIC_PREFIX) and topic.endswith(_TOPIC_SUFFIX):
        name = topic[len(_TOPIC_PREFIX) : -len(_TOPIC_SUFFIX)]
        if name and "/" not in name:
            return name
    return None


@dataclass(slots=True)
class _Message:
    mid: int
    generation: int
    topic: str
    payload: bytes | bytearray
    received: float
    #: The broker's redelivery flag: this message may have been stored already.
    dup: bool = False


@dataclass(slots=True)
class _Batch:
    messages: list[_Message] = field(default_factory=list)
    #: (message position, provider name, adapted item) per reading position.
    items: list[tuple[int, str | None, Adapted]] = field(default_factory=list)
    done: asyncio.Future[None] | None = None
    #: When it closes at the latest (event-loop time).
    deadline: float = 0.0


class _BufferedSocket:
    """The broker connection read 256 KiB at a time instead of paho's one read per header byte.

    paho reads each packet's fixed header byte by byte, several system calls per message; this
    serves them from a buffer, and `pending()` (which paho checks for TLS sockets) tells its loop
    that buffered data is waiting so it does not sleep in select().
    """

    __slots__ = ("_buf", "_pos", "_sock")

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0

    def recv(self, n: int) -> bytes:
        if self._pos >= len(self._buf):
            data: bytes = self._sock.recv(max(n, 1 << 18))
            if len(data) <= n:
                return data
            self._buf, self._pos = data, 0
        start = self._pos
        self._pos = min(start + n, len(self._buf))
        return self._buf[start : self._pos]

    def pending(self) -> int:
        inner = getattr(self._sock, "pending", None)
        return len(self._buf) - self._pos + (inner() if inner else 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class _Client(mqtt.Client):
    """paho's client with two shortcuts on the hot path (paho-mqtt 2.x internals; tests cover
    both): a buffered socket, and each message handed straight to `on_message` without matching
    it against per-topic callbacks (this client registers none)."""

    def _create_socket(self) -> Any:
        return _BufferedSocket(super()._create_socket())

    def _handle_on_message(self, message: mqtt.MQTTMessage) -> None:
        on_message = self.on_message
        if on_message is not None:
            on_message(self, self._userdata, message)


class MqttConsumer:
    """A service component (see `ingest.service`)."""

    name = "mqtt"

    def __init__(self, settings: Settings, pool: asyncpg.Pool) -> None:
        self.settings = settings
        self.pool = pool
        self.limits = limits_from(settings)
        parts = urlsplit(settings.mqtt_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
        self.topic = f"$share/{settings.mqtt_share_group}/{TOPIC_FILTER}"
        self.client = _Client(
            CallbackAPIVersion.VERSION2,
            client_id=settings.mqtt_client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        if parts.username:
            self.client.username_pw_set(unquote(parts.username), unquote(parts.password or ""))
        if parts.scheme == "mqtts":
            self.client.tls_set_context(ssl.create_default_context())
        self.client.reconnect_delay_set(min_delay=1, max_delay=5)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

        self._inbox: deque[_Message] = deque()
        #: Bumped on every connect and disconnect; acknowledging holds `_ack_lock` and only
        #: acknowledges messages of the current connection.
        self._generation = 0
        self._ack_lock = threading.Lock()
        self._received = 0
        self._subscribed = False
        self._stopping = False
        self._waiting = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup = asyncio.Event()
        #: One lane per writer; a car's readings always take the same lane, so concurrent writers
        #: never wait on each other's per-car locks.
        self._lanes: list[asyncio.Queue[_Batch]] = [
            asyncio.Queue(maxsize=2) for _ in range(settings.ingest_writers)
        ]
        self._to_ack: asyncio.Queue[_Batch] = asyncio.Queue()
        self._unfinished = 0
        self._in_batches = 0
        self._open: dict[int, _Batch] = {}
        self._providers: dict[str, tuple[int, bool, float]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._last_error_log = 0.0
        #: Why the consumer stopped consuming (a task of it ended), for readiness.
        self._failure: str | None = None
        #: When a received message was last taken or a batch last committed (monotonic).
        self._progress_at = time.monotonic()

    # -- the paho network thread ------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.error("MQTT connection refused by %s:%s: %s", self.host, self.port, reason)
            return
        with self._ack_lock:
            self._generation += 1
        log.info(
            "MQTT connected to %s:%s (session present: %s)", self.host, self.port, flags.session_present
        )
        client.subscribe(self.topic, qos=1)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        if any(r.is_failure for r in reasons):
            log.error("MQTT subscription to %s refused: %s", self.topic, reasons)
            return
        self._subscribed = True
        MQTT_CONNECTED.set(1)
        log.info("MQTT subscribed to %s", self.topic)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        with self._ack_lock:
            self._generation += 1
        self._subscribed = False
        MQTT_CONNECTED.set(0)
        if not self._stopping:
            log.warning("MQTT connection lost (%s); reconnecting", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        # Never raise here: an exception would end paho's network thread.
        try:
            if self._stopping:
                return  # not acknowledged: the broker redelivers it to this session later
            self._inbox.append(_Message(msg.mid, self._generation, msg.topic, msg.payload, time.time(), bool(msg.dup)))
            self._received += 1
            if self._waiting:
                self._waiting = False
                loop = self._loop
                if loop is not None:
                    loop.call_soon_threadsafe(self._wakeup.set)
            bound = self.settings.ingest_queue_bound
            while len(self._inbox) >= bound and not self._stopping:
                time.sleep(0.002)
        except Exception:
            log.exception("MQTT message hand-off failed")

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        QUEUE_DEPTH.labels("mqtt", "received").set_function(lambda: len(self._inbox))
        QUEUE_DEPTH.labels("mqtt", "batched").set_function(lambda: self._in_batches)
        self._spawn(self._collect(), "mqtt-collect")
        for i, lane in enumerate(self._lanes):
            self._spawn(self._write(lane), f"mqtt-write-{i}")
        self._spawn(self._acknowledge(), "mqtt-ack")
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()
        log.info("MQTT consumer %s started for %s", self.settings.mqtt_client_id, self.topic)

    async def stop(self) -> None:
        """Stop taking messages, commit and acknowledge what was received, then disconnect.

        The session keeps its subscription, so the broker queues this worker's share while it is
        away. With `mqtt_leave_on_stop` (a worker removed for good) it first unsubscribes and
        keeps storing what the broker still sends it until a second passes without a message.
        """
        if self.settings.mqtt_leave_on_stop and self._subscribed:
            self.client.unsubscribe(self.topic)
            deadline = time.monotonic() + max(1.0, self.settings.shutdown_grace_s - 2)
            seen = -1
            while seen != self._received and time.monotonic() < deadline:
                seen = self._received
                await asyncio.sleep(1.0)
            log.info("MQTT consumer left the shared subscription")
        self._stopping = True
        self._wake()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(1.0, self.settings.shutdown_grace_s - 1)):
                await self._drained()
        if self._inbox or self._open or self._unfinished:
            log.warning("MQTT consumer stopped with unacknowledged messages; the broker redelivers them")
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(Exception, asyncio.CancelledError):  # a failure was logged
                await task
        self.client.disconnect()
        await asyncio.to_thread(self.client.loop_stop)
        MQTT_CONNECTED.set(0)

    def _spawn(self, work: Any, name: str) -> None:
        task = asyncio.create_task(work, name=name)
        task.add_done_callback(self._ended)
        self._tasks.append(task)

    def _ended(self, task: asyncio.Task[None]) -> None:
        """A task of the consumer ended while it runs: it no longer consumes, and says so."""
        if task.cancelled() or self._stopping:
            return
        error = task.exception()
        self._failure = f"{task.get_name()} stopped ({type(error).__name__ if error else 'returned'})"
        MQTT_CONNECTED.set(0)
        log.critical("MQTT consumer is not consuming: %s", self._failure, exc_info=error)

    async def readiness(self) -> tuple[bool, str]:
        """Ready only while readings flow: subscribed, every task alive, and nothing received
        waiting longer than `ingest_stall_s` without a batch committed."""
        if self._failure is not None:
            return False, f"not consuming: {self._failure}"
        if not self._subscribed:
            return False, "disconnected"
        waiting = self._inbox or self._open or self._unfinished
        stalled_s = time.monotonic() - self._progress_at
        if waiting and stalled_s > self.settings.ingest_stall_s:
            return False, f"not consuming: nothing committed for {stalled_s:.0f} s"
        return True, "subscribed"

    # -- the event loop: batch, store, acknowledge ----------------------------------------------

    def _wake(self) -> None:
        self._wakeup.set()

    async def _drained(self) -> None:
        # Polled: the inbox is filled by another thread; the rest changes in this one.
        while self._inbox or self._open or self._unfinished:  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    async def _next(self, wait_s: float | None) -> _Message | None:
        """The next received message, waiting at most `wait_s` seconds (None: forever)."""
        while True:
            if self._inbox:
                return self._inbox.popleft()
            if self._stopping or (wait_s is not None and wait_s <= 0):
                return None
            # Announce the wait before the last look, so a message appended in between wakes us.
            self._wakeup.clear()
            self._waiting = True
            if self._inbox:
                self._waiting = False
                continue
            try:
                async with asyncio.timeout(wait_s):
                    await self._wakeup.wait()
            except TimeoutError:
                return self._inbox.popleft() if self._inbox else None
            finally:
                self._waiting = False

    async def _collect(self) -> None:
        """Parse received messages into one open batch per lane; close a batch when it holds
        `ingest_batch_size` readings or `ingest_batch_ms` after its first message."""
        loop = asyncio.get_running_loop()
        size = self.settings.ingest_batch_size
        window = self.settings.ingest_batch_ms / 1000
        lanes = len(self._lanes)
        inbox = self._inbox
        topics: dict[str, str | None] = {}
        while True:
            deadline = min((b.deadline for b in self._open.values()), default=None)
            wait_s = None if deadline is None else deadline - loop.time()
            m = await self._next(0 if self._stopping else wait_s)
            if m is None:
                now = loop.time()
                for lane, b in list(self._open.items()):
                    if self._stopping or b.deadline <= now:
                        await self._close(lane)
                if self._stopping and not self._open:
                    await asyncio.sleep(0.01)
                continue
            # Take what has arrived, yielding to the event loop every few hundred messages (the
            # writers, the acknowledger and HTTP requests run on it too).
            taken = 0
            self._progress_at = time.monotonic()
            while m is not None:
                taken += 1
                if taken % 250 == 0:
                    await asyncio.sleep(0)
                parsed = parse_mqtt_payload(m.payload)
                first = parsed[0]
                lane = hash(first.vin) % lanes if type(first) is OdometerReading else 0
                batch = self._open.get(lane)
                if batch is not None and len(batch.items) + len(parsed) > size:
                    await self._close(lane)
                    batch = None
                if batch is None:
                    batch = self._open[lane] = _Batch(done=loop.create_future(), deadline=loop.time() + window)
                position = len(batch.messages)
                batch.messages.append(m)
                provider = topics.get(m.topic, "")
                if provider == "":
                    if len(topics) > 10_000:
                        topics.clear()
                    provider = topics[m.topic] = provider_of(m.topic)
                batch.items.extend([(position, provider, a) for a in parsed])
                if len(batch.items) >= size:
                    await self._close(lane)
                m = inbox.popleft() if inbox else None

    async def _close(self, lane: int) -> None:
        batch = self._open.pop(lane)
        self._unfinished += 1
        self._in_batches += len(batch.items)
        self._to_ack.put_nowait(batch)  # acknowledged in the order batches are closed
        await self._lanes[lane].put(batch)  # waits while the lane's writer is behind

    async def _provider_ids(self, names: set[str | None]) -> dict[str, tuple[int, bool]]:
        now = time.monotonic()
        found: dict[str, tuple[int, bool]] = {}
        missing = []
        for name in names:
            if name is None:
                continue
            cached = self._providers.get(name)
            if cached is not None and cached[2] > now:
                found[name] = (cached[0], cached[1])
            else:
                missing.append(name)
        if missing:
            async with self.pool.acquire() as conn:
                fetched = await ids_by_name(conn, missing)
            for name, (pid, active) in fetched.items():
                self._providers[name] = (pid, active, now + PROVIDER_CACHE_S)
                found[name] = (pid, active)
        return found

    def _items(
        self, batch: _Batch, providers: dict[str, tuple[int, bool]]
    ) -> tuple[list[BatchItem], dict[int, str]]:
        items = []
        names: dict[int, str] = {}
        received: dict[int, datetime] = {}
        for position, name, a in batch.items:
            m = batch.messages[position]
            at = received.get(position)
            if at is None:
                at = received[position] = datetime.fromtimestamp(m.received, UTC)
            known = providers.get(name) if name is not None else None
            if known is None:
                rejected = a if isinstance(a, Rejected) else None
                problem = Problem("unknown_provider", f"No provider is named by topic {m.topic!r}.")
                raw = rejected.raw if rejected else m.payload.decode("utf-8", "backslashreplace")
                items.append(BatchItem(None, at, rejected=Rejected((problem,), raw.replace("\x00", "\\x00"))))
                continue
            provider_id, active = known
            names[provider_id] = name or "unknown"
            if not active:
                problem = Problem("provider_inactive", "The provider is deactivated.")
                raw = a.raw if isinstance(a, Rejected) else m.payload.decode("utf-8", "backslashreplace")
                items.append(BatchItem(provider_id, at, rejected=Rejected((problem,), raw.replace("\x00", "\\x00"))))
            elif isinstance(a, Rejected):
                items.append(BatchItem(provider_id, at, rejected=a))
            else:
                items.append(BatchItem(provider_id, at, reading=a))
        return items, names

    async def _write(self, lane: asyncio.Queue[_Batch]) -> None:
        while True:
            batch = await lane.get()
            try:
                await self._store(batch, batch.items)
            finally:
                self._in_batches -= len(batch.items)
                assert batch.done is not None
                if not batch.done.done():
                    batch.done.set_result(None)

    async def _store(self, batch: _Batch, entries: list[tuple[int, str | None, Adapted]]) -> None:
        """Store until committed: wait out an unavailable database; isolate a poisonous message."""
        delay = 0.1
        while True:
            started = time.perf_counter()
            try:
                providers = await self._provider_ids({name for _, name, _ in entries})
                sub = _Batch(messages=batch.messages, items=entries)
                items, names = self._items(sub, providers)
                async with self.pool.acquire() as conn:
                    outcome = await store_batch(
                        conn,
                        items,
                        limits=self.limits,
                        expect_duplicates=any(batch.messages[p].dup for p, _, _ in entries),
                    )
                self._progress_at = time.monotonic()
                try:
                    record("mqtt", items, outcome, names, time.perf_counter() - started)
                except Exception:  # metrics must never send a committed batch round again
                    log.exception("recording the metrics of a batch failed")
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:
                # An error that is not the database's verdict on this data (e.g. a protocol error
                # from a connection that died mid-batch) is only poison if the database answers.
                if is_transient(e) or not await self._database_answers():
                    now = time.monotonic()
                    if now - self._last_error_log > 5:
                        self._last_error_log = now
                        log.warning("storing a batch failed (%s: %s); retrying", type(e).__name__, e)
                    if not isinstance(e, asyncpg.PostgresError) or (e.sqlstate or "").startswith(("08", "57")):
                        # The server went away: every pooled connection is dead, not just this one.
                        await self.pool.expire_connections()
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    continue
                log.exception("storing a batch of %d readings failed", len(entries))
                if len({p for p, _, _ in entries}) > 1:
                    by_message: dict[int, list[tuple[int, str | None, Adapted]]] = {}
                    for entry in entries:
                        by_message.setdefault(entry[0], []).append(entry)
                    for part in by_message.values():
                        await self._store(batch, part)
                    return
                entries = self._unstorable(batch, entries)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _database_answers(self) -> bool:
        try:
            async with asyncio.timeout(2):
                async with self.pool.acquire() as conn:
                    await conn.fetchval("select 1")
            return True
        except Exception:
            return False

    def _unstorable(
        self, batch: _Batch, entries: list[tuple[int, str | None, Adapted]]
    ) -> list[tuple[int, str | None, Adapted]]:
        """One message the database refuses: keep it raw in quarantine instead."""
        position, name, _ = entries[0]
        m = batch.messages[position]
        problem = Problem("storage_rejected", "The database refused this payload; kept raw for review.")
        raw = m.payload[:65536].decode("utf-8", "backslashreplace").replace("\x00", "\\x00")
        return [(position, name, Rejected((problem,), raw))]

    async def _acknowledge(self) -> None:
        while True:
            batch = await self._to_ack.get()
            assert batch.done is not None
            await batch.done
            with self._ack_lock:
                generation = self._generation
                self._send_pubacks([m.mid for m in batch.messages if m.generation == generation])
            self._unfinished -= 1

    def _send_pubacks(self, mids: list[int]) -> None:
        """PUBACK each message id: one write for the whole batch instead of one per message.

        paho's `ack()` queues one 4-byte packet (and wakes its thread) per message; at twenty
        thousand messages a second that is a fifth of a core. The batch's PUBACKs are queued as
        one write through the same internal queue `ack()` uses (paho-mqtt 2.x; tests pin the
        behaviour), falling back to `ack()` if that queue is not there.
        """
        if not mids:
            return
        queue = getattr(self.client, "_packet_queue", None)
        if queue is None:
            for mid in mids:
                self.client.ack(mid, 1)
            return
        queue(_PUBACK_COMMAND, b"".join([_PUBACK.pack(_PUBACK_COMMAND, 2, mid) for mid in mids]), 0, 0)


def create(settings: Settings, pool: asyncpg.Pool, app: web.Application) -> MqttConsumer | None:
    """The component factory listed in `ingest.service.COMPONENT_FACTORIES`."""
    return MqttConsumer(settings, pool) if settings.mqtt_enabled else None

