"""A deliberately crude HTTP/1.1 client on a plain socket, for what well-behaved clients never do:
stream a body for ever (chunked or with a declared length), stop half-way through a request
head, or open hundreds of connections. It records how much it had sent when the answer came."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Answer:
    status: int | None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    #: body bytes the client had handed to the kernel when the answer (or a reset) arrived
    sent_before_answer: int = 0
    #: seconds from the answer until the server closed the connection (None: still open)
    closed_after_s: float | None = None


def connect(url: str, sndbuf: int = 128 * 1024) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port or 80), timeout=30)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    return sock


def head_bytes(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    return "\r\n".join(lines).encode()


def _parse(raw: bytes) -> tuple[int | None, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split(" ", 2)[1])
    except (IndexError, ValueError):
        return None, {}, raw
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body


def read_answer(sock: socket.socket, within: float = 30) -> tuple[int | None, dict[str, str], bytes]:
    """Read one answer (head and a Content-Length body) or whatever came before the close."""
    deadline = time.monotonic() + within
    raw = b""
    while time.monotonic() < deadline:
        r, _, _ = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))
        if not r:
            break
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        raw += chunk
        status, headers, body = _parse(raw)
        if status is not None and b"\r\n\r\n" in raw and len(body) >= int(headers.get("content-length", "0")):
            return status, headers, body
    return _parse(raw) if raw else (None, {}, b"")


def stream(
    url: str,
    method: str,
    path: str,
    headers: dict[str, str],
    body: Iterator[bytes],
    *,
    chunked: bool,
    keep_sending_s: float = 10.0,
) -> Answer:
    """Send the head, then the body piece by piece while watching for an answer. Once it came,
    go on sending (as a hostile client would) for up to `keep_sending_s` to see when the server
    closes the connection."""
    sock = connect(url)
    try:
        sock.sendall(head_bytes(method, path, {**headers, **({"Transfer-Encoding": "chunked"} if chunked else {})}))
        sent = 0
        answer: Answer | None = None
        answered_at = 0.0
        pieces = iter(body)
        while True:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable and answer is None:
                status, hdrs, data = read_answer(sock, within=5)
                answer = Answer(status, hdrs, data, sent)
                answered_at = time.monotonic()
            if answer is not None and time.monotonic() - answered_at > keep_sending_s:
                return answer
            piece = next(pieces, None)
            if piece is None:
                if chunked:
                    sock.sendall(b"0\r\n\r\n")
                if answer is None:
                    status, hdrs, data = read_answer(sock)
                    answer = Answer(status, hdrs, data, sent)
                    answered_at = time.monotonic()
                _wait_closed(sock, answered_at + keep_sending_s)
                if sock.fileno() >= 0 and _closed(sock):
                    answer.closed_after_s = time.monotonic() - answered_at
                return answer
            framed = f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if chunked else piece
            try:
                _, writable, _ = select.select([], [sock], [], 5)
                if not writable:
                    continue
                sock.sendall(framed)
            except (BrokenPipeError, ConnectionResetError):
                if answer is None:
                    status, hdrs, data = read_answer(sock, within=2)
                    answer = Answer(status, hdrs, data, sent)
                    answered_at = time.monotonic()
                answer.closed_after_s = time.monotonic() - answered_at
                return answer
            sent += len(piece)
    finally:
        sock.close()


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(65536, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except (ConnectionResetError, BrokenPipeError):
        return True


def _wait_closed(sock: socket.socket, until: float) -> None:
    """Wait (reading and dropping anything more) until the server closed the connection."""
    while time.monotonic() < until:
        r, _, _ = select.select([sock], [], [], max(0.0, until - time.monotonic()))
        if not r:
            return
        try:
            if sock.recv(65536, socket.MSG_PEEK) == b"":
                return
            sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return


def junk(total: int, piece: int = 256 * 1024, first: bytes = b"") -> Iterator[bytes]:
    """`first`, then filler bytes up to `total`."""
    yield first
    left = total - len(first)
    block = b"\x00\x11\x22\x33" * (piece // 4)
    while left > 0:
        yield block[: min(piece, left)]
        left -= piece
