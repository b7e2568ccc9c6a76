"""A consuming AMQP 0-9-1 connection: one channel, one consumer, acknowledgements after commit.

The protocol's control methods (the handshake, channel, qos, queue declaration, consume, close)
are encoded and decoded by `pamqp`, the codec aio-pika and aiormq are built on. What those
clients add per message — a frame object, a message object and an asyncio task for each of
twenty thousand deliveries a second — cost 18 to 50 µs of CPU a message here; the three frames
of a delivery (method, content header, body) are therefore read straight from the receive
buffer, and each delivery reaches the consumer as one plain call. Acknowledgements go out as
`basic.ack` frames written in one piece.

What RabbitMQ promises and this relies on: deliveries on a channel carry increasing delivery
tags; every delivery not acknowledged when the connection ends is requeued (and redelivered
with `redelivered` set); `basic.ack(tag, multiple=True)` acknowledges every tag up to `tag`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import struct
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

from pamqp import commands, frame, header, heartbeat
from pamqp.base import Frame

log = logging.getLogger("carmileage.amqp")

#: (delivery tag, routing key, body, redelivered)
OnDelivery = Callable[[int, str, bytes, bool], None]

_FRAME_END = 0xCE
_HEAD = struct.Struct(">BHI")
_DELIVER_ID = struct.Struct(">HH").pack(60, 60)
_TAG = struct.Struct(">Q")
_ACK = struct.Struct(">BHIHHQB")
_BODY_SIZE = struct.Struct(">Q")
_CHANNEL = 1


class AmqpError(ConnectionError):
    """The connection or its channel ended; `reply` is the broker's reason when it gave one."""

    def __init__(self, message: str, reply_code: int | None = None) -> None:
        super().__init__(message)
        self.reply_code = reply_code


