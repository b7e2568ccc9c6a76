"""The running service: one object whose whole lifecycle is visible here.

start: pool -> migrations -> HTTP -> background components (MQTT consumer, OCR workers, outbox
sender). stop (SIGTERM/SIGINT): stop accepting HTTP and drain in-flight requests, then stop each
component (each finishes and acknowledges what it holds), then close the pool.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Protocol

import asyncpg
from aiohttp import web

from ingest.app import create_app
from ingest.http_server import GuardedListener, Guards
from ingest.schema import bring_up_to_date
from ingest.settings import Settings
from ingest.state import READINESS
from storage.db import Conn, create_pool, ensure_database
from storage.migrate import migrate, pending
from storage.providers import seal_plain_secrets
from storage.roles import connected_as_superuser

log = logging.getLogger("carmileage.service")


class Component(Protocol):
    """A background part of the service."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


ComponentFactory = Callable[[Settings, asyncpg.Pool, web.Application], Component | None]

#: "module:function" factories; each returns a component, or None when disabled by settings.
COMPONENT_FACTORIES: tuple[str, ...] = (
    "ingest.ocr_worker:create_component",
    "ingest.readings_consumer:create",
    "ingest.outbox_sender:create_component",
    "ingest.backlog_metrics:create_component",
)


def _load_factory(path: str) -> ComponentFactory:
    module, _, attr = path.partition(":")
    factory: ComponentFactory = getattr(importlib.import_module(module), attr)
    return factory


class Service:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pool: asyncpg.Pool | None = None
        self.app: web.Application | None = None
        self.runner: web.AppRunner | None = None
        self.listener: GuardedListener | None = None
        self.components: list[Component] = []
        self._stop = asyncio.Event()

    async def start(self) -> None:
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        if s.migration_database_url:
            # migrations (and the service role's grants) as the owning role
            report = await bring_up_to_date(s)
            if report.applied:
                log.info("applied migrations %s", ", ".join(report.applied))
            for warning in report.warnings:
                log.warning("%s", warning)
        else:
            await ensure_database(s.database_url)
        self.pool = await create_pool(s.database_url, min_size=s.database_pool_min, max_size=s.database_pool_max)
        async with self.pool.acquire() as conn:
            if not s.migration_database_url:
                await self._migrate_as_service(conn)
            if await seal_plain_secrets(conn, s.provider_box()):
                log.info("sealed provider secrets that were stored in the clear")
        self.app = create_app(s, self.pool)
        self.runner = web.AppRunner(
            self.app,
            shutdown_timeout=s.shutdown_grace_s,
            access_log=None,
            keepalive_timeout=s.http_keepalive_timeout_s,
            lingering_time=s.http_lingering_s,
        )
        await self.runner.setup()
        # Components start before the listener opens, so /readyz never answers "ready" without them.
        for path in COMPONENT_FACTORIES:
            component = _load_factory(path)(s, self.pool, self.app)
            if component is not None:
                await component.start()
                self.components.append(component)
                readiness: Callable[[], Awaitable[tuple[bool, str]]] | None = getattr(
                    component, "readiness", None
                )
                if readiness is not None:
                    self.app[READINESS][component.name] = readiness
        assert self.runner.server is not None
        self.listener = GuardedListener(
            self.runner.server, Guards(head_timeout_s=s.http_head_timeout_s, max_connections=s.http_max_connections)
        )
        await self.listener.start(s.http_host, s.http_port)
        log.info("listening on http://%s:%s", s.http_host, s.http_port)

    @staticmethod
    async def _migrate_as_service(conn: Conn) -> None:
        """No owner role configured: migrations as the service's own role (which then owns the
        schema), as before roles were split; a role that may not apply them says what to do."""
        try:
            applied = await migrate(conn)
        except asyncpg.InsufficientPrivilegeError as e:
            raise RuntimeError(
                f"migrations {', '.join(await pending(conn))} are pending and this role may not apply "
                "them: run `carmileage migrate` with CARMILEAGE_MIGRATION_DATABASE_URL set to the "
                f"schema owner ({e})"
            ) from None
        if applied:
            log.info("applied migrations %s", ", ".join(applied))
        if await connected_as_superuser(conn):
            log.warning(
                "connected to PostgreSQL as a superuser: nothing but convention keeps the audit log "
                "append-only; see `carmileage migrate` and CARMILEAGE_MIGRATION_DATABASE_URL"
            )

    def request_stop(self) -> None:
        self._stop.set()

    async def wait(self) -> None:
        await self._stop.wait()

    async def stop(self) -> None:
        log.info("shutting down: draining in-flight work")
        if self.listener is not None:
            self.listener.close()
        if self.runner is not None:
            await self.runner.cleanup()
        for component in reversed(self.components):
            try:
                await asyncio.wait_for(component.stop(), timeout=self.settings.shutdown_grace_s)
            except Exception:
                log.exception("component %s did not stop cleanly", component.name)
        if self.pool is not None:
            await self.pool.close()
        log.info("stopped")

    async def run(self) -> None:
        """Run until SIGTERM or SIGINT, then shut down gracefully."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        try:
            await self.start()
            await self.wait()
        finally:
            await self.stop()
