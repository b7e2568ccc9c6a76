"""Slow and greedy clients against a real service process (issue 18, item 6).

The service runs with short deadlines (1.5 s for a request head, 1.5 s of stall or a 2,000 B/s
floor for a body, 60 connections at most) so that the tests are quick; the defaults are in
`ingest.settings` and docs/deploy.md. Every client here is a plain socket.
"""

from __future__ import annotations

import asyncio
import select
import socket
import time
from collections.abc import Callable, Iterator

import pytest

from storage.db import drop_database
from tests.conftest import LiveService, cli_token, clone_database
from tests.security.rawhttp import connect, head_bytes, read_answer

HEAD_S = 1.5
BODY_S = 1.5
MAX_CONNECTIONS = 60
#: How late a cut may come (scheduling on two shared cores).
MARGIN = 2.0


@pytest.fixture(scope="module")
def service(
    template_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveService]:
    url = clone_database(template_database_url, "slow")
    svc = LiveService(
        url,
        tmp_path_factory.mktemp("slow") / "data",
        CARMILEAGE_HTTP_HEAD_TIMEOUT_S=str(HEAD_S),
        CARMILEAGE_HTTP_BODY_TIMEOUT_S=str(BODY_S),
        CARMILEAGE_HTTP_BODY_MIN_RATE="2000",
        CARMILEAGE_HTTP_MAX_CONNECTIONS=str(MAX_CONNECTIONS),
        CARMILEAGE_OCR_WORKERS="1",
    )
    svc.start()
    yield svc
    svc.kill()
    asyncio.run(drop_database(url))


def closed_within(sock: socket.socket, seconds: float) -> tuple[bool, float, bytes]:
    """Wait until the server closes the connection: (closed, after how long, what it sent)."""
    started = time.monotonic()
    got = b""
    while (left := started + seconds - time.monotonic()) > 0:
        r, _, _ = select.select([sock], [], [], left)
        if not r:
            break
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return True, time.monotonic() - started, got
        if not chunk:
            return True, time.monotonic() - started, got
        got += chunk
    return False, time.monotonic() - started, got


def healthz_answers(url: str) -> float:
    """Seconds a fresh client waits for /healthz."""
    started = time.monotonic()
    with connect(url) as s:
        s.sendall(head_bytes("GET", "/healthz", {"Connection": "close"}))
        status, _, _ = read_answer(s, within=10)
    assert status == 200
    return time.monotonic() - started


def test_a_half_sent_head_is_cut_with_a_408(service: LiveService) -> None:
    with connect(service.url) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never the final blank line
        closed, after, got = closed_within(s, HEAD_S + MARGIN)
    assert closed, "the half-sent head still holds its connection"
    assert after >= HEAD_S - 0.2
    assert got.startswith(b"HTTP/1.1 408 "), got[:80]
    assert b"head_timeout" in got


def test_a_silent_connection_is_cut(service: LiveService) -> None:
    with connect(service.url) as s:
        closed, after, _ = closed_within(s, HEAD_S + MARGIN)
    assert closed and after >= HEAD_S - 0.2


def test_a_trickled_head_is_cut_however_busy_it_looks(service: LiveService) -> None:
    """Slowloris: a header line now and then keeps the connection 'active' but never finishes."""
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"".join(b"X-Pad-%d: x\r\n" % i for i in range(100))
    with connect(service.url) as s:
        started = time.monotonic()
        for i in range(len(head)):
            try:
                s.sendall(head[i : i + 1])
            except (BrokenPipeError, ConnectionResetError):
                break
            readable, _, _ = select.select([s], [], [], 0.05)  # the client's pace: a byte per 50 ms
            if readable:
                break
        closed, _, _ = closed_within(s, MARGIN)
        lasted = time.monotonic() - started
    assert closed and lasted < HEAD_S + MARGIN, lasted


def test_a_head_that_arrives_in_time_is_answered(service: LiveService) -> None:
    with connect(service.url) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\n")
        select.select([], [], [], HEAD_S / 3)  # a slow but honest client
        s.sendall(b"Host: 127.0.0.1\r\n\r\n")
        status, _, _ = read_answer(s)
        assert status == 200
        # keep-alive: the next request's head has the same deadline, counted from its first byte
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        closed, after, got = closed_within(s, HEAD_S + MARGIN)
    assert closed and after >= HEAD_S - 0.2
    assert got == b""  # the connection already answered once: it is closed, not answered again


def test_a_stalled_body_is_a_408(service: LiveService) -> None:
    """The sign-in form: anyone may post it, so anyone could stall it."""
    with connect(service.url) as s:
        s.sendall(head_bytes("POST", "/sign-in", {"Content-Type": "application/x-www-form-urlencoded",
                                                 "Content-Length": "1000", "Accept": "application/json"}))
        s.sendall(b"token=abc")
        started = time.monotonic()
        status, _, body = read_answer(s, within=BODY_S + MARGIN + 3)
        after = time.monotonic() - started
    assert status == 408, (status, body[:200])
    assert b"body_timeout" in body
    assert after < BODY_S + MARGIN


def test_a_trickled_body_is_cut_at_the_minimum_rate(service: LiveService) -> None:
    """One byte every 100 ms never stalls 1.5 s, but falls far under 2,000 B/s."""
    token = cli_token(service.database_url, "citizen", "slow-citizen")
    with connect(service.url) as s:
        s.sendall(head_bytes("POST", "/v1/vehicles", {"Content-Type": "application/json", "Content-Length": "100000",
                                                     "Authorization": f"Bearer {token}"}))
        started = time.monotonic()
        status: int | None = None
        body = b""
        while time.monotonic() - started < 20:
            try:
                s.sendall(b" ")
            except (BrokenPipeError, ConnectionResetError):
                break
            readable, _, _ = select.select([s], [], [], 0.1)
            if readable:
                status, _, body = read_answer(s, within=5)
                break
        after = time.monotonic() - started
    assert status == 408, (status, body[:200])
    # 1.5 s of grace plus one second per 2,000 bytes: about 1.6 s for these few bytes
    assert after < BODY_S + MARGIN, after


def test_hundreds_of_slow_clients_hold_nothing(service: LiveService) -> None:
    """The attack run's picture, scaled to the test's cap: 50 half-sent heads; honest clients are
    answered meanwhile, and every slow connection is gone after the head deadline."""
    slow = []
    for _ in range(MAX_CONNECTIONS - 10):
        s = connect(service.url)
        s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        slow.append(s)
    try:
        assert healthz_answers(service.url) < 1.0
        deadline = time.monotonic() + HEAD_S + MARGIN + 1
        for s in slow:
            closed, _, _ = closed_within(s, max(0.0, deadline - time.monotonic()))
            assert closed
    finally:
        for s in slow:
            s.close()


def test_connections_beyond_the_cap_are_turned_away(service: LiveService) -> None:
    def held(n: int) -> list[socket.socket]:
        return [connect(service.url) for _ in range(n)]

    first = held(MAX_CONNECTIONS)
    try:
        with connect(service.url) as extra:
            status, headers, body = read_answer(extra, within=HEAD_S)
        assert status == 503, (status, body[:200])
        assert headers.get("retry-after") == "1" and b"too_many_connections" in body
    finally:
        for s in first:
            s.close()
    _eventually(lambda: healthz_answers(service.url) < 1.0)


def _eventually(check: Callable[[], bool], within: float = 10) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            if check():
                return
        except (AssertionError, OSError):
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError("condition not met")
        select.select([], [], [], 0.1)
