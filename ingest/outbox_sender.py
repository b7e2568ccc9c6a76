"""The outbox sender: delivers period results to the reward calculator, at least once.

The whole lifecycle is in `OutboxSender`: `run()` loops claim -> POST -> record outcome until
`stop()`; `run_once()` does one batch (tests, CLI). Each request carries `Idempotency-Key` (the
event id) and is signed like the providers' requests to us:
`X-Carmileage-Timestamp: <unix seconds>`, `X-Carmileage-Signature: sha256=<hex HMAC-SHA256(secret,
timestamp + "." + body)>`, with our service secret.

Outcomes: 2xx delivered; 4xx other than 429 (and any 3xx: a misconfigured URL) dead letter with
the reason; 5xx, 429, timeouts and connection errors retried with exponential backoff and full
jitter, never sooner than a Retry-After the receiver asked for. Several senders may run at once
(rows are claimed with SKIP LOCKED and a lease); a receiver sees duplicates only when an answer got
lost, and drops them by the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from datetime import UTC
from email.utils import parsedate_to_datetime

import aiohttp
import asyncpg
from aiohttp import web
from prometheus_client import Counter

from ingest.settings import Settings
from storage.outbox import OutboxItem, claim_due, mark_dead, mark_delivered, mark_retry, release
from telematics.signatures import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature

log = logging.getLogger("carmileage.outbox")

DELIVERIES = Counter(
    "carmileage_outbox_attempts_total", "Outbox delivery attempts by outcome", ["outcome"]
)

#: A Retry-After longer than this (a day) is taken as this: a receiver cannot park a result forever.
MAX_RETRY_AFTER_S = 86_400.0


def backoff_s(attempts: int, base_s: float, max_s: float, rng: random.Random) -> float:
    """Full jitter: uniform in [0, min(max, base·2^(attempts−1))], at least a tenth of the step."""
    step = min(max_s, base_s * 2 ** max(0, attempts - 1))
    return max(step / 10, rng.uniform(0, step))


def retry_after_s(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


class OutboxSender:
    """One sender; run as many as you like, in one process or several."""

    name = "outbox_sender"

    def __init__(
        self,
        pool: asyncpg.Pool,
        url: str,
        secret: bytes,
        *,
        batch_size: int = 20,
        concurrency: int = 4,
        timeout_s: float = 10.0,
        lease_s: float = 60.0,
        backoff_base_s: float = 2.0,
        backoff_max_s: float = 3600.0,
        poll_interval_s: float = 1.0,
        worker_id: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.pool = pool
        self.url = url
        self._secret = secret.decode()
        self.batch_size = batch_size
        self.timeout_s = timeout_s
        self.lease_s = max(lease_s, timeout_s * 2)
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.poll_interval_s = poll_interval_s
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._rng = rng or random.Random()
        self._slots = asyncio.Semaphore(concurrency)
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Run in the background (the service's component interface)."""
        self._task = asyncio.create_task(self.run(), name=self.name)

    async def run(self) -> None:
        """Deliver until stop(): claim a batch, send it, record each outcome; idle when none is due."""
        self._stopping.clear()
        async with self._client() as session:
            self._session = session
            try:
                while not self._stopping.is_set():
                    try:
                        sent = await self.run_once()
                    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                        log.exception("outbox: database unavailable; retrying")
                        sent = 0
                    if sent == 0:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._stopping.wait(), self.poll_interval_s)
            finally:
                self._session = None

    async def stop(self) -> None:
        """Finish the requests in flight, record their outcomes, then return."""
        self._stopping.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def readiness(self) -> tuple[bool, str]:
        running = self._task is not None and not self._task.done()
        return running, "running" if running else "stopped"

    # -- one batch ---------------------------------------------------------------------------

    def _client(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            headers={"User-Agent": "carmileage-outbox/1"},
        )

    async def run_once(self) -> int:
        """Claim and send one batch; returns how many rows were attempted."""
        async with self.pool.acquire() as conn:
            items = await claim_due(conn, self.worker_id, self.batch_size, self.lease_s)
        if not items:
            return 0
        if self._session is None:
            async with self._client() as session:
                await self._send_all(session, items)
        else:
            await self._send_all(self._session, items)
        return len(items)

    async def _send_all(self, session: aiohttp.ClientSession, items: list[OutboxItem]) -> None:
        async def one(item: OutboxItem) -> None:
            async with self._slots:
                if self._stopping.is_set():
                    await release(self.pool, [item.id], self.worker_id)
                    return
                await self.deliver(session, item)

        await asyncio.gather(*(one(i) for i in items))

    def headers(self, item: OutboxItem, now: float | None = None) -> dict[str, str]:
        ts = str(int(now if now is not None else time.time()))
        return {
            "Content-Type": "application/json",
            "Idempotency-Key": str(item.event_id),
            "X-Carmileage-Event": item.kind,
            TIMESTAMP_HEADER: ts,
            SIGNATURE_HEADER: signature(self._secret, ts, item.body),
        }

    async def deliver(self, session: aiohttp.ClientSession, item: OutboxItem) -> str:
        """POST one item and record the outcome: 'delivered', 'retry' or 'dead'."""
        status: int | None = None
        retry_after: float | None = None
        try:
            async with session.post(
                self.url, data=item.body, headers=self.headers(item), allow_redirects=False
            ) as resp:
                status = resp.status
                text = (await resp.text(errors="replace"))[:500]
                retry_after = retry_after_s(resp.headers.get("Retry-After"))
        except TimeoutError:
            error = f"timed out after {self.timeout_s:g} s"
        except aiohttp.ClientError as e:
            error = f"connection failed: {e.__class__.__name__}: {e}"
        else:
            error = f"HTTP {status}: {text}".strip()

        if status is not None and 200 <= status < 300:
            outcome = "delivered"
            await mark_delivered(self.pool, item.id, self.worker_id, status)
        elif status is not None and status != 429 and (300 <= status < 500):
            outcome = "dead"
            await mark_dead(self.pool, item.id, self.worker_id, status, error)
            log.warning("outbox: event %s dead-lettered: %s", item.event_id, error)
        else:
            outcome = "retry"
            delay = backoff_s(item.attempts, self.backoff_base_s, self.backoff_max_s, self._rng)
            if retry_after is not None:
                delay = max(delay, min(retry_after, MAX_RETRY_AFTER_S))
            await mark_retry(self.pool, item.id, self.worker_id, delay, status, error)
            log.info("outbox: event %s attempt %d failed (%s); retry in %.1f s", item.event_id, item.attempts, error, delay)
        DELIVERIES.labels(outcome).inc()
        return outcome


def from_settings(settings: Settings, pool: asyncpg.Pool, **overrides: object) -> OutboxSender | None:
    """A sender configured from CARMILEAGE_* settings; None without a reward-calculator URL."""
    if not settings.reward_calculator_url:
        return None
    options: dict[str, object] = {
        "batch_size": settings.outbox_batch_size,
        "concurrency": settings.outbox_concurrency,
        "timeout_s": settings.outbox_timeout_s,
        "lease_s": settings.outbox_lease_s,
        "backoff_base_s": settings.outbox_backoff_base_s,
        "backoff_max_s": settings.outbox_backoff_max_s,
        "poll_interval_s": settings.outbox_poll_interval_s,
    }
    options.update(overrides)
    return OutboxSender(pool, settings.reward_calculator_url, settings.secret_bytes(), **options)  # type: ignore[arg-type]


def create_component(settings: Settings, pool: asyncpg.Pool, app: web.Application) -> OutboxSender | None:
    """Factory for ingest.service.COMPONENT_FACTORIES ("ingest.outbox_sender:create_component")."""
    return from_settings(settings, pool)
