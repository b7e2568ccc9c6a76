"""Gauges of what waits in the database: the review backlog and its age, and the outbox's pending
and dead events. They are read every `backlog_metrics_interval_s` (once at start, so /metrics
has them from the first scrape), not at scrape time: a scrape never waits on PostgreSQL.

Every replica exports the same figures; alert rules take their `max` (docs/ops/alerts.yml).
`carmileage_backlog_sampled_timestamp_seconds` says when they were last read, so stale figures
are an alert of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import asyncpg
from aiohttp import web
from prometheus_client import Gauge

from ingest.settings import Settings
from storage.dashboard import backlog_sample

log = logging.getLogger("carmileage.backlog_metrics")

DISPUTE_KINDS = ("photo", "rollback", "telematics")
OUTBOX_STATES = ("pending", "dead")

REVIEW_BACKLOG = Gauge("carmileage_review_backlog", "Open disputes waiting for a reviewer", ["kind"])
REVIEW_OLDEST = Gauge(
    "carmileage_review_backlog_oldest_seconds", "Age of the oldest open dispute (0 when none is open)"
)
OUTBOX_EVENTS = Gauge(
    "carmileage_outbox_events", "Outbox events for the reward calculator by state (pending, dead)", ["status"]
)
SAMPLED_AT = Gauge(
    "carmileage_backlog_sampled_timestamp_seconds", "When the backlog gauges were last read from the database"
)


class BacklogMetrics:
    name = "backlog-metrics"

    def __init__(self, pool: asyncpg.Pool, interval_s: float) -> None:
        self.pool = pool
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    async def sample(self) -> None:
        s = await backlog_sample(self.pool)
        for kind in {*DISPUTE_KINDS, *s.open_by_kind}:
            REVIEW_BACKLOG.labels(kind).set(s.open_by_kind.get(kind, 0))
        REVIEW_OLDEST.set(s.oldest_open_age_s)
        OUTBOX_EVENTS.labels("pending").set(s.outbox_pending)
        OUTBOX_EVENTS.labels("dead").set(s.outbox_dead)
        SAMPLED_AT.set(time.time())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.sample()
            except (OSError, asyncpg.PostgresError, TimeoutError) as e:
                # the figures go stale, and the sampled-at gauge says so
                log.warning("could not read the backlog gauges: %s: %s", type(e).__name__, e)

    async def start(self) -> None:
        try:
            await self.sample()
        except (OSError, asyncpg.PostgresError, TimeoutError) as e:
            log.warning("could not read the backlog gauges: %s: %s", type(e).__name__, e)
        self._task = asyncio.create_task(self._run(), name="backlog-metrics")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def create_component(settings: Settings, pool: asyncpg.Pool, app: web.Application) -> BacklogMetrics | None:
    """Factory for ingest.service.COMPONENT_FACTORIES; None when the interval is 0."""
    if not settings.backlog_metrics_interval_s:
        return None
    return BacklogMetrics(pool, settings.backlog_metrics_interval_s)
