"""The readings consumer: providers' MQTT readings, taken from the broker's durable queue, stored,
and only then acknowledged.

Providers publish QoS 1 to the broker's MQTT listener; the broker PUBACKs once the reading is in
the quorum queue `carmileage.readings` (see `ingest.broker.rabbitmq`). Any number of workers
consume that queue as competing consumers over AMQP (`ingest.amqp`), so they stay stateless:
a worker that stops or dies leaves its unacknowledged deliveries to the others.

In a worker, deliveries are parsed into micro-batches (at most `ingest_batch_size` readings or
`ingest_batch_ms` after the first), `ingest_writers` tasks store batches concurrently through
`storage.readings.store_batch`, and a delivery is acknowledged once its batch is committed —
with one `basic.ack(multiple)` up to the highest tag below which every delivery is committed.
Nothing is acknowledged that is not committed; a delivery received on an earlier connection is
never acknowledged on a later one (its tag names another message there): the broker redelivers
it, flagged, and it is counted as a duplicate.

Backpressure: the prefetch window (`ingest_queue_bound`) bounds the deliveries a worker holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiohttp import web

from ingest.amqp import AmqpError, ConsumerConnection, describe, parse_urls
from ingest.ingestion import CONSUMING, QUEUE_DEPTH, limits_from, record
from ingest.settings import Settings
from storage.db import ping
from storage.providers import ids_by_name
from storage.readings import BatchItem, store_batch
from telematics.payload import parse_mqtt_payload
from telematics.reading import Adapted, OdometerReading, Problem, Rejected

log = logging.getLogger("carmileage.mqtt")

_KEY_PREFIX = "carmileage.v1.providers."
_KEY_SUFFIX = ".readings"
#: How long an active/inactive provider look-up is trusted (unknown names are looked up each batch).
PROVIDER_CACHE_S = 30.0
#: Database errors that pass: connection lost, server shutting down or overloaded, lost races.
_TRANSIENT_SQLSTATE_CLASSES = ("08", "40", "53", "57", "58")


def is_transient(e: BaseException) -> bool:
    if isinstance(e, asyncpg.PostgresError):
        return (e.sqlstate or "")[:2] in _TRANSIENT_SQLSTATE_CLASSES
    return isinstance(e, OSError | ConnectionError | TimeoutError | asyncpg.InterfaceError)


def provider_of(routing_key: str) -> str | None:
    """The provider named by a topic as the broker routes it (`carmileage.v1.providers.X.readings`;
    MQTT's `/` are AMQP's `.`)."""
    if routing_key.startswith(_KEY_PREFIX) and routing_key.endswith(_KEY_SUFFIX):
        name = routing_key[len(_KEY_PREFIX) : -len(_KEY_SUFFIX)]
        if name and "." not in name:
            return name
    return None


@dataclass(slots=True)
class _Message:
    tag: int
    generation: int
    routing_key: str
    payload: bytes
    #: When it reached this worker (to the millisecond: `received_at`).
    received: datetime
    #: The broker's redelivery flag: this message may have been stored already.
    redelivered: bool = False


@dataclass(slots=True)
class _Batch:
    messages: list[_Message] = field(default_factory=list)
    #: (message position, provider name, adapted item) per reading position.
    items: list[tuple[int, str | None, Adapted]] = field(default_factory=list)
    #: When it closes at the latest (event-loop time).
    deadline: float = 0.0


class _AckWindow:
    """Delivery tags of one connection: marks the committed ones and tells the highest tag below
    which every delivery is committed (what one `basic.ack(multiple)` may acknowledge)."""

    __slots__ = ("_done", "acked")

    def __init__(self) -> None:
        self.acked = 0  # every tag up to this one is acknowledged
        self._done: set[int] = set()

    def commit(self, tags: list[int]) -> int | None:
        """Mark tags committed; the new acknowledgement watermark, or None if it did not move."""
        done = self._done
        done.update(tags)
        tag = self.acked
        while tag + 1 in done:
            tag += 1
            done.discard(tag)
        if tag == self.acked:
            return None
        self.acked = tag
        return tag


class ReadingsConsumer:
    """A service component (see `ingest.service`)."""

    name = "mqtt"

    def __init__(self, settings: Settings, pool: asyncpg.Pool) -> None:
        self.settings = settings
        self.pool = pool
        self.limits = limits_from(settings)
        self.urls = parse_urls(settings.broker_url)
        self.queue = settings.broker_queue
        self.consumer_tag = f"carmileage-{socket.gethostname()}-{os.getpid()}"
        self._conn: ConsumerConnection | None = None
        self._window = _AckWindow()
        #: Bumped on every connection; only deliveries of the current one are acknowledged.
        self._generation = 0
        self._inbox: deque[_Message] = deque()
        self._received = 0
        self._consuming = False
        self._stopping = False
        self._wakeup = asyncio.Event()
        #: One lane per writer; a car's readings always take the same lane, so concurrent writers
        #: never wait on each other's per-car locks.
        self._lanes: list[asyncio.Queue[_Batch]] = [
            asyncio.Queue(maxsize=2) for _ in range(settings.ingest_writers)
        ]
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
        self._last_connect_error = ""
        self._now_ms = 0
        self._now = datetime.now(UTC)

    # -- the broker connection --------------------------------------------------------------------

    def _on_delivery(self, tag: int, routing_key: str, body: bytes, redelivered: bool) -> None:
        """Called by the connection for each delivery, on the event loop; never raises."""
        if self._stopping:
            return  # not acknowledged: requeued when the connection closes
        ms = int(time.time() * 1000)
        if ms != self._now_ms:  # deliveries of one read from the socket share their instant
            self._now_ms, self._now = ms, datetime.fromtimestamp(ms / 1000, UTC)
        self._inbox.append(_Message(tag, self._generation, routing_key, body, self._now, redelivered))
        self._received += 1
        self._wakeup.set()

    async def _connect(self) -> None:
        """Stay connected: each node of the broker in turn, backing off up to 5 s between tries."""
        delay = 0.5
        attempt = 0
        while not self._stopping:
            url = self.urls[attempt % len(self.urls)]
            attempt += 1
            try:
                conn = await ConsumerConnection.open(url, self._on_delivery)
            except (OSError, AmqpError, TimeoutError) as e:
                self._note_connect_error(url, e)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self._generation += 1
            self._window = _AckWindow()
            self._conn = conn
            try:
                waiting = await conn.consume(self.queue, self.settings.ingest_queue_bound, self.consumer_tag)
            except (OSError, AmqpError, TimeoutError) as e:
                self._note_connect_error(url, e)
                conn.abort()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self._consuming = True
            CONSUMING.set(1)
            delay = 0.5
            log.info("consuming %s on %s (%d waiting)", self.queue, describe(url), waiting)
            reason = await conn.closed
            self._consuming = False
            CONSUMING.set(0)
            if not self._stopping:
                log.warning("broker connection to %s lost (%s); reconnecting", describe(url), reason)
                self._last_connect_error = str(reason)

    def _note_connect_error(self, url: str, e: BaseException) -> None:
        self._last_connect_error = f"{describe(url)}: {e}"
        now = time.monotonic()
        if now - self._last_error_log > 5:
            self._last_error_log = now
            log.warning("cannot consume from %s (%s: %s); trying again", describe(url), type(e).__name__, e)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        QUEUE_DEPTH.labels("mqtt", "received").set_function(lambda: len(self._inbox))
        QUEUE_DEPTH.labels("mqtt", "batched").set_function(lambda: self._in_batches)
        self._spawn(self._connect(), "mqtt-connect")
        self._spawn(self._collect(), "mqtt-collect")
        for i, lane in enumerate(self._lanes):
            self._spawn(self._write(lane), f"mqtt-write-{i}")
        log.info("readings consumer started for %s at %s", self.queue, ", ".join(describe(u) for u in self.urls))

    async def stop(self) -> None:
        """Stop taking deliveries, commit and acknowledge what was received, then disconnect
        (what was not received is left to the other workers)."""
        self._stopping = True
        self._wake()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(1.0, self.settings.shutdown_grace_s - 1)):
                await self._drained()
        if self._inbox or self._open or self._unfinished:
            log.warning("readings consumer stopped with unacknowledged deliveries; the broker redelivers them")
        conn = self._conn
        if conn is not None:
            await conn.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(Exception, asyncio.CancelledError):  # a failure was logged
                await task
        CONSUMING.set(0)

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
        CONSUMING.set(0)
        log.critical("readings consumer is not consuming: %s", self._failure, exc_info=error)

    async def readiness(self) -> tuple[bool, str]:
        """Ready only while readings flow: consuming, every task alive, and nothing received
        waiting longer than `ingest_stall_s` without a batch committed."""
        if self._failure is not None:
            return False, f"not consuming: {self._failure}"
        if not self._consuming:
            return False, f"disconnected ({self._last_connect_error or 'connecting'})"
        waiting = self._inbox or self._open or self._unfinished
        stalled_s = time.monotonic() - self._progress_at
        if waiting and stalled_s > self.settings.ingest_stall_s:
            return False, f"not consuming: nothing committed for {stalled_s:.0f} s"
        return True, "consuming"

    # -- the event loop: batch, store, acknowledge ----------------------------------------------

    def _wake(self) -> None:
        self._wakeup.set()

    async def _drained(self) -> None:
        while self._inbox or self._open or self._unfinished:  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    async def _next(self, wait_s: float | None) -> _Message | None:
        """The next received message, waiting at most `wait_s` seconds (None: forever)."""
        while True:
            if self._inbox:
                return self._inbox.popleft()
            if self._stopping or (wait_s is not None and wait_s <= 0):
                return None
            self._wakeup.clear()
            try:
                async with asyncio.timeout(wait_s):
                    await self._wakeup.wait()
            except TimeoutError:
                return self._inbox.popleft() if self._inbox else None

    async def _collect(self) -> None:
        """Parse received messages into one open batch per lane; close a batch when it holds
        `ingest_batch_size` readings or `ingest_batch_ms` after its first message."""
        loop = asyncio.get_running_loop()
        size = self.settings.ingest_batch_size
        window = self.settings.ingest_batch_ms / 1000
        lanes = len(self._lanes)
        inbox = self._inbox
        keys: dict[str, str | None] = {}
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
            # connection, the writers and HTTP requests run on it too).
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
                    batch = self._open[lane] = _Batch(deadline=loop.time() + window)
                position = len(batch.messages)
                batch.messages.append(m)
                provider = keys.get(m.routing_key, "")
                if provider == "":
                    if len(keys) > 10_000:
                        keys.clear()
                    provider = keys[m.routing_key] = provider_of(m.routing_key)
                batch.items.extend([(position, provider, a) for a in parsed])
                if len(batch.items) >= size:
                    await self._close(lane)
                m = inbox.popleft() if inbox else None

    async def _close(self, lane: int) -> None:
        batch = self._open.pop(lane)
        self._unfinished += 1
        self._in_batches += len(batch.items)
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
        for position, name, a in batch.items:
            m = batch.messages[position]
            at = m.received
            known = providers.get(name) if name is not None else None
            if known is None:
                rejected = a if isinstance(a, Rejected) else None
                problem = Problem("unknown_provider", f"No provider is named by topic {m.routing_key!r}.")
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
                self._acknowledge(batch)
            finally:
                self._in_batches -= len(batch.items)
                self._unfinished -= 1

    def _acknowledge(self, batch: _Batch) -> None:
        """Acknowledge what is committed, as far as every earlier delivery is committed too."""
        conn = self._conn
        generation = self._generation
        tags = [m.tag for m in batch.messages if m.generation == generation]
        if not tags or conn is None:
            return
        upto = self._window.commit(tags)
        if upto is not None:
            with contextlib.suppress(AmqpError):  # the connection is gone: all is redelivered
                conn.ack(upto, multiple=True)

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
                        expect_duplicates=any(batch.messages[p].redelivered for p, _, _ in entries),
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
                    await ping(conn)
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


def create(settings: Settings, pool: asyncpg.Pool, app: web.Application) -> ReadingsConsumer | None:
    """The component factory listed in `ingest.service.COMPONENT_FACTORIES`."""
    return ReadingsConsumer(settings, pool) if settings.mqtt_enabled else None
