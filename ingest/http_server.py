"""The HTTP listener with the guards aiohttp's server lacks: a deadline for the request head and a
cap on open connections (body-read deadlines are applied where bodies are read, `ingest.api`).

aiohttp waits for a request head as long as its keep-alive timeout allows, so a few hundred
clients that send half a head and then trickle or stall hold every connection (slowloris). Each
connection here is wrapped in a `ConnectionGuard`: a request head must be complete within
`http_head_timeout_s` of the connection opening, or of the first byte after the previous request,
else the connection is closed (with a 408 when nothing was answered on it yet). Beyond
`http_max_connections` open connections a new one is answered 503 at once and closed, so the
process never runs out of file descriptors. docs/deploy.md says how a reverse proxy in front
is set up.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import Counter, Gauge

HTTP_CONNECTIONS = Gauge("carmileage_http_connections", "Open HTTP connections")
HTTP_CONNECTIONS_CUT = Counter(
    "carmileage_http_connections_cut_total",
    "HTTP connections closed by a guard: head_timeout, over_capacity",
    ["reason"],
)

_GUARDS: weakref.WeakKeyDictionary[asyncio.BaseTransport, ConnectionGuard] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Guards:
    head_timeout_s: float
    max_connections: int


def _raw_response(status: int, reason: str, code: str, message: str, extra: str = "") -> bytes:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"Connection: close\r\n{extra}\r\n"
    )
    return head.encode() + body


_TIMEOUT_408 = _raw_response(408, "Request Timeout", "head_timeout", "The request head did not arrive in time.")
_FULL_503 = _raw_response(
    503, "Service Unavailable", "too_many_connections", "Too many open connections; try again shortly.",
    "Retry-After: 1\r\n",
)


class ConnectionGuard(asyncio.Protocol):
    """One connection: passes everything to aiohttp's protocol, and closes the connection when a
    request head is not complete in time. The middleware reports when a request reached the
    application (its head was complete) and when it was answered."""

    def __init__(self, make_inner: Callable[[], asyncio.Protocol], listener: GuardedListener) -> None:
        self._make_inner = make_inner
        self._listener = listener
        self._inner: asyncio.Protocol | None = None
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._in_request = False
        self._answered = False

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        listener = self._listener
        if len(listener.open) >= listener.guards.max_connections:
            HTTP_CONNECTIONS_CUT.labels("over_capacity").inc()
            transport.write(_FULL_503)
            transport.close()
            return
        listener.open.add(self)
        HTTP_CONNECTIONS.set(len(listener.open))
        _GUARDS[transport] = self
        self._arm()
        self._inner = self._make_inner()
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._listener.open.discard(self)
        HTTP_CONNECTIONS.set(len(self._listener.open))
        if self._inner is not None:
            self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._inner is None:
            return
        if not self._in_request and self._timer is None:
            self._arm()  # the first byte of the next request head
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    # -- reported by the middleware ----------------------------------------------------------------

    def request_started(self) -> None:
        self._in_request = True
        self._disarm()

    def request_finished(self) -> None:
        self._in_request = False
        self._answered = True

    # -- the head deadline -------------------------------------------------------------------------

    def _arm(self) -> None:
        self._disarm()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._listener.guards.head_timeout_s, self._head_timed_out)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_timed_out(self) -> None:
        self._timer = None
        transport = self._transport
        if transport is None or transport.is_closing() or self._in_request:
            return
        HTTP_CONNECTIONS_CUT.labels("head_timeout").inc()
        if not self._answered:
            transport.write(_TIMEOUT_408)
        transport.close()


def guard_of(request: web.BaseRequest) -> ConnectionGuard | None:
    """The guard of the connection a request came on (None under a test server)."""
    transport = request.transport
    return _GUARDS.get(transport) if transport is not None else None


class GuardedListener:
    """A TCP listener serving an aiohttp `web.Server` through connection guards."""

    def __init__(self, server: web.Server, guards: Guards) -> None:
        self.server = server
        self.guards = guards
        self.open: set[ConnectionGuard] = set()
        self._listening: asyncio.base_events.Server | None = None

    async def start(self, host: str, port: int, backlog: int = 128) -> None:
        loop = asyncio.get_running_loop()
        make_inner: Callable[[], Any] = self.server
        self._listening = await loop.create_server(
            lambda: ConnectionGuard(make_inner, self), host, port, backlog=backlog, reuse_address=True
        )

    def close(self) -> None:
        """Stop accepting; open connections are drained by the runner's shutdown."""
        if self._listening is not None:
            self._listening.close()
            self._listening = None