class ConsumerConnection(asyncio.Protocol):
    """`await ConsumerConnection.open(url, ...)`, then `consume`, `ack`, `close`; `closed` is a
    future that resolves (with the reason) when the connection ends for any cause."""

    def __init__(self, on_delivery: OnDelivery, heartbeat_s: int) -> None:
        self._on_delivery = on_delivery
        self._heartbeat_s = heartbeat_s
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._replies: asyncio.Queue[Frame] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[BaseException | None] = loop.create_future()
        # The delivery being assembled: tag, routing key, redelivered, body size, parts.
        self._pending: tuple[int, str, bool] | None = None
        self._body_size = 0
        self._parts: list[bytes] = []
        self._got = 0
        self._frame_max = 131072
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._received_since_beat = True

    # -- opening --------------------------------------------------------------------------------

    @classmethod
    async def open(
        cls, url: str, on_delivery: OnDelivery, *, heartbeat_s: int = 30, connect_s: float = 10
    ) -> ConsumerConnection:
        parts = urlsplit(url)
        if parts.scheme not in ("amqp", "amqps") or not parts.hostname:
            raise ValueError(f"not an amqp:// URL: {url!r}")
        port = parts.port or (5671 if parts.scheme == "amqps" else 5672)
        vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
        tls = ssl.create_default_context() if parts.scheme == "amqps" else None
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(connect_s):
            _, protocol = await loop.create_connection(
                lambda: cls(on_delivery, heartbeat_s), parts.hostname, port, ssl=tls
            )
            assert isinstance(protocol, cls)
            try:
                await protocol._handshake(unquote(parts.username or "guest"), unquote(parts.password or "guest"), vhost)
            except BaseException:
                protocol.abort()
                raise
        return protocol

    async def _handshake(self, user: str, password: str, vhost: str) -> None:
        self._write(header.ProtocolHeader().marshal())
        await self._expect(commands.Connection.Start)
        self._send(
            commands.Connection.StartOk(
                client_properties={
                    "product": "carmileage",
                    "capabilities": {"consumer_cancel_notify": True, "connection.blocked": True},
                },
                mechanism="PLAIN",
                response=f"\0{user}\0{password}",
            ),
            0,
        )
        tune = await self._expect(commands.Connection.Tune)
        assert isinstance(tune, commands.Connection.Tune)
        self._frame_max = tune.frame_max or self._frame_max
        beat = min(self._heartbeat_s, tune.heartbeat) if tune.heartbeat else self._heartbeat_s
        self._send(commands.Connection.TuneOk(channel_max=1, frame_max=self._frame_max, heartbeat=beat), 0)
        self._send(commands.Connection.Open(virtual_host=vhost), 0)
        await self._expect(commands.Connection.OpenOk)
        self._send(commands.Channel.Open(), _CHANNEL)
        await self._expect(commands.Channel.OpenOk)
        if beat:
            self._heartbeat_task = asyncio.create_task(self._beat(beat), name="amqp-heartbeat")

    async def waiting(self, queue: str) -> int:
        """Messages ready in the queue (a passive declaration: it must exist; its arguments are
        the broker set-up's business). Exact at the time of asking, unlike management statistics."""
        self._send(commands.Queue.Declare(queue=queue, passive=True), _CHANNEL)
        ok = await self._expect(commands.Queue.DeclareOk)
        assert isinstance(ok, commands.Queue.DeclareOk)
        return int(ok.message_count or 0)

    async def consume(self, queue: str, prefetch: int, consumer_tag: str) -> int:
        """Check the queue exists, set the prefetch window, start consuming; the number of
        messages waiting."""
        waiting = await self.waiting(queue)
        self._send(commands.Basic.Qos(prefetch_count=min(prefetch, 65535)), _CHANNEL)
        await self._expect(commands.Basic.QosOk)
        self._send(commands.Basic.Consume(queue=queue, consumer_tag=consumer_tag), _CHANNEL)
        await self._expect(commands.Basic.ConsumeOk)
        return waiting

    # -- acknowledging ---------------------------------------------------------------------------

    def ack(self, delivery_tag: int, multiple: bool = True) -> None:
        """Acknowledge `delivery_tag` (and with `multiple` every earlier tag of the channel)."""
        self._write(_ACK.pack(1, _CHANNEL, 13, 60, 80, delivery_tag, 1 if multiple else 0) + b"\xce")

    def ack_each(self, delivery_tags: list[int]) -> None:
        """Acknowledge these tags one by one, in one write."""
        self._write(b"".join([_ACK.pack(1, _CHANNEL, 13, 60, 80, t, 0) + b"\xce" for t in delivery_tags]))

    # -- closing ---------------------------------------------------------------------------------

    async def close(self, wait_s: float = 5) -> None:
        """Close politely (unacknowledged deliveries are requeued by the broker)."""
        if self.closed.done() or self._transport is None:
            return
        self._send(commands.Connection.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0), 0)
        with contextlib.suppress(TimeoutError, AmqpError):
            async with asyncio.timeout(wait_s):
                await asyncio.shield(self.closed)
        self.abort()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()
        self._end(AmqpError("aborted"))

    # -- asyncio.Protocol ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(exc or AmqpError("the broker closed the connection"))

    def data_received(self, data: bytes) -> None:
        self._received_since_beat = True
        buf = self._buffer
        buf += data
        view = memoryview(buf)
        pos = 0
        end = len(buf)
        head = _HEAD.unpack_from
        try:
            while end - pos >= 8:
                kind, _channel, size = head(view, pos)
                stop = pos + 7 + size
                if stop >= end:
                    break
                if buf[stop] != _FRAME_END:
                    raise AmqpError("frame without its end marker")
                start = pos + 7
                pos = stop + 1
                if kind == 1:
                    if view[start : start + 4] == _DELIVER_ID:
                        self._deliver_method(view, start)
                    else:
                        self._control(bytes(view[start - 7 : pos]))
                elif kind == 2:
                    (self._body_size,) = _BODY_SIZE.unpack_from(view, start + 4)
                    self._parts = []
                    self._got = 0
                    if self._body_size == 0:
                        self._deliver(b"")
                elif kind == 3:
                    part = bytes(view[start:stop])
                    self._got += len(part)
                    if self._got >= self._body_size and not self._parts:
                        self._deliver(part)
                    else:
                        self._parts.append(part)
                        if self._got >= self._body_size:
                            self._deliver(b"".join(self._parts))
                # kind 8: a heartbeat; receiving anything counts as one.
        except Exception as e:  # a protocol error, or the consumer's defect: end the connection
            view.release()
            log.error("AMQP connection failed: %s", e)
            self._fail(e)
            return
        view.release()
        del buf[:pos]

    # -- frames -------------------------------------------------------------------------------------

    def _deliver_method(self, view: memoryview, start: int) -> None:
        at = start + 4
        n = view[at]
        at += 1 + n  # consumer tag
        (tag,) = _TAG.unpack_from(view, at)
        at += 8
        redelivered = bool(view[at] & 1)
        at += 1
        n = view[at]
        at += 1 + n  # exchange
        n = view[at]
        routing_key = bytes(view[at + 1 : at + 1 + n]).decode()
        self._pending = (tag, routing_key, redelivered)

    def _deliver(self, body: bytes) -> None:
        pending = self._pending
        if pending is None:
            raise AmqpError("content without its basic.deliver")
        self._pending = None
        self._parts = []
        self._on_delivery(pending[0], pending[1], body, pending[2])

    def _control(self, raw: bytes) -> None:
        _, channel, value = frame.unmarshal(raw)
        if isinstance(value, commands.Connection.Close):
            self._send(commands.Connection.CloseOk(), 0)
            self._fail(AmqpError(f"broker closed the connection: {value.reply_code} {value.reply_text}", value.reply_code))
        elif isinstance(value, commands.Channel.Close):
            self._send(commands.Channel.CloseOk(), channel)
            self._fail(AmqpError(f"broker closed the channel: {value.reply_code} {value.reply_text}", value.reply_code))
        elif isinstance(value, commands.Connection.CloseOk):
            self._fail(AmqpError("closed"))
        elif isinstance(value, commands.Basic.Cancel):
            self._fail(AmqpError("the broker cancelled the consumer (queue deleted or moved)"))
        elif isinstance(value, commands.Connection.Blocked | commands.Connection.Unblocked):
            log.warning("AMQP connection %s", value.name)
        elif isinstance(value, Frame):
            self._replies.put_nowait(value)

    async def _expect(self, kind: type[Frame]) -> Frame:
        get: asyncio.Future[Any] = asyncio.ensure_future(self._replies.get())
        closed: asyncio.Future[Any] = self.closed
        done, _ = await asyncio.wait({get, closed}, return_when=asyncio.FIRST_COMPLETED)
        if get not in done:
            get.cancel()
            reason = self.closed.result()
            raise reason if isinstance(reason, AmqpError) else AmqpError(str(reason))
        value = get.result()
        if not isinstance(value, kind):
            raise AmqpError(f"expected {kind.name}, got {value.name}")
        return value

    def _send(self, value: Frame, channel: int) -> None:
        self._write(frame.marshal(value, channel))

    def _write(self, data: bytes) -> None:
        if self._transport is None or self._transport.is_closing():
            raise AmqpError("the connection is closed")
        self._transport.write(data)

    async def _beat(self, interval: int) -> None:
        """Send a heartbeat every half interval; two intervals without a byte from the broker
        mean the connection is dead."""
        silent = 0
        beat = heartbeat.Heartbeat().marshal()
        while not self.closed.done():
            await asyncio.sleep(interval / 2)
            with contextlib.suppress(AmqpError):
                self._write(beat)
            silent = 0 if self._received_since_beat else silent + 1
            self._received_since_beat = False
            if silent >= 4:
                self._fail(AmqpError("no heartbeat from the broker"))

    def _fail(self, reason: BaseException) -> None:
        if self._transport is not None:
            self._transport.abort()
        self._end(reason)

    def _end(self, reason: BaseException | None) -> None:
        if not self.closed.done():
            self.closed.set_result(reason)
        task = self._heartbeat_task
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    # -- for diagnostics --

    @property
    def frame_max(self) -> int:
        return self._frame_max

    def __repr__(self) -> str:  # pragma: no cover
        return f"<ConsumerConnection closed={self.closed.done()}>"


async def queue_waiting(urls: str, queue: str) -> int:
    """Messages ready in a queue, asked of the first node of `urls` that answers."""
    error: BaseException | None = None
    for url in parse_urls(urls):
        try:
            conn = await ConsumerConnection.open(url, lambda *a: None)
        except (OSError, AmqpError, TimeoutError) as e:
            error = e
            continue
        try:
            return await conn.waiting(queue)
        finally:
            await conn.close()
    raise AmqpError(f"no broker node answered: {error}")


def parse_urls(value: str) -> list[str]:
    """`CARMILEAGE_BROKER_URL`: one or more amqp:// URLs, comma-separated (a cluster's nodes)."""
    return [u.strip() for u in value.split(",") if u.strip()]


def describe(url: str) -> str:
    """A URL without its password, for logs."""
    p = urlsplit(url)
    return f"{p.scheme}://{p.username + '@' if p.username else ''}{p.hostname}:{p.port}{p.path}"


__all__: list[Any] = ["AmqpError", "ConsumerConnection", "OnDelivery", "describe", "parse_urls", "queue_waiting"]
